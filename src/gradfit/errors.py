"""The errors gradfit raises for bad input, all in one voice.

Every message says what was wrong, what was expected and what was given, and where
(a file and row, a column of an expression) when that is known::

    >>> str(InputError("bad learning rate", expected="a positive number", given=-1.0))
    'bad learning rate: expected a positive number, got -1.0'
    >>> str(InputError("no column named 'z'", expected="one of x, y", where="data.csv"))
    "data.csv: no column named 'z': expected one of x, y"

Input echoed back (a quoted text, or a run without spaces) is cut to ``MAX_QUOTED``
characters, and a whole message to ``MAX_MESSAGE``, so a 100 kB expression or name still
gives a readable line::

    >>> len(str(InputError("unknown parameter " + "z" * 100000)))
    241
    >>> str(InputError("bad model", given="a*x + " * 10000))[-30:]
    "a*x + a... (60000 characters)'"
"""
from __future__ import annotations

import re

MAX_QUOTED = 200       # characters of one quoted text or run of the user's text in a message
MAX_MESSAGE = 1000     # characters of a whole message
_LONG = re.compile(r"'[^']{%d,}'|\S{%d,}" % (MAX_QUOTED - 1, MAX_QUOTED + 1))


def clip(text: str) -> str:
    """``text`` with every quoted text or run of non-space characters over ``MAX_QUOTED``
    shortened (saying how long it was), and cut to ``MAX_MESSAGE`` characters in all."""
    text = _LONG.sub(_shorten, text)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 4] + " ..."


def _shorten(match: re.Match) -> str:
    text = match.group()
    q = "'" if text.startswith("'") else ""
    return f"{text[:MAX_QUOTED]}... ({len(text) - 2 * len(q)} characters){q}"


class GradfitError(Exception):
    """Base class of every error gradfit raises on purpose."""

    def _render_traceback_(self) -> list[str]:
        """What IPython and Jupyter show instead of a traceback: the message alone. These
        errors are the user's input refused on purpose; gradfit's own frames (80 lines of
        them for a syntax error in a model) would bury the one line that says what to do."""
        return [f"{type(self).__name__}: {self}"]


class InputError(GradfitError, ValueError):
    """Bad input from a user: a file, a column, an expression, an option.

    ``problem`` says what was wrong, ``expected`` what should have been there, ``given``
    what was (strings are quoted), ``where`` where it was found (file, row, column).
    """

    def __init__(self, problem: str, *, expected: str | None = None, given: object = None,
                 where: str | None = None):
        self.problem, self.expected, self.given, self.where = problem, expected, given, where
        message = problem
        if expected is not None:
            message += f": expected {expected}"
        if given is not None:
            shown = repr(given) if isinstance(given, str) else str(given)
            message += (", got " if expected is not None else ": got ") + shown
        if where:
            message = f"{where}: {message}"
        super().__init__(clip(message))


class ExpressionError(InputError):
    """A text expression that gradfit refuses; ``column`` is 1-based in the user's text."""

    def __init__(self, problem: str, *, text: str = "", column: int | None = None,
                 expected: str | None = None):
        self.text, self.column = text, column
        where_in = f" at column {column}" if column is not None else ""
        super().__init__(problem + where_in, expected=expected)


class DataError(InputError):
    """Bad data: a missing file or column, a cell that is not a number, NaN, too few rows."""


class FitError(GradfitError):
    """A fit that cannot be run or did not give a usable answer (diverged, failed)."""
