"""One table of run settings drives FitConfig, the command line, the web API and /api/meta."""
import dataclasses
import inspect
import json
import math

import pytest

import gradfit
from gradfit.cli.options import FACE_OPTIONS
from gradfit.cli.parser import build_parser
from gradfit.config import FitConfig
from gradfit.errors import InputError
from gradfit.optimizers import OPTIMIZERS
from gradfit.settings import SETTINGS, describe


@pytest.fixture
def new_optimizer(monkeypatch):
    """A name registered in the registry only: gd under another name."""
    spec = dataclasses.replace(OPTIMIZERS["gd"], name="gd_again", description="gd again")
    monkeypatch.setitem(OPTIMIZERS, "gd_again", spec)
    return "gd_again"


def _subparsers():
    parser = build_parser()
    (action,) = parser._subparsers._group_actions
    return action.choices


def test_a_registered_optimizer_is_accepted_everywhere_without_other_edits(new_optimizer):
    assert FitConfig(optimizer=new_optimizer).optimizer == new_optimizer
    args = build_parser().parse_args(["fit", "lesson", "--model", "a*x+b", "-o", new_optimizer])
    assert args.optimizer == new_optimizer
    d = gradfit.lesson_data()
    r = gradfit.fit("a*x+b", d.x, d.y, optimizer=new_optimizer, lr=0.01, steps=3)
    assert r.steps == 3 and r.history[-1] < r.history[0]
    schemas = pytest.importorskip("gradfit.web.schemas")
    run = schemas.RunIn(data={"x": [1, 2], "y": [1, 2]}, model="a*x", optimizer=new_optimizer)
    assert run.optimizer == new_optimizer
    enum = schemas.RunIn.model_json_schema()["properties"]["optimizer"]["enum"]
    assert enum == list(OPTIMIZERS) and new_optimizer in enum
    assert new_optimizer in describe()["optimizer"]["choices"]


def test_an_unregistered_name_is_refused_by_every_face_in_one_voice(capsys):
    with pytest.raises(InputError, match="unknown optimizer 'magic': expected one of gd,"):
        FitConfig(optimizer="magic")
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["fit", "lesson", "--model", "a*x", "-o", "magic"])
    assert exc.value.code == 2 and "invalid choice: 'magic'" in capsys.readouterr().err
    schemas = pytest.importorskip("gradfit.web.schemas")
    with pytest.raises(ValueError, match="unknown optimizer 'magic': expected one of gd,"):
        schemas.RunIn(data={"x": [1], "y": [1]}, model="a*x", optimizer="magic")


def test_every_command_line_option_is_a_setting_or_a_face_option():
    for command, sub in _subparsers().items():
        for action in sub._actions:
            assert action.dest in SETTINGS or action.dest in FACE_OPTIONS, (command, action.dest)
            row = SETTINGS.get(action.dest)
            if row is None:
                continue
            assert row.cli_flag in action.option_strings, (command, row.name)
            assert row.help in action.help
            assert action.choices == (row.names() if row.choices else None)
            if row.kind in ("int", "float"):
                assert action.type is {"int": int, "float": float}[row.kind]


def test_every_fit_setting_of_the_config_is_an_option_of_gradfit_fit():
    fit = _subparsers()["fit"]
    dests = {a.dest for a in fit._actions}
    config_rows = {n for n, r in SETTINGS.items() if r.scope == "config"}
    assert config_rows - dests == {"options"}    # options: one flag per option row instead
    option_rows = {n for n, r in SETTINGS.items() if r.scope == "option"}
    assert {"momentum", "nesterov", "batch_size", "accumulate_grad"} <= dests & option_rows


def test_every_field_of_fit_config_has_a_row():
    fields = {f.name for f in dataclasses.fields(FitConfig)}
    assert fields == {n for n, r in SETTINGS.items() if r.scope == "config"}
    for f in dataclasses.fields(FitConfig):
        assert SETTINGS[f.name].default == f.default or SETTINGS[f.name].kind == "map"


def _schema_models():
    schemas = pytest.importorskip("gradfit.web.schemas")
    return schemas, [m for _, m in inspect.getmembers(schemas, inspect.isclass)   # requests
                     if issubclass(m, schemas.Strict) and m is not schemas.Strict]


def _limits(prop: dict) -> dict:
    if "anyOf" in prop:
        prop = next(p for p in prop["anyOf"] if p.get("type") != "null")
    return prop


def test_every_api_field_is_a_setting_or_a_request_field_within_the_tables_limits():
    schemas, models = _schema_models()
    checked = set()
    for model in models:
        props = model.model_json_schema()["properties"]
        for name, prop in props.items():
            assert name in SETTINGS or name in schemas.REQUEST_FIELDS, (model.__name__, name)
            row = SETTINGS.get(schemas.ALIASES.get(name, name))
            if row is None:
                continue
            checked.add(row.name)
            p = _limits(prop)
            if row.choices is not None:
                assert p["enum"] == row.names(), (model.__name__, name)
            if row.low is not None:
                low = p.get("exclusiveMinimum", p.get("minimum"))
                assert low is not None and low >= row.low, (model.__name__, name)
            if row.high is not None:
                high = p.get("exclusiveMaximum", p.get("maximum"))
                assert high is not None and high <= row.high, (model.__name__, name)
    assert {"model", "loss", "optimizer", "lr", "steps", "seed", "p0", "delta",
            "test_fraction"} <= checked


def _bad_value(row):
    if row.choices is not None:
        return "no-such-name"
    if row.kind == "bool":
        return "yes"
    if row.kind == "int":
        return (row.high + 1) if row.high is not None else -1
    if row.kind == "float":
        return math.nan
    return ""


@pytest.mark.parametrize("name", [n for n, r in SETTINGS.items()
                                  if r.scope == "config" and r.kind != "map"])
def test_fit_config_refuses_what_its_row_refuses_in_one_voice(name):
    row = SETTINGS[name]
    bad = _bad_value(row)
    with pytest.raises(InputError) as exc:
        row.check(bad)
    with pytest.raises(InputError) as via_config:
        FitConfig(**{name: bad})
    assert str(via_config.value) == str(exc.value)
    assert FitConfig(**{name: row.default}) == FitConfig()


@pytest.mark.parametrize("options,match", [
    ({"momentum": 1.5}, "bad momentum: expected a finite number, 0 <= momentum < 1, got 1.5"),
    ({"momentum": -0.1}, "bad momentum"), ({"batch_size": 0}, "bad batch size"),
])
def test_optimizer_options_are_checked_by_their_rows(options, match):
    optimizer = "sgd" if "batch_size" in options else "momentum"
    with pytest.raises(InputError, match=match):
        FitConfig(optimizer=optimizer, options=options)
    assert FitConfig(optimizer=optimizer, options={k: 1 if k == "batch_size" else 0.5
                                                   for k in options})


def test_query_values_parse_by_their_rows_type():
    c = FitConfig(optimizer="momentum", lr=0.5, steps=7, absolute_sigma=True, starts=3,
                  options={"momentum": 0.8}, bounds={"a": (0, None)}, divergence=math.inf)
    assert FitConfig.from_query(c.to_query()) == c
    with pytest.raises(InputError, match="bad value for 'steps' in the query"):
        FitConfig.from_query("steps=ten")


def test_the_table_as_json_is_strict_and_complete():
    d = describe()
    text = json.dumps(d, allow_nan=False)
    assert set(json.loads(text)) == set(SETTINGS)
    assert d["optimizer"]["choices"] == list(OPTIMIZERS)
    assert d["momentum"]["range"] == "0 <= momentum < 1"
    assert all(row["help"] for row in d.values())
