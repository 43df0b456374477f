"""The command line's small languages, parsed once: ``a=1,b=2``, bounds ``a=0:10,b=:5``,
sizes ``1G``, lists of numbers; and JSON written once (strict: never NaN or Infinity).

    >>> parse_assignments("a=1.1, b=2", "--p0")
    {'a': 1.1, 'b': 2.0}
    >>> parse_bounds("a=0:10,b=:5")
    {'a': (0.0, 10.0), 'b': (None, 5.0)}
    >>> parse_size("512M")
    536870912
"""
from __future__ import annotations

import os
from pathlib import Path

from .. import finite_json
from ..errors import InputError


def parse_number(text: str) -> float:
    """A number of an option, in the one grammar of CSV cells and expressions (``1.5``,
    ``-2e3``, ``nan`` and ``inf`` words for the checks to name): ValueError for ``1_0``,
    ``0x10`` or full-width digits, which ``float()`` took."""
    from ..csv_read import parse_number as cell
    return cell(text)


def parse_assignments(text: str, what: str) -> dict[str, float]:
    """``"a=1.1,b=2"`` -> ``{"a": 1.1, "b": 2.0}``."""
    values = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = part.partition("=")
        try:
            if not eq or not name.strip():
                raise ValueError
            number = parse_number(value.strip())
        except ValueError:
            raise InputError(f"bad {what}", expected="name=value pairs separated by commas, "
                             "e.g. a=1.1,b=2", given=part) from None
        values[_new_name(values, name.strip(), what)] = number
    return values


def _new_name(seen: dict, name: str, what: str) -> str:
    """``name`` if ``seen`` does not hold it yet, else an ``InputError``: ``a=1,a=2``
    would otherwise keep one of the two silently."""
    if name in seen:
        raise InputError(f"bad {what}: {name!r} is given twice", expected="each name once")
    from ..expr import folding_advice, folding_problem
    problem = folding_problem(name)     # 'µ' for the model's 'μ': no model has such a name
    if problem:
        raise InputError(f"bad {what}: {problem}, and a model's parameters are named as read",
                         expected=folding_advice(name))
    return name


def assignments_or_none(text: str | None, what: str) -> dict[str, float] | None:
    """``parse_assignments`` of an option that may be absent (None stays None)."""
    return parse_assignments(text, what) if text else None


def parse_size(text: str) -> int:
    """``"1G"`` -> 1073741824, ``"512M"`` -> 536870912, ``"2000000"`` -> 2000000 (bytes)."""
    t = text.strip().upper().removesuffix("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        value = -1
    if value >= 1 << 50:
        raise InputError("bad --max-memory: more than this machine can have",
                         expected="a size below 1024T, such as 1G or 1500M", given=text)
    if not value > 0:
        raise InputError("bad --max-memory", expected="a size such as 1G or 1500M", given=text)
    return int(value)


def parse_bounds(text: str | None) -> dict[str, tuple[float | None, float | None]] | None:
    """``"a=0:10,b=:5"`` -> ``{"a": (0.0, 10.0), "b": (None, 5.0)}`` (empty side: no bound)."""
    if not text:
        return None
    bounds = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, pair = part.partition("=")
        lo, colon, hi = pair.partition(":")
        try:
            if not eq or not colon or not name.strip():
                raise ValueError
            pair = (parse_number(lo.strip()) if lo.strip() else None,
                    parse_number(hi.strip()) if hi.strip() else None)
        except ValueError:
            raise InputError("bad --bounds", expected="name=low:high pairs separated by commas, "
                             "e.g. a=0:10,b=:5", given=part) from None
        bounds[_new_name(bounds, name.strip(), "--bounds")] = pair
    return bounds


def check_writable(target: str | None, flag: str) -> None:
    """Refuse an output path that cannot be written before the work that fills it (a run
    of an hour must not be lost to a typo in ``--out``); ``-`` is stdout."""
    if not target or target == "-":
        return
    path = Path(target)
    folder = path.parent
    problem = ("it is a directory" if path.is_dir() else
               f"the folder {str(folder)!r} does not exist" if not folder.is_dir() else
               "it cannot be written here" if not os.access(path if path.exists() else folder,
                                                            os.W_OK) else None)
    if problem:
        raise InputError(f"bad {flag}: {problem}", expected="a path to a file that can be "
                         "written", given=target)


def check_outputs(args) -> None:
    """``check_writable`` on the command's ``--out`` and ``--json`` paths, and none of its
    output paths the input data (``check_not_input``)."""
    for flag in ("out", "json"):
        check_writable(getattr(args, flag, None), f"--{flag}")
    check_not_input(args)


#: the options that name a file a command writes
OUTPUT_FLAGS = ("out", "json", "plot", "animate")


def check_not_input(args) -> None:
    """Refuse an output path (``OUTPUT_FLAGS``) that is a file the data is read from: the
    data would be overwritten (a built-in dataset's name reads no file)."""
    from ..datasets import DATASETS
    from .writing import check_not_the_input
    data = getattr(args, "data", None)
    if data is None or data in DATASETS:
        return
    for flag in OUTPUT_FLAGS:
        check_not_the_input(getattr(args, flag, None), f"--{flag}", data)


def write_text(target: str, text: str) -> None:
    """``text`` to stdout (``target`` ``-``) or to the file ``target``, whole or not at
    all: a full disk leaves an earlier file there as it was (``writing.replace_file``)."""
    if target == "-":
        print(text)
        return
    from .writing import write_text_file
    write_text_file(target, text + "\n", "the JSON file")


def write_json(target: str, payload) -> None:
    """``payload`` as strict JSON (``finite_json``): one line on stdout, indented in a file."""
    write_text(target, finite_json.dumps(payload, indent=None if target == "-" else 2))
