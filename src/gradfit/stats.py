"""Small statistics the core needs without scipy: Student's t quantile.

    >>> round(student_t_quantile(0.975, 10), 6)
    2.228139
"""
from __future__ import annotations

import math


def _t_cdf_upper_half(t: float, dof: float, intervals: int = 1000) -> float:
    """``P(0 <= T <= t)`` by Simpson's rule on the density, in the variable ``u = atan(t)``
    (which makes the heavy tails of small ``dof`` smooth and finite)."""
    log_c = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
    end = math.atan(t)
    if end <= 0:
        return 0.0
    h = end / intervals

    def g(u):      # density of T at tan(u), times dt/du = 1/cos(u)^2
        tt, c = math.tan(u), math.cos(u)
        return math.exp(log_c - (dof + 1) / 2 * math.log1p(tt * tt / dof)) / (c * c)
    total = g(0.0) + g(end)
    total += 4 * sum(g((2 * k - 1) * h) for k in range(1, intervals // 2 + 1))
    total += 2 * sum(g(2 * k * h) for k in range(1, intervals // 2))
    return total * h / 3


def student_t_quantile(p: float, dof: float) -> float:
    """The ``p`` quantile of Student's t with ``dof`` degrees of freedom (``0 < p < 1``),
    to about 1e-9, by bisection on the distribution function."""
    if not 0 < p < 1 or not dof > 0:
        raise ValueError("need 0 < p < 1 and dof > 0")
    if p < 0.5:
        return -student_t_quantile(1 - p, dof)
    target = p - 0.5
    lo, hi = 0.0, 1.0
    while _t_cdf_upper_half(hi, dof) < target:
        hi *= 2
        if hi > 1e12:
            return math.inf
    for _ in range(60):
        mid = (lo + hi) / 2
        if _t_cdf_upper_half(mid, dof) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-10 * max(1.0, hi):
            break
    return (lo + hi) / 2
