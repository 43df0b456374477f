"""A request's run settings as the one ``FitConfig`` (``gradfit.config``): what the page's run
(``/api/play``), its exact fit (``/api/exact``) and "Show code" (``/api/code``) compute with
is built and validated here, by the settings table, in the table's voice (``InputError``),
and handed to ``fit``/``iter_fit`` as the Python API takes it. No face of the web keeps a
setting of its own: a field the request does not carry is ``FitConfig``'s default.

JSON has no infinity: ``divergence`` null in a request is ``inf`` ("never"), as bounds are
null for "no bound" (``FitConfig.to_dict``'s own form).

    >>> from types import SimpleNamespace
    >>> c = config_of(SimpleNamespace(model="a*x+b", loss="mae", divergence=None,
    ...                               bounds={"a": [0, None]}, p0=None))
    >>> c.loss, c.divergence, c.bounds_dict, c.optimizer
    ('mae', inf, {'a': (0.0, inf)}, 'auto')
    >>> sorted(fit_kwargs(c))[:4]
    ['absolute_sigma', 'bounds', 'delta', 'device']
"""
from __future__ import annotations

import dataclasses
import math

from ..config import FitConfig

#: FitConfig's fields, in its order (its query's)
FIELDS = tuple(f.name for f in dataclasses.fields(FitConfig))
#: the map settings: None in a request is the empty map
MAPS = ("p0", "options", "bounds", "fixed")
#: what the page cannot run, and why (its runs compute where the server does): the page
#: says so, and keeps the field in its link and in "Show code"
NOT_RUN = {"device": "the page's runs compute on the server's CPU"}


def config_of(req, **override) -> FitConfig:
    """The ``FitConfig`` of a request: each of its fields that is a FitConfig field (the
    others are the request's own: data, views, paging), then ``override``."""
    d = {name: getattr(req, name) for name in FIELDS if hasattr(req, name)}
    d.update(override)
    for name in MAPS:
        if name in d and d[name] is None:
            d[name] = {}
    if "divergence" in d and d["divergence"] is None:
        d["divergence"] = math.inf
    return FitConfig(**d)


def fit_kwargs(config: FitConfig, *, without=("model",)) -> dict:
    """``config`` as ``fit``'s and ``iter_fit``'s keywords (the options as keywords, as the
    Python API takes them), ``without`` the fields named."""
    out = {name: getattr(config, name) for name in FIELDS
           if name not in without and name not in MAPS}
    maps = {"p0": config.p0_dict, "bounds": config.bounds_dict, "fixed": config.fixed_dict}
    out.update({k: v for k, v in maps.items() if k not in without})
    if "options" not in without:
        out.update(config.options_dict)
    return out


def without_fixed(p0: dict | None, fixed) -> dict | None:
    """``p0`` without the names held fixed (their value is the fixed one)."""
    if not p0:
        return p0
    fixed = dict(fixed or {})
    return {k: v for k, v in p0.items() if k not in fixed}
