"""The size of a parameter on the page's data: how far it must move to move the curve by
the data's spread. Sliders of +-5 suit data of scale 1 (the lesson's); on timestamps (x of
1e9) or a signal in nanovolts a slope of 1e-9 sits at the slider's 0, and one step of
0.01 throws the curve off the page. From the model's derivative with respect to each
parameter at the start (one forward-mode pass each, no (n, P) Jacobian held):

    scale_j = rms(y) / rms_i(df(x_i)/dp_j)

with rms(y) the data's size (their level included: an offset of 20 over timestamps is
20, however little y varies). Where the
derivative vanishes or is not finite there is no scale (the slider keeps its default).
"""
from __future__ import annotations

import math

import torch

from ..landscape import USUAL_SCALES, natural_scales, rms as _rms

#: the page shows sliders for this many parameters at most (main.js's MAX_SLIDERS)
MAX_SLIDERS = 16
#: scales within this range are the lesson's: its sliders and starts stay as they are
USUAL = USUAL_SCALES


def slider_scales(model, x: torch.Tensor, y, start: dict[str, float]) -> dict[str, float | None]:
    """``name -> scale`` (or None) of each parameter at ``start`` on the data ``x``, ``y``;
    all None where x and y are of the lesson's size (within ``USUAL``), whose sliders and
    starts suit them."""
    names = list(model.param_names)
    y = torch.as_tensor(y, dtype=torch.float64)
    spread = _rms(y)
    columns = x.reshape(x.shape[0], -1).unbind(-1) if x.numel() else ()
    lo, hi = USUAL
    if not (spread > 0 and math.isfinite(spread)) or \
            all(lo <= v <= hi for v in [spread] + [_rms(c) or 1.0 for c in columns]):
        return {n: None for n in names}       # data of the lesson's size: its sliders
    return natural_scales(model, x, y, start)     # the core's (landscape views use it too)


def scaled_start(start: dict[str, float], scales: dict[str, float | None]) -> dict[str, float]:
    """A start of 1 is no start where a parameter's scale is 1e-9: such a parameter (out of
    ``USUAL``) starts at its scale (its sign kept), the curve then of the data's size."""
    lo, hi = USUAL
    return {n: (math.copysign(s, v or 1.0) if s is not None and not lo <= s <= hi else v)
            for (n, v), s in zip(start.items(), (scales.get(n) for n in start))}
