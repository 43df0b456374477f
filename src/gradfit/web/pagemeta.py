"""What ``/api/meta`` tells the page beyond the registries: its defaults, the query form of
a run (``FitConfig``'s: every field of it, in its order), the learning-rate label's rule.
The page copies no list of ours: its keys, limits and defaults are these and the settings
table's (``settings``, served with each row's ``allow_inf``)."""
from __future__ import annotations

from ..config import FitConfig
from ..models import MODELS
from ..optimizers import OPTIMIZERS
from ..settings import SETTINGS, describe
from .exact import STARTS
from .play import LABEL_RULE, LABEL_WINDOW, WINDOW
from .runconfig import FIELDS, NOT_RUN
from .schemas import MAX_STEPS_PER_FRAME

#: the lesson's run: gd on the MAE from the guess, 2,000 steps (``lesson.gd_run``)
PAGE_DEFAULTS = {"model": "a*x^2 + b*x + c", "loss": "mae", "optimizer": "gd", "lr": 0.01,
                 "steps": 2000, "p0": {"a": 1.1, "b": 1.1, "c": 1.1}, "seed": 0}
#: the keys of a run in the page's URL: ``FitConfig``'s own query form, every field
CONFIG_KEYS = FIELDS
#: what a link of the all-default config says (its FitConfig query is empty, and an empty
#: hash opens the lesson's run): the run at its start, a page key FitConfig does not read
DEFAULT_CONFIG_MARK = "step=0"
STEPS_PER_FRAME = [k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
                   if k <= MAX_STEPS_PER_FRAME]


def page_hash(config: FitConfig) -> str:
    """The page's URL fragment (without ``#``) that opens ``config``'s run: its query, or
    ``DEFAULT_CONFIG_MARK`` for the all-default config (whose query is empty).

    >>> page_hash(FitConfig()), page_hash(FitConfig(steps=0))
    ('step=0', 'steps=0')
    """
    return config.to_query() or DEFAULT_CONFIG_MARK


def settings_rows() -> dict:
    """The settings table as the page reads it (``settings.describe``, with ``allow_inf``)."""
    return {name: {**row, "allow_inf": SETTINGS[name].allow_inf}
            for name, row in describe().items()}


def page_meta() -> dict:
    config = FitConfig().to_dict()
    return {
        "config_defaults": {k: config[k] for k in CONFIG_KEYS},
        "page_defaults": PAGE_DEFAULTS,
        "settings": settings_rows(),
        "not_run": NOT_RUN,
        "model_families": sorted(MODELS),
        "weight_decay_optimizers": [k for k, v in OPTIMIZERS.items() if "weight_decay" in v.options],
        "lr_rule": LABEL_RULE, "label_window": LABEL_WINDOW, "frame_window": WINDOW,
        "flexible_starts": STARTS, "steps_per_frame": STEPS_PER_FRAME,
    }
