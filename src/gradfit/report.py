"""A fit's statistics and its report, as a scientist expects them (lmfit's ``fit_report``).

With the weighted residuals ``r_i = (f(x_i, p) - y_i) / sigma_i`` (``sigma = 1`` when none
is given), ``N`` points and ``P`` varied parameters (fixed ones do not count; ones at a
bound do, as in lmfit)::

    chi-square             chi2 = sum r_i^2
    degrees of freedom     nu = N - P
    reduced chi-square     chi2 / nu
    Akaike info criterion  AIC = N log(chi2 / N) + 2 P
    Bayesian info crit.    BIC = N log(chi2 / N) + log(N) P

(``chi2`` is floored at ``1e-250 N`` before the logarithm, as lmfit does). These are the
statistics of a least-squares fit (a Gaussian likelihood): for the mae and huber losses,
whose fits are not least-squares fits, only the counts are given. Each parameter's
confidence interval at level ``L`` is ``value +- t_{(1+L)/2, nu} * stderr`` with Student's
``t`` quantile (``stats.student_t_quantile``): the linear, curve_fit-style interval.

    >>> import numpy as np, gradfit
    >>> x = np.arange(6.0); y = np.array([1.0, 3.1, 4.9, 7.2, 8.8, 11.1])
    >>> r = gradfit.fit("a*x + b", x, y, optimizer="lm")
    >>> s = statistics(r)
    >>> s["nfree"], round(s["chisqr"], 6), round(s["aic"], 4)
    (4, 0.10819, -20.0937)
"""
from __future__ import annotations

import math
from html import escape

import numpy as np

from .expr_jacobian import jacobian_kind
from .stats import student_t_quantile

MAX_ROWS = 50     # parameters listed; a network's thousands are summarised


def _points(n: int) -> str:
    return f"{n} point" if n == 1 else f"{n} points"


def jacobian_label(result) -> str:
    """How the fit took its Jacobian (``expr_jacobian.jacobian_kind``): a text expression's
    own derivative rules where they cover it, not autograd, which it does not use."""
    return jacobian_kind(result.model_object, result.jacobian)


def loss_label(result) -> str:
    """The loss by what it is: with ``sigma`` given, mse is ``chi2/N``; others say weighted."""
    if result.sigma is None:
        return result.loss_name
    if result.loss_name == "mse":
        return "chi2/N"
    if result.loss_name == "rmse":
        return "sqrt(chi2/N)"
    return f"{result.loss_name} (weighted by 1/sigma)"


SQUARED = ("mse", "rmse")   # the losses whose fit the chi-square statistics describe


def statistics(result) -> dict | None:
    """``chisqr``, ``redchi``, ``nfree``, ``nvarys``, ``ndata``, ``aic``, ``bic`` from the
    result's residuals (None when the result holds no model and data). A parameter fixed or
    held on a bound is not varied: the standard errors count it so too. For a loss that is
    not a squared error (mae, huber) only ``ndata``, ``nvarys`` and ``nfree``: chi-square,
    AIC and BIC of its residuals would describe a least-squares fit it is not."""
    if result.model_object is None or result.x is None or result.y is None:
        return None
    pred = result.predict(result.x)
    r = pred - np.asarray(result.y, dtype=float)
    if result.sigma is not None:
        r = r / np.asarray(result.sigma, dtype=float)
    n = int(r.shape[0])
    nvarys = len(result.params) - len(set(result.fixed) | set(result.at_bound))
    chisqr = float(np.sum(r * r))
    nfree = n - nvarys
    if result.loss_name not in SQUARED:
        return {"ndata": n, "nvarys": nvarys, "nfree": nfree}
    floor = max(chisqr, 1e-250 * n)
    neg2loglik = n * math.log(floor / n) if math.isfinite(floor) else math.inf
    return {"ndata": n, "nvarys": nvarys, "nfree": nfree, "chisqr": chisqr,
            "redchi": chisqr / nfree if nfree > 0 else math.nan,
            "aic": neg2loglik + 2 * nvarys, "bic": neg2loglik + math.log(n) * nvarys}


