"""A run is a value: round trips and validation."""
import pytest
from hypothesis import given, settings, strategies as st

from gradfit.config import FitConfig
from gradfit.errors import InputError
from gradfit.losses import LOSSES
from gradfit.optimizers import OPTIMIZERS, SCHEDULES

configs = st.builds(
    FitConfig,
    model=st.sampled_from(["a*x^2 + b*x + c", "poly:3", "relu:4", "mlp:8,8:tanh", "A*exp(-k*x)"]),
    loss=st.sampled_from(list(LOSSES)), optimizer=st.sampled_from(["gd", "adam", "lbfgs"]),
    lr=st.one_of(st.none(), st.floats(1e-6, 10)), steps=st.integers(0, 100000),
    p0=st.dictionaries(st.sampled_from(["a", "b", "c"]), st.floats(-1e6, 1e6), max_size=3),
    seed=st.integers(0, 2**31), schedule=st.sampled_from(list(SCHEDULES)),
    delta=st.floats(0.01, 100), time_limit=st.one_of(st.none(), st.floats(0.1, 100)))


@settings(max_examples=100, deadline=None)
@given(configs)
def test_round_trips(cfg):
    assert FitConfig.from_dict(cfg.to_dict()) == cfg
    assert FitConfig.from_json(cfg.to_json()) == cfg
    assert FitConfig.from_query(cfg.to_query()) == cfg


@pytest.mark.parametrize("kwargs,match", [
    ({"lr": 0}, "learning rate"), ({"lr": float("nan")}, "learning rate"), ({"steps": 1.5}, "steps"),
    ({"loss": "l1"}, "unknown loss"), ({"optimizer": "sgdd"}, "unknown optimizer"),
    ({"seed": -1}, "seed"), ({"options": {"momentum": 0.9}}, "does not take"),
    ({"dtype": "float16"}, "dtype"), ({"device": "tpu"}, "device"),
])
def test_validation_in_one_voice(kwargs, match):
    with pytest.raises(InputError, match=match):
        FitConfig(**kwargs)


def test_unknown_keys_are_refused():
    with pytest.raises(InputError, match="unknown setting 'colour'"):
        FitConfig.from_dict({"colour": "red"})
    with pytest.raises(InputError, match="unknown setting"):
        FitConfig.from_query("model=a*x&colour=red")
    with pytest.raises(InputError, match="JSON"):
        FitConfig.from_json("{not json")


def test_every_optimizer_has_a_default_rate():
    for name, spec in OPTIMIZERS.items():
        assert FitConfig(optimizer=name).learning_rate == spec.default_lr > 0


def test_zero_dimensional_arrays_are_the_numbers_they_hold():
    # p0={'a': np.array(1.0)} was refused: "expected a finite number, got 1.0"
    import numpy as np
    import torch
    import gradfit
    x, y = [1.0, 2.0, 3.0], [2.0, 4.0, 7.0]
    ref = gradfit.fit("a*x+b", x, y, p0={"a": 1.0, "b": 0.5})
    r = gradfit.fit("a*x+b", x, y, p0={"a": np.array(1.0), "b": torch.tensor(0.5)})
    assert r.params == ref.params and r.start == ref.start
    cfg = FitConfig(model="a*x+b", p0={"a": np.array(2)}, fixed={"b": np.float32(1.5)})
    assert cfg.p0_dict == {"a": 2} and type(cfg.p0_dict["a"]) is int
    assert cfg.fixed_dict == {"b": 1.5} and type(cfg.fixed_dict["b"]) is float
    with pytest.raises(InputError, match="finite number"):
        FitConfig(model="a*x+b", p0={"a": np.array([1.0, 2.0])})
