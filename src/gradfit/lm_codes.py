"""LM's outcome codes, the thresholds they name, and their texts: one vocabulary for one
fit and many (``batch_lm`` makes the codes; ``fit``, ``fit_many``, the finishes and the
verdicts read them).

    >>> CODES[XTOL], message(WALK, {}).split(":")[0]
    ('xtol', 'the parameters keep moving along a valley where the loss is flat (over 100 steps they moved by over 1% of their scale while the loss fell by less than 1e-08 of itself)')
"""
from __future__ import annotations

OPTIONS = {
    "ftol": 1e-15,      # relative reduction of S below which a step ends the fit
    "xtol": 1e-15,      # relative scaled step below which a step ends the fit
    "gtol": 1e-15,      # cosine between residuals and Jacobian columns that ends the fit
    "factor": 0.3,      # first trust region radius, times |D theta0| (MINPACK's factor;
                        # 0.1 to 10 solve all 54 NIST fits, MINPACK's 100 not BoxBOD's)
    "max_tries": 100,   # rejected trials in a row before giving up
}
CODES = ("running", "gtol", "ftol", "xtol", "max_steps", "failed", "failed", "failed",
         "gtol", "failed", "xtol", "failed", "failed", "failed", "failed")
RUNNING, GTOL, FTOL, XTOL, MAX_STEPS, NONFINITE, TRIES, ROUGH, PERFECT, ZERO = range(10)
ROUNDING = 10           # an xtol code that says "at the rounding level" (reported as xtol)
UNDERFLOW = 11          # S below the smallest normal number: no test on it can be trusted
RUNAWAY = 12            # the parameters grow without bound while S barely falls
RUNAWAY_STEPS = 50      # accepted steps between two looks at |theta| and S
RUNAWAY_GROWTH = 1.5    # ... |theta| grew by this factor while
RUNAWAY_GAIN = 1e-3     # ... S fell by less than this, relatively
STALLED = 13            # ftol/xtol by a step a shrunk trust region made tiny, where the
                        # loss still falls along the Gauss-Newton direction or an axis
WALK = 14               # the parameters keep moving along a valley where S is flat
WALK_STEPS = 100        # accepted steps between two looks at theta and S
WALK_MOVE = 1e-2        # ... a parameter moved by this much of its scale while
WALK_GAIN = 1e-8        # ... S fell by less than this, relatively


def message(code: int, options: dict, max_steps: int | None = None) -> str:
    """The text of an outcome code, the same for one fit and many."""
    o = {**OPTIONS, **options}
    return {
        GTOL: "the gradient vanished (largest cosine of residuals and Jacobian columns <= "
              f"gtol={o['gtol']:g})",
        FTOL: f"the residual sum of squares stopped falling (relative reduction below "
              f"ftol={o['ftol']:g})",
        XTOL: f"the parameters stopped changing (relative step below xtol={o['xtol']:g})",
        ROUNDING: "the parameters are at the rounding level of the data (no step lowers the "
                  "loss beyond rounding, or Gauss-Newton steps stopped shrinking)",
        MAX_STEPS: f"reached the step limit ({max_steps} steps)",
        NONFINITE: "the residuals or their derivatives are not finite here",
        TRIES: f"no step lowered the loss in {int(o['max_tries'])} tries",
        ROUGH: "no step lowered the loss, down to steps at the rounding level of the "
               "parameters, although the gradient does not vanish and the loss's own "
               "curvature does not make this a minimum within rounding: the model may have "
               "a kink here (abs, max, relu), or its values are rounded too coarsely for "
               "LM's steps",
        PERFECT: "the residuals vanish: a perfect fit",
        ZERO: "the Jacobian is zero: the model does not depend on its parameters here",
        RUNAWAY: f"the parameters run off without bound (|theta| grew {RUNAWAY_GROWTH:g}-fold "
                 f"over {RUNAWAY_STEPS} steps while the loss fell by less than "
                 f"{RUNAWAY_GAIN:g} of itself): the "
                 "loss has no minimum near here, only a limit as parameters grow (as "
                 "a*exp(b*x)+c tends to a line when b -> 0); try other starting values, or a "
                 "model without that limit",
        WALK: f"the parameters keep moving along a valley where the loss is flat (over "
              f"{WALK_STEPS} steps they moved by over {WALK_MOVE:.0%} of their scale while the "
              f"loss fell by less than {WALK_GAIN:g} of itself): the data do not determine "
              "where along it the fit should end, or the loss has no minimum at a finite "
              "point, only a limit as parameters grow; try other starting values, bounds on "
              "the parameters that move, or fixing one of them",
        STALLED: "LM stalled short of a minimum: its trust region shrank until its steps "
                 "gained nothing, while the loss still falls nearby (along the Gauss-Newton "
                 "direction or a parameter's axis): the loss is too curved or not smooth here "
                 "for LM (a logistic steeper than the spacing of x, or a kink of abs, max or "
                 "relu sitting on a data point); try other starting values",
        UNDERFLOW: "the residuals are too small to square in this precision (their sum of "
                   "squares underflows below the smallest normal number), so the fit cannot "
                   "be judged: expected data of a scale nearer 1; rescale y (and sigma)",
    }[code]


def runs_away(norm, ref_norm, loss, ref_loss):
    """Whether ``|theta|`` (``norm``) grew RUNAWAY_GROWTH-fold since ``ref_norm`` while the
    loss fell by less than RUNAWAY_GAIN of ``ref_loss`` (tensors or floats): LM's and
    IRLS's test, every RUNAWAY_STEPS steps."""
    return (norm >= RUNAWAY_GROWTH * ref_norm) & (loss >= (1 - RUNAWAY_GAIN) * ref_loss)


def reason(code: int) -> str:
    return CODES[code]