def intervals(result, level: float = 0.95) -> dict[str, tuple[float, float]] | None:
    """Each free parameter's ``level`` confidence interval (Student t), or None without
    standard errors or degrees of freedom."""
    if result.stderr is None:
        return None
    nfree = result.n_points - len(result.stderr)
    if nfree <= 0:
        return None
    t = student_t_quantile((1 + level) / 2, nfree)
    return {n: (result.params[n] - t * se, result.params[n] + t * se)
            for n, se in result.stderr.items()}


def bound_note(result, name: str) -> str:
    """``(at lower bound)``, ``(at upper bound)``, ``(fixed)`` or ``""``."""
    if name in result.fixed:
        return "(fixed)"
    if name not in result.at_bound:
        return ""
    lo, hi = result.bounds.get(name, (-math.inf, math.inf))
    v = result.params[name]
    return "(at lower bound)" if abs(v - lo) <= abs(v - hi) else "(at upper bound)"


def _bounds_text(result, name: str) -> str:
    if name not in result.bounds:
        return ""
    lo, hi = result.bounds[name]
    return f"[{lo:.6g}, {hi:.6g}]"


def _rel(se: float, value: float) -> str:
    """The standard error as a percentage of the value: ``4.30%``; past 100000% (a value at
    0 within its error, such as 1e-17 +- 0.004) in powers of ten, ``4.0e+16%``, not 17
    digits; ``-`` at exactly 0."""
    if not value:
        return "-"
    rel = abs(se / value)
    return f"{rel:.2%}" if rel < 1e3 else f"{rel * 100:.1e}%"


def rows(result, level: float = 0.95) -> list[dict]:
    """One dict per parameter (at most ``MAX_ROWS``): name, value, stderr, rel, interval,
    start, bounds, note; cells already formatted as text."""
    ci = intervals(result, level) or {}
    out = []
    for name, value in list(result.params.items())[:MAX_ROWS]:
        se = (result.stderr or {}).get(name)
        lo_hi = ci.get(name)
        start = result.start.get(name)
        out.append({
            "name": name, "value": f"{value:.10g}",
            "stderr": "" if se is None else f"{se:.4g}",
            "rel": "" if se is None else _rel(se, value),
            "ci": "" if lo_hi is None else f"[{lo_hi[0]:.8g}, {lo_hi[1]:.8g}]",
            "start": "" if start is None else f"{start:.6g}",
            "bounds": _bounds_text(result, name), "note": bound_note(result, name)})
    return out


def _stat_lines(result) -> list[str]:
    s = statistics(result)
    if s is None:
        return []
    weighted = " (weighted by 1/sigma^2)" if result.sigma is not None else ""
    counts = (f"statistics {s['ndata']} points, {s['nvarys']} varied parameters, "
              f"{s['nfree']} degrees of freedom")
    if "chisqr" not in s:
        return [counts, "           (no chi-square, AIC or BIC: the fit minimised the "
                        f"{result.loss_name}, not a sum of squares)"]
    return [counts,
            f"           chi-square = {s['chisqr']:.8g}{weighted}   "
            f"reduced chi-square = {s['redchi']:.8g}",
            f"           AIC = {s['aic']:.6g}   BIC = {s['bic']:.6g}"]


