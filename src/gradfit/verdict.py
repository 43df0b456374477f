"""What an answer is: the checks every fit passes before it may be called converged.

Whatever the optimizer, a fit is ``failed`` (never converged) when

- the model's parameters are not determined by the data: fewer points than free
  parameters, or a Jacobian whose column-scaled form ``J D^-1`` (``D`` the column norms)
  has lost rank. Scaling makes the test independent of the units of x, y and of each
  parameter: ``J D^-1`` is unchanged when a column of ``J`` is multiplied by a constant.
  Flexible models (ReLU sums, networks) have no unique parameters, so only their
  predictions are judged;
- its predictions (or a flexible model's parameters) blew up: non-finite, or beyond
  ``BLOWUP`` times the scale of the data;
- it ended with a higher loss than it started from;
- (least squares, after the covariance) two or more parameters move together with standard
  errors beyond ``UNDETERMINED`` times their values, and the loss along their joint
  direction does not rise as the covariance says it must (``not_determined``): the loss may
  keep falling as they grow without bound, as ``V*x/(K+x)`` on data that look like a line
  (``V, K -> inf`` with ``V/K`` fixed). A model linear in its parameters always passes (its
  loss is exactly quadratic), however large its standard errors.

    >>> import numpy as np, gradfit
    >>> r = gradfit.fit("a*x^2 + b*x + c", [1.0], [2.0])
    >>> r.converged, r.reason
    (False, 'failed')
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .batch_lm import data_norm, too_small
from .lm_codes import MAX_STEPS, ROUGH, STALLED, TRIES, UNDERFLOW, WALK
from .lm_codes import message as lm_message
from .errors import InputError

BLOWUP = 1e6          # predictions beyond this times the data's scale have blown up
WEIGHT_BLOWUP = 1e8   # a flexible model's parameters beyond this times the data's scale
RANK_RTOL = None      # None: eps * max(n, P), as the solvers' own rank test
UNDETERMINED = 1e2    # relative standard errors beyond this, of correlated parameters, are
                      # looked at: a determined fit is quadratic within its standard errors
TOGETHER = 0.99       # |correlation| of parameters that move together
LONE = 1e6            # a parameter alone with a relative standard error beyond this is looked
                      # at too (a decay's rate of 193 +/- 4.6e79: its term touches one point)


def too_large_text(top: float, dtype, weighted: bool, model_finite: bool = True) -> str:
    """The message of data too large for the loss: ``|y|`` (``|y / sigma|``, ``weighted``)
    reaches ``top``, and their squares overflow ``dtype`` (past about 1e154 in float64)."""
    what = "|y / sigma|" if weighted else "|y|"
    example = f", e.g. y/1e{math.floor(math.log10(top))}" if math.isfinite(top) else ""
    why = ", and the loss overflows although the model is finite here" if model_finite \
        else ": their squares overflow"
    return (f"the data are too large for the loss in {str(dtype).split('.')[-1]} "
            f"({what} reaches {top:.3g}{why}): expected data of a scale nearer 1; rescale y "
            f"(and sigma){example}")


def _underflow(problem, final: torch.Tensor) -> bool:
    """``underflowed`` at ``final``: data of scale 1e-200 square to 0, and so does the loss
    of a linear fit solved directly, whose standard errors then came out 0 where
    ``fit_many`` (LM) said "failed"."""
    with torch.no_grad():
        r = problem.residuals(final)
    ys = problem.y if problem.sigma is None else problem.y / problem.sigma
    return bool(underflowed(r.square().sum().reshape(1), r[None], ys[None])[0])


def underflowed(loss: torch.Tensor, r: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(k,)`` True where a squared loss ``loss`` ``(k,)`` of residuals ``r`` ``(k, n)`` on
    data ``y`` ``(k, n)`` has underflowed (``batch_lm.too_small``, LM's ``UNDERFLOW``): no
    test on the loss (an exact fit, ftol) means anything there."""
    return too_small(loss.to(r.dtype), (r != 0).any(-1), data_norm(y.to(r.dtype)))


