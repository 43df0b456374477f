"""Names and words in an expression's text: how Python reads a name (``folded``, and why a
name that it reads as another is refused), and what a syntax error was (a keyword written as
a name, a product written without ``*``), said in the user's words. Pure text: no torch.

>>> folded("\u00b5")                          # the micro sign is read as Greek mu
'\u03bc'
>>> juxtaposed("2x", {})
('invalid syntax', 1, "a product written with '*' (not '2' and 'x' side by side), such as 2*x")
"""
from __future__ import annotations

import keyword
import math
import re
import unicodedata

CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
_WORD = re.compile(r"(?<![\w.])[^\W\d]\w*")   # a name in the text (not in 1e5 or 2.real)
_TOKEN = re.compile(r"(?P<num>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
                    r"|(?P<name>[^\W\d]\w*)|(?P<op>\S)")      # after a syntax error only


def folded(name: str) -> str:
    """``name`` as Python reads an identifier (NFKC, PEP 3131): ``µ`` (micro sign) is read
    as ``μ`` (Greek mu), full-width ``ａ`` as ``a``, ``ℯ`` as ``e``."""
    return name if name.isascii() else unicodedata.normalize("NFKC", name)


def folding_problem(name: str) -> str | None:
    """Why ``name`` cannot be written as it is (None when it can): Python would read it as
    another name (``folded``), which an expression's parameters and inputs then are. One
    rule everywhere: a name is written as it is read, in a model, ``p0``, bounds, ``fixed``
    and the command line's ``--p0``/``--bounds``/``--fix``."""
    read = folded(name)
    if read == name:
        return None
    ch = next((c for c in name if folded(c) != c), None)
    if ch is None:      # no character alone: a sequence composes (a + U+0301 -> U+00E1)
        mark = next((c for c in name if unicodedata.combining(c)), name[-1])
        meaning = f", the constant {read}" if read in CONSTANTS else ""
        return (f"the name {name!r} ({ascii(name)}) is read by Python as {read!r} "
                f"({ascii(read)}){meaning}: U+{ord(mark):04X} "
                f"{unicodedata.name(mark, 'a character')} is joined to the letter before it "
                "(a decomposed accent, as copied text and macOS file names have)")
    new = folded(ch)
    code = f"U+{ord(ch):04X} {unicodedata.name(ch, 'a character')}"
    into = f" (U+{ord(new):04X} {unicodedata.name(new, '')})" if len(new) == 1 else ""
    meaning = f", the constant {read}" if read in CONSTANTS else ""
    if ch == name:
        return f"the name {name!r} ({code}) is read by Python as {read!r}{into}{meaning}"
    return (f"the name {name!r} is read by Python as {read!r}{meaning} ({code} becomes "
            f"{new!r})")


def folding_advice(name: str) -> str:
    """The ``expected`` part for a name that ``folding_problem`` refuses."""
    read = folded(name)
    if read in CONSTANTS:
        return f"{read} for the constant, or an ASCII name for a parameter"
    if all(folded(c) == c for c in name):       # a decomposed accent: looks the same
        return f"the accented letter as one character ({ascii(read)}), or an ASCII name"
    return f"the name written as it is read ({read!r}), or an ASCII name"


def keyword_problem(src: str) -> tuple[str, int, str] | None:
    """After a syntax error: a Python keyword written as a name (``lambda*x``, a column
    named ``if``) is named as that, not as invalid syntax at a later column:
    ``(problem, character offset in src, expected)``, or None."""
    for m in _WORD.finditer(src):
        word = m.group()
        if keyword.iskeyword(word) and word not in ("True", "False", "None"):
            return (f"'{word}' is a Python keyword, which an expression cannot use as a name",
                    m.start(), f"another name, such as {word}_ or {word[:3]}1 (rename a "
                               "column of that name)")
    return None


def juxtaposed(src: str, functions) -> tuple[str, int, str] | None:
    """After a syntax error: a number or name written right after another (``2x``, ``2 x``,
    ``a b``, ``(x+1)x``) is a product without ``*``; ``sin x`` (a name in ``functions``) a
    call without brackets. ``(problem, character offset of the second one, expected)``, or
    None (Python had said "invalid decimal literal" at the 2 of ``2x``)."""
    prev = None
    for m in _TOKEN.finditer(src):
        kind = m.lastgroup
        if kind == "op" and m.group(kind) in "'\"":       # a string: Python's word stands
            return None
        if kind == "op" and m.group(kind) not in "()":
            prev = None
            continue
        token, at = m.group(kind), m.start(kind)
        if prev in functions and kind != "op":
            return ("invalid syntax", at,
                    f"a function's argument in brackets, such as {prev}({token})")
        if prev is not None and kind != "op" and not keyword.iskeyword(prev):
            left = "(...)" if prev == ")" else prev
            return ("invalid syntax", at, f"a product written with '*' (not '{left}' and "
                                          f"'{token}' side by side), such as {left}*{token}")
        prev = None if token == "(" else token
    return None
