"""The whole command line's parser: one subcommand per module, options from the table."""
from __future__ import annotations

import argparse
import re

from .. import __version__
from ..errors import clip
from ..settings import SETTINGS
from . import fit, pictures, serve, small
from .exits import EXIT_EPILOG


# values that start with a minus: numbers ('-1e-3', '-1,0.1', '-3:3', and '-inf', '-nan':
# the checks then name them, where '--divergence -inf' had been "expected one argument")
# and expressions ('-a*x+b', '-x^2', '-exp(-k*t)': an operator or bracket, which no option
# name holds)
NEGATIVE_NUMBERS = re.compile(r"^-\.?\d[\d.eE+\-,:]*$|^-[^-\s][^\s]*[*/+^()]"
                              r"|^-(?i:inf|infinity|nan)$")


class Parser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line on stderr (exit 2), as every other
    bad input: the command, the message and where to read more."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # a value that starts with a minus and reads as numbers ('--lrs -1,0.1',
        # '--span -3,3', '--lr -1e-3') or an expression ('--model -a*x+b') is a value, not
        # an unknown option: argparse's own rule knows single numbers only
        self._negative_number_matcher = NEGATIVE_NUMBERS

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {clip(message)} (see '{self.prog} --help')\n")

    # a run setting's bad value is refused in the settings table's words, as Python and
    # FitConfig refuse it ('--steps 3.0': "bad number of steps: expected a whole number
    # 0..10000000, got 3.0", not argparse's "invalid int value: '3.0'"); the flag is named
    # first, as argparse names it
    def _get_value(self, action, arg_string):
        try:
            return super()._get_value(action, arg_string)
        except argparse.ArgumentError:
            row = SETTINGS.get(action.dest)
            if row is None or row.kind not in ("int", "float"):
                raise
            try:
                given = float(arg_string)     # '3.0' is the number Python would be given
            except ValueError:
                given = arg_string
            raise argparse.ArgumentError(action, str(row.refusal(given))) from None

    def _check_value(self, action, value):
        row = SETTINGS.get(action.dest)
        if action.choices is not None and value not in action.choices and row is not None \
                and row.choices is not None:
            # the table's words; argparse's own kept at the end for those who grep for it
            raise argparse.ArgumentError(action, f"{row.refusal(value)} (invalid choice: "
                                                 f"{value!r})")
        super()._check_value(action, value)


def build_parser() -> argparse.ArgumentParser:
    """Built on each call, so the choices are the registries' names at that moment."""
    parser = Parser(
        prog="gradfit", description="Fit any function to data by gradient descent.",
        epilog=EXIT_EPILOG + "\n\nRun 'gradfit COMMAND --help' for a command's options and "
        "examples.", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"gradfit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = argparse.RawDescriptionHelpFormatter
    small.add_lesson_parser(sub, fmt)
    fit.add_parser(sub, fmt)
    pictures.add_parsers(sub, fmt)
    serve.add_parser(sub, fmt)
    small.add_eval_parser(sub, fmt)
    return parser