def judge(problem, final: torch.Tensor, free: tuple[str, ...], reason: str, detail: str,
          first_loss: float | None, final_loss: float, scaled=None) -> tuple[str, str]:
    """The stop reason after the shared checks above (``reason`` may become "failed").
    ``scaled``: the singular values and ``V^T`` of ``J D^-1`` over ``free`` when known."""
    if reason == "diverged":
        return reason, detail
    model, names = problem.model, problem.model.param_names
    with torch.no_grad():
        pred = problem.predict(final)
    y = problem.y
    y_scale = float(y.abs().max()) + float(y.std()) if y.numel() > 1 else float(y.abs().max())
    y_scale = y_scale if y_scale > 0 else 1.0       # all-zero data: unit scale
    if not bool(torch.isfinite(pred).all()):
        return "failed", "the predictions are not finite at the end: " + detail
    if problem.loss.squared and reason in ("gtol", "ftol", "xtol") and _underflow(problem, final):
        return "failed", lm_message(UNDERFLOW, {})
    if float(pred.abs().max()) > BLOWUP * y_scale:
        return "failed", (f"the predictions blew up (largest {float(pred.abs().max()):.3g}, "
                          f"beyond {BLOWUP:g} times the data's scale {y_scale:.3g})")
    if not model.identifiable:
        x_scale = float(problem.x.abs().max()) if problem.x.numel() else 1.0
        limit = WEIGHT_BLOWUP * max(1.0, x_scale, y_scale)
        big = float(final.abs().max())
        if big > limit:
            worst = names[int(final.abs().argmax())]
            return "failed", (f"the parameters blew up ({worst} = {float(final[names.index(worst)]):.3g}, "
                              f"beyond {limit:.3g}): no meaningful fit")
    # worse beyond rounding: the loss of a zero prediction sets the scale of the loss
    zero = _zero_prediction_loss(problem, final) if model.identifiable else 0.0
    noise = 1e-12 * (abs(zero) if math.isfinite(zero) else 0.0)
    if first_loss is not None and math.isfinite(first_loss) and \
            final_loss > first_loss * (1 + 1e-9) + noise:
        return "failed", (f"the fit ended worse than it started (loss {final_loss:.6g} > "
                          f"{first_loss:.6g} at the start)")
    if not model.identifiable or not free:
        return reason, detail
    if problem.n < len(free):
        return "failed", (f"underdetermined: {problem.n} point(s) for {len(free)} free "
                          "parameters; the data cannot determine them")
    lost = lost_rank(problem, final, free, scaled)
    if lost is not None and lost.startswith(RANK_ZERO) and not bool(pred.any()) and \
            bool(y.any()):
        return "failed", vanished_text(names, final)
    if lost is not None:
        return "failed", lost
    return reason, detail


RANK_ZERO = "the Jacobian lost rank (0 of"


def vanished_text(names, final: torch.Tensor) -> str:
    """The end of a fit whose model is 0 at every point with no slope in any parameter
    (``A*exp(-Ea/(R*T))`` at Ea = 1e7: exp(-4000) underflows), though the data are not:
    no combination of the parameters is determined there (the rank test's words would
    say that some are); the parameters ran, or started, where the model vanishes."""
    values = ", ".join(f"{n} = {v:.4g}" for n, v in zip(names, final.tolist()))
    return (f"the model is 0 at every point here ({values}), with no slope in any "
            "parameter: they ran, or started, where it vanishes (its values underflow), so "
            "nothing moves them; expected a start where the model is near the data's size "
            "(p0), or bounds that keep it there")


def _zero_prediction_loss(problem, final: torch.Tensor) -> float:
    """The loss of predicting 0 at every point, from the data alone (the model at all-zero
    parameters, as before, is no zero prediction, and a user's ``A/(x*w)`` warned there)."""
    base = getattr(problem, "base", problem)
    y, sigma, loss = (getattr(base, k, None) for k in ("y", "sigma", "loss"))
    if y is None or loss is None:
        with torch.no_grad():
            return float(problem.objective(torch.zeros_like(final)))
    r = -y if sigma is None else -y / sigma
    with torch.no_grad():
        return float(loss.reduce(r, loss.delta))


def lost_rank(problem, final: torch.Tensor, free: tuple[str, ...], scaled=None) -> str | None:
    """A message naming the parameters the data do not determine, or None at full rank."""
    if scaled is None:
        from .lm import free_residuals_and_jacobian
        names = problem.model.param_names
        idx = torch.tensor([names.index(n) for n in free], device=final.device)
        try:
            _, jac = free_residuals_and_jacobian(problem, final, idx)
        except RuntimeError:
            return None
        if not bool(torch.isfinite(jac).all()):
            return None
        scaled = scaled_singular(jac)
    s, vh = scaled
    kept = s > s.new_tensor(torch.finfo(s.dtype).eps * max(problem.n, len(free))) * s[0]
    rank = int(kept.sum())
    if s[0] == 0 or rank < len(free):
        return rank_message(rank, free, s, vh, far_inputs(problem))
    return None


