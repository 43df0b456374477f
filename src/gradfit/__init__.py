"""gradfit: fit any function to data by gradient descent, and see how it works.

    >>> import gradfit
    >>> d = gradfit.lesson_data()
    >>> r = gradfit.fit("a*x^2 + b*x + c", d.x, d.y, optimizer="lbfgs", steps=100)
    >>> sorted(r.params)
    ['a', 'b', 'c']
"""
from .config import FitConfig
from .data import Dataset, lesson_data, load_csv, load_data, synthetic
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

__all__ = [
    "fit", "iter_fit", "loss_and_grad", "fit_many", "ManyResult", "FitConfig", "FitResult", "StepRecord",
    "Model", "make_model", "MODELS", "LOSSES", "OPTIMIZERS", "SCHEDULES",
    "DATASETS", "Dataset", "lesson_data", "load_csv", "load_data", "synthetic",
    "GradfitError", "InputError", "ExpressionError", "DataError", "FitError",
]
