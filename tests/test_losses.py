"""Losses against numpy formulas; shape discipline; weights from sigma."""
import numpy as np
import pytest
import torch

from gradfit.errors import InputError
from gradfit.losses import LOSSES, get_loss

rng = np.random.default_rng(0)
PRED, Y, SIGMA = rng.normal(size=30), rng.normal(size=30), rng.uniform(0.5, 2, size=30)


def numpy_loss(name, r, delta=1.0):
    if name == "mae":
        return np.mean(np.abs(r))
    if name == "mse":
        return np.mean(r ** 2)
    if name == "rmse":
        return np.sqrt(np.mean(r ** 2))
    a = np.abs(r)
    return np.mean(np.where(a <= delta, 0.5 * r ** 2, delta * (a - 0.5 * delta)))


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_matches_numpy(name, weighted):
    sigma = torch.tensor(SIGMA) if weighted else None
    r = (PRED - Y) / (SIGMA if weighted else 1.0)
    got = get_loss(name, delta=0.7)(torch.tensor(PRED), torch.tensor(Y), sigma).item()
    assert got == pytest.approx(numpy_loss(name, r, 0.7), rel=1e-12)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_reduces_over_the_data_axis_only(name):
    preds = torch.tensor(np.stack([PRED, PRED + 1, PRED * 2]))[None].expand(2, 3, 30)
    out = LOSSES[name](preds, torch.tensor(Y))
    assert out.shape == (2, 3)
    assert out[1, 2].item() == pytest.approx(LOSSES[name](preds[1, 2], torch.tensor(Y)).item())


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_refuses_a_column_against_a_row(name):
    with pytest.raises(InputError, match=r"predictions \(30, 1\), targets \(30,\)"):
        LOSSES[name](torch.tensor(PRED)[:, None], torch.tensor(Y))


def test_unknown_loss_and_bad_delta():
    with pytest.raises(InputError, match="unknown loss 'l3'.*mae, mse, rmse, huber"):
        get_loss("l3")
    with pytest.raises(InputError, match="delta"):
        get_loss("huber", delta=-1)