FAR = 30.0     # an input whose mean is beyond this many of its spreads from 0


def far_inputs(problem, x=None) -> str:
    """``'x lies (mean 1005, spread 2.9)'`` for an input column of ``problem`` (its own x,
    or ``x``: one series of many) far from 0 for its spread, where a rank lost to rounding
    (a polynomial in raw x over [1000, 1010], condition 1e20) cannot tell itself from a
    true dependence by the singular values: the data say it; else ''."""
    base = getattr(problem, "base", problem)
    x = getattr(base, "x", None) if x is None else x
    names = getattr(getattr(base, "model", None), "input_names", ())
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.shape[0] < 2:
        return ""
    cols = [x] if x.ndim == 1 else list(x.unbind(-1))
    for name, col in zip(names, cols):
        col = col[torch.isfinite(col)]
        if col.numel() < 2:
            continue
        mean, spread = float(col.mean()), float(col.std())
        if spread > 0 and abs(mean) > FAR * spread:
            return f"{name} lies (mean {mean:.4g}, spread {spread:.2g})"
    return ""


NEARLY = 8.0     # a dropped singular value above this many eps (of the largest): a
                 # near-dependence within rounding, not a dependence (a*b*x: about 1 eps)


def rank_message(rank: int, free, s: torch.Tensor, vh: torch.Tensor, far: str = "") -> str:
    """The message of a lost rank, naming the parameters with a component outside the row
    space of the scaled Jacobian (``s``, ``vh`` its SVD; the same for one fit and many);
    ``far``: ``far_inputs``'s words, a hint to centre that input."""
    kept = torch.arange(s.shape[-1], device=s.device) < rank
    outside = (1 - vh[kept].square().sum(0)).clamp_min(0).sqrt()
    involved = [free[i] for i in (outside > 1e-3).nonzero().flatten().tolist()] or list(free)
    shown = ", ".join(involved[:10]) + (", ..." if len(involved) > 10 else "")
    text = (f"the Jacobian lost rank ({rank} of {len(free)}): " + (
        f"the data do not determine {shown} (the loss does not change with it here); its "
        "value is one choice among many" if len(involved) == 1 else
        f"the data determine only combinations of {shown}, not each one; these values are "
        "one choice among many"))
    eps = torch.finfo(s.dtype).eps
    top = float(s[0]) if s.numel() else 0.0
    if rank < s.shape[-1] and top > 0 and float(s[rank]) > NEARLY * eps * top:
        # not a dependence of the columns themselves (a*b*x leaves eps of them) but one
        # within the rounding of this precision: a polynomial in raw x over [1000, 1010]
        text += (f" (their columns are independent but not separable in "
                 f"{str(s.dtype).replace('torch.', '')}: condition {top / float(s[rank]):.2g}; "
                 "centring and scaling the inputs, as x - mean(x), or the parameters may "
                 "make them determinable)")
    elif far:
        text += (f" ({far} far from 0 for its spread: functions of it, as its powers, are "
                 "nearly dependent in this precision; centring it, as x - mean(x), may make "
                 "them determinable)")
    return text


