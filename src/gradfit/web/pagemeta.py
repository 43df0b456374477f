"""What ``/api/meta`` tells the page beyond the registries: its defaults, the query form of
a run (``FitConfig``'s), the learning-rate label's rule. The page copies no list of ours."""
from __future__ import annotations

from ..config import FitConfig
from ..models import MODELS
from ..optimizers import OPTIMIZERS
from .exact import STARTS
from .play import LABEL_RULE, LABEL_WINDOW, WINDOW
from .schemas import MAX_STEPS_PER_FRAME

#: the lesson's run: gd on the MAE from the guess, 2,000 steps (``lesson.gd_run``)
PAGE_DEFAULTS = {"model": "a*x^2 + b*x + c", "loss": "mae", "optimizer": "gd", "lr": 0.01,
                 "steps": 2000, "p0": {"a": 1.1, "b": 1.1, "c": 1.1}, "seed": 0}
#: the keys of a run in the page's URL: ``FitConfig``'s own query form
CONFIG_KEYS = ("model", "loss", "delta", "optimizer", "lr", "steps", "p0", "seed", "options")
STEPS_PER_FRAME = [k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
                   if k <= MAX_STEPS_PER_FRAME]


def page_meta() -> dict:
    config = FitConfig().to_dict()
    return {
        "config_defaults": {k: config[k] for k in CONFIG_KEYS},
        "page_defaults": PAGE_DEFAULTS,
        "model_families": sorted(MODELS),
        "weight_decay_optimizers": [k for k, v in OPTIMIZERS.items() if "weight_decay" in v.options],
        "lr_rule": LABEL_RULE, "label_window": LABEL_WINDOW, "frame_window": WINDOW,
        "flexible_starts": STARTS, "steps_per_frame": STEPS_PER_FRAME,
    }
