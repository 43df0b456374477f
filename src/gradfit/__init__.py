"""gradfit: fit any function to data by gradient descent, and see how it works.

    >>> import gradfit
    >>> d = gradfit.lesson_data()
    >>> r = gradfit.fit("a*x^2 + b*x + c", d.x, d.y, optimizer="lbfgs", steps=100)
    >>> sorted(r.params)
    ['a', 'b', 'c']
"""
from .config import FitConfig
from .csv_read import load_csv
from .data import Dataset, lesson_data, load_data, synthetic
from .datasets import DATASETS
from .errors import DataError, ExpressionError, FitError, GradfitError, InputError
from .fit import fit, iter_fit, loss_and_grad
from .fit_many import fit_many
from .losses import LOSSES
from .models import MODELS, Model, make_model
from .optimizers import OPTIMIZERS, SCHEDULES
from .many_result import ManyResult
from .result import FitResult, StepRecord

__version__ = "0.1.0"


def playground(*args, **kwargs):
    """The web playground inline in Jupyter on your data: see ``gradfit.web.notebook``.

    ``gradfit.playground(x, y)`` or ``gradfit.playground(df, x="t", y="signal", sigma="err")``.
    (Imported on use: the core never loads the web server.)
    """
    from .web.notebook import playground as show
    return show(*args, **kwargs)


def _stop_playground() -> bool:
    """Stop the notebook's playground server (its frames go blank; the next
    ``gradfit.playground`` starts a new one). True if one was running."""
    from .web.notebook import stop
    return stop()


playground.stop = _stop_playground


__all__ = [
    "fit", "iter_fit", "playground", "loss_and_grad", "fit_many", "ManyResult", "FitConfig", "FitResult", "StepRecord",
    "Model", "make_model", "MODELS", "LOSSES", "OPTIMIZERS", "SCHEDULES",
    "DATASETS", "Dataset", "lesson_data", "load_csv", "load_data", "synthetic",
    "GradfitError", "InputError", "ExpressionError", "DataError", "FitError",
]