def scaled_singular(jac: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values and ``V^T`` of ``J D^-1`` (``D``: column norms, 1 for a zero column)."""
    norms = torch.linalg.vector_norm(jac, dim=-2)
    d = torch.where(norms > 0, norms, torch.ones_like(norms))
    a = jac / d.unsqueeze(-2)          # (..., n, P) / (..., 1, P): batches too
    if a.shape[-2] > a.shape[-1]:        # tall: the SVD of R from a QR (P x P), which also
        a = torch.linalg.qr(a, mode="r").R   # keeps CUDA's SVD off matrices of 10^8 rows
    _, s, vh = torch.linalg.svd(a, full_matrices=False)
    return s, vh


CLAIMS = ("gtol", "ftol", "xtol")
BOUNDS_PREFIX = "no certified optimum within the bounds: "


def _stuck_texts() -> tuple[str, ...]:
    """The starts of LM's messages for an end without a minimum found: no step lowered the
    loss, a stall, a walk along a flat valley (which the test names the parameters of),
    the step limit (a runaway's own text says what it saw: the limit it approaches)."""
    return tuple(lm_message(c, {}, 0) for c in (ROUGH, TRIES, STALLED, WALK)) + \
        (lm_message(MAX_STEPS, {}, 0).split("(")[0],)


def looked_at_for_determination(reason: str, detail: str, judged: bool) -> bool:
    """Whether ``not_determined`` judges an end: every converged one, and one where LM
    found no step or ran to a limit (its text explains less than "the data do not
    determine d", where that is why: a decay's rate of 193 whose term touches one point,
    where LM's steps end for want of any slope) that can be ``judged``: its standard errors
    finite (a float32 fit whose errors overflow is better told to try float64) and a step
    taken (an end at the start is told what is wrong with the start: its scale)."""
    if reason in CLAIMS:
        return True
    if reason not in ("failed", "max_steps") or not judged:
        return False
    text = detail[len(BOUNDS_PREFIX):] if detail.startswith(BOUNDS_PREFIX) else detail
    return text.startswith(_stuck_texts())


def walk_named(names, theta: np.ndarray, stderr: np.ndarray, detail: str) -> str | None:
    """An LM end that walked along a flat valley (``batch_lm.WALK``) told with the names of
    the parameters it leaves undetermined (standard errors beyond ``UNDETERMINED`` times
    their values), where ``not_determined``'s look along the covariance's direction, which
    a curved valley leaves, did not tell; None for any other end, or none such."""
    text = detail[len(BOUNDS_PREFIX):] if detail.startswith(BOUNDS_PREFIX) else detail
    if not text.startswith(lm_message(WALK, {})):
        return None
    with np.errstate(invalid="ignore"):
        loose = [j for j in range(len(names))
                 if not stderr[j] <= UNDETERMINED * abs(theta[j])]
    if not loose:
        return None
    values = ", ".join(f"{names[j]} = {theta[j]:.4g} +/- {stderr[j]:.3g}" for j in loose)
    return f"the data do not determine {', '.join(names[j] for j in loose)} ({values}): {text}"


def undetermined_suspects(theta: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``(k,)`` True where two or more parameters correlated beyond ``TOGETHER`` each have a
    standard error beyond ``UNDETERMINED`` times their value, or one alone beyond ``LONE``
    times (``theta`` ``(k, F)``, ``cov`` ``(k, F, F)``, NaN where undefined): the fits
    ``not_determined`` looks at (its test of the loss along the parameter's direction
    decides; a parameter near 0, whose relative error means nothing, passes it)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.sqrt(np.clip(np.diagonal(cov, axis1=-2, axis2=-1), 0, None))
        big = sd > UNDETERMINED * np.abs(theta)
        corr = np.abs(cov) / (sd[..., :, None] * sd[..., None, :])
        lone = (sd > LONE * np.abs(theta)).any(-1)
    pair = big[..., :, None] & big[..., None, :] & (corr > TOGETHER)
    pair &= ~np.eye(theta.shape[-1], dtype=bool)
    return pair.any((-1, -2)) | lone


def _probe(sse: Callable, at: np.ndarray) -> float:
    """``sse(at)``, NaN where the model cannot be evaluated there (a user's function that
    overflows one standard error away: the bowl the covariance describes is not there)."""
    try:
        return float(sse(at))
    except (InputError, ArithmeticError, ValueError, RuntimeError):
        return math.nan


STEEP = 100.0       # a rise beyond this times the covariance's own: not its bowl there
SHRINK = 4.0        # ... so look again this many times nearer
LOOKS = 7           # at most this many times (down to 4^-6 standard errors)
ROUNDING = 1e-12    # a rise this far (of S) below the quadratic's tenth is rounding


def _bowl(sse: Callable, theta: np.ndarray, delta: np.ndarray, S: float, scale: float) -> bool:
    """Whether ``S`` rises along ``+-t delta`` as the covariance's quadratic says, by
    ``t^2 scale``, within a factor 10 below and ``STEEP`` above, at ``t = 1`` or nearer.

    A rise far beyond the quadratic's means the step left the region it describes: a
    Jacobian whose columns nearly vanish (a logistic steeper than the spacing of x: its
    rate seen by one point) gives standard errors of 1e11, and one of them away the model
    is a hard step whose loss rises for that reason alone, though along the valley the loss
    is flat to rounding. Nearer steps tell: a true minimum's loss is quadratic near it.

    So every look down to ``SHRINK^-(LOOKS-1)`` must rise (by a tenth of the quadratic's,
    less the rounding of ``S``), not only the first that matches: a walk towards a limit
    (``A*exp(-x/tau)+C`` becoming a line, tau = -7e4 +/- 6e7) rose by 4.5 times the
    quadratic's one standard error away, while a hundredth of one lowered ``S`` by 3e-4 of
    itself on both sides."""
    t, seen = 1.0, False
    rounding = ROUNDING * abs(S)
    for _ in range(LOOKS):
        rise = [_probe(sse, theta + sign * t * delta) - S for sign in (1.0, -1.0)]
        want = t * t * scale
        if not all(math.isfinite(r) and r >= 0.1 * want - rounding for r in rise):
            return False              # flat, falling or undefined: no bowl
        seen = seen or all(r <= STEEP * want for r in rise)
        t /= SHRINK
    return seen


def not_determined(names, theta: np.ndarray, cov: np.ndarray, sse: Callable, S: float,
                   scale: float, unit: np.ndarray | None = None) -> str | None:
    """A message when the loss is not the quadratic bowl its covariance describes along the
    joint direction of the suspects (``undetermined_suspects``), else None.

    With ``j`` the parameter of largest relative standard error, the step
    ``delta = cov[:, j] / sd_j`` moves ``theta_j`` by one standard error and the others as
    they follow it (the valley's direction); there the Gauss-Newton model of the sum of
    squares ``S`` rises by exactly ``scale`` (``S / dof``, or 1 with absolute sigma). A fit
    whose ``S`` rises by less than a tenth of that on either side is not at a determined
    minimum; one whose ``S`` rises far more is looked at nearer (``_bowl``). ``sse(theta)`` is ``S`` at a point (numpy ``(F,)`` in, float out);
    ``theta`` and ``cov`` may be in units ``unit`` ``(F,)`` of each parameter, and the
    message then quotes the values in the parameters' own."""
    if not bool(undetermined_suspects(theta[None], cov[None])[0]):
        return None
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(theta != 0, sd / np.abs(theta), np.inf)
        corr = cov / np.outer(sd, sd)
        j = int(np.argmax(rel))
        delta = cov[:, j] / sd[j]        # NaN where the errors overflow: _bowl finds no bowl
    if _bowl(sse, theta, delta, S, scale):
        return None
    group = [names[i] for i in range(len(names))
             if rel[i] > UNDETERMINED and (i == j or abs(corr[i, j]) > TOGETHER)]
    shown = ", ".join(group[:10]) + (", ..." if len(group) > 10 else "")
    u = 1.0 if unit is None else unit[j]
    quoted = f"({names[j]} = {theta[j] * u:.4g} +/- {sd[j] * u:.3g})"
    if len(group) == 1:
        return (f"the data do not determine {shown}: it is uncertain to more than "
                f"{UNDETERMINED:g} times its value {quoted}, and the loss does not rise "
                "along it as it must at a minimum (other values fit as well, or better as "
                "it grows); fix or bound it, or leave it out of the model")
    return (f"the data do not determine {shown}: they move together, each uncertain to more "
            f"than {UNDETERMINED:g} times its value {quoted}, and the loss does not rise "
            "along their joint direction as it must at a minimum, so it may keep falling as "
            "they grow without bound; fix or bound one of them, or fit a combination of them")


def not_determined_scaled(names, theta: np.ndarray, stderr: np.ndarray, corr: np.ndarray,
                          sse, S: float, scale: float) -> str | None:
    """``verdict.not_determined`` from standard errors and correlations: where the
    covariance overflows (errors of 1e157: variances of 1e314) it is asked in units of a
    power of 2 near each standard error (exact, and the same test: relative errors,
    correlations and the steps it takes do not depend on the units), and its message then
    quotes the values in the parameters' own units."""
    with np.errstate(over="ignore", invalid="ignore"):
        cov = corr * stderr[:, None] * stderr[None, :]
    if np.isfinite(cov).all() or not np.isfinite(stderr).all():
        return not_determined(names, theta, cov, sse, S, scale)
    unit = np.exp2(np.round(np.log2(np.where(stderr > 0, stderr, 1.0))))
    return not_determined(names, theta / unit, corr * (stderr / unit)[:, None] *
                          (stderr / unit)[None, :], lambda f: sse(f * unit), S, scale, unit)