def text_report(result, level: float = 0.95) -> str:
    """The report as text: what ran and why it stopped, the statistics, one row per
    parameter (value +- standard error, interval, start, bounds), correlations, R^2."""
    lines = [f"model      {result.model}",
             f"loss       {loss_label(result)} = {result.loss:.6g}   ({_points(result.n_points)})",
             f"optimizer  {result.method}, {result.steps} steps, {result.wall_time:.3g} s; "
             f"Jacobian by {jacobian_label(result)}",
             f"stopped    {result.message}"]
    lines += _stat_lines(result) + [""]
    table = rows(result, level)
    cols = [("name", "param", "<"), ("value", "value", ">")]
    if result.stderr is not None:
        cols += [("stderr", "+/- std error", ">"), ("rel", "rel", ">"),
                 ("ci", f"{level:.4g} interval", "<")]
    cols += [("start", "start", ">")]
    if result.bounds:
        cols += [("bounds", "bounds", "<")]
    if any(r["note"] for r in table):
        cols += [("note", "", "<")]
    widths = {k: max([len(head)] + [len(r[k]) for r in table]) for k, head, _ in cols}
    lines.append("  " + "  ".join(f"{head:{al}{widths[k]}}" for k, head, al in cols).rstrip())
    for r in table:
        lines.append("  " + "  ".join(f"{r[k]:{al}{widths[k]}}" for k, _, al in cols).rstrip())
    if len(result.params) > MAX_ROWS:
        lines.append(f"  ... {len(result.params) - MAX_ROWS} more parameters")
    constants = result.constants
    if constants:
        lines.append("  constants (not fitted): " + ", ".join(
            f"{k} = {v:.10g}" for k, v in constants.items()))
    lines += _correlations(result)
    if result.r2 is not None:
        lines += ["", f"R^2 = {result.r2:.6g}   RMSE = {result.rmse:.6g}"]
    return "\n".join(lines)


def _correlations(result) -> list[str]:
    corr = result.correlation
    if corr is None or len(corr) < 2:
        return []
    free = list(result.stderr)
    width = max(len(n) for n in free)
    pairs = sorted(((abs(corr[i, j]), free[i], free[j], corr[i, j])
                    for i in range(len(free)) for j in range(i)), reverse=True)
    shown = [f"  {a:>{width}} ~ {b:<{width}}  {c:+.3f}" for m, b, a, c in pairs[:10] if m >= 0.1]
    return ["", "correlations (|c| >= 0.1):"] + shown if shown else []


def html_report(result, level: float = 0.95) -> str:
    """The same report as HTML tables, for notebooks."""
    e = escape
    head = [("model", result.model),
            ("loss", f"{loss_label(result)} = {result.loss:.6g} ({_points(result.n_points)})"),
            ("optimizer", f"{result.method}, {result.steps} steps, {result.wall_time:.3g} s; "
                          f"Jacobian by {jacobian_label(result)}"),
            ("stopped", result.message)]
    s = statistics(result)
    if s is not None:
        head += [("statistics", f"{s['nfree']} degrees of freedom ({s['ndata']} points, "
                                f"{s['nvarys']} varied)")]
    if s is not None and "chisqr" in s:
        head += [("chi-square", f"{s['chisqr']:.8g}" + (" (weighted by 1/σ²)" if result.sigma
                                                        is not None else "")),
                 ("reduced chi-square", f"{s['redchi']:.8g}"),
                 ("AIC, BIC", f"{s['aic']:.6g}, {s['bic']:.6g}")]
    if result.r2 is not None:
        head.append(("fit", f"R² = {result.r2:.6g}, RMSE = {result.rmse:.6g}"))
    top = "".join(f"<tr><th style='text-align:left'>{e(k)}</th><td style='text-align:left'>"
                  f"{e(str(v))}</td></tr>" for k, v in head)
    keys = ["name", "value"] + (["stderr", "rel", "ci"] if result.stderr is not None else []) \
        + ["start", "bounds", "note"]
    names = {"name": "parameter", "value": "value", "stderr": "std error", "rel": "rel",
             "ci": f"{level:.4g} interval", "start": "start", "bounds": "bounds", "note": ""}
    body = "".join("<tr>" + "".join(f"<td>{e(r[k])}</td>" for k in keys) + "</tr>"
                   for r in rows(result, level))
    more = (f"<p>... {len(result.params) - MAX_ROWS} more parameters</p>"
            if len(result.params) > MAX_ROWS else "")
    ok = "" if result.converged else " style='color:#b00'"
    state = "converged" if result.converged else "not converged"
    return (f"<div><b{ok}>FitResult: {state} ({e(result.reason)})</b><table>{top}</table>"
            "<table><tr>" + "".join(f"<th>{e(names[k])}</th>" for k in keys) + "</tr>"
            + body + f"</table>{more}</div>")
