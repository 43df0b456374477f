"""Command-line options built from the settings table (``gradfit.settings.SETTINGS``).

A run setting's flag, type, choices, default and help are the table's: an optimizer
registered in ``OPTIMIZERS`` is a choice of ``--optimizer`` with nothing else to edit.
The options that are not run settings (where the data is, what to write) are listed in
``FACE_OPTIONS``; a test checks that every option is one or the other.
"""
from __future__ import annotations

import argparse

from ..settings import SETTINGS

_TYPES = {"int": int, "float": float, "str": str, "map": str}
_MAP_METAVARS = {"p0": "a=1,b=2", "bounds": "a=0:10,b=:5", "fixed": "c=1"}

#: the options of the faces that are not settings of a run: data, outputs, servers
FACE_OPTIONS = frozenset({
    "data", "x", "y", "sigma", "drop_nan", "json", "group", "out", "workers", "scheduler",
    "quiet", "plot", "animate", "frames", "pictures", "params", "around", "span",
    "resolution", "fix_others", "lrs", "find", "host", "port", "open", "max_memory",
    "max_seconds", "allow_origin", "help", "version", "command",
})

_UNSET = object()


def add_setting(p: argparse.ArgumentParser, name: str, *, default=_UNSET, required=False,
                help: str | None = None) -> argparse.Action:
    """The option of setting ``name`` (``default``/``help``: this command's own, if given)."""
    row = SETTINGS[name]
    flags = [row.cli_flag] + ([row.short] if row.short else [])
    value = (row.default if row.kind != "map" and row.scope != "option" else None) \
        if default is _UNSET else default
    text = help or row.help
    if value not in (None, False) and "default" not in text and not required:
        text += f" (default: {value})"
    if row.kind == "bool":
        return p.add_argument(*flags, dest=name, action="store_true", help=text)
    kw = dict(dest=name, type=_TYPES[row.kind], help=text, required=required)
    if not required:
        kw["default"] = value
    if row.choices is not None:
        kw["choices"] = row.names()
    if row.kind == "map":
        kw["metavar"] = _MAP_METAVARS.get(name, "NAME=VALUE,...")
    return p.add_argument(*flags, **kw)


def add_settings(p: argparse.ArgumentParser, names, **defaults) -> None:
    """``add_setting`` for each of ``names``; ``defaults`` per name override the table's."""
    for name in names:
        if name in defaults:
            add_setting(p, name, default=defaults[name])
        else:
            add_setting(p, name)


def optimizer_options(args) -> dict:
    """The optimizer options given on the command line (rows of scope ``option``)."""
    out = {}
    for name, row in SETTINGS.items():
        value = getattr(args, name, None)
        # not 'in (None, False)': 0 == False, and --batch-size 0 was dropped unchecked
        if row.scope == "option" and value is not None and value is not False:
            out[name] = value
    return out
