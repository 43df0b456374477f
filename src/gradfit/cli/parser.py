"""The whole command line's parser: one subcommand per module, options from the table."""
from __future__ import annotations

import argparse
import re

from .. import __version__
from ..errors import clip
from . import fit, pictures, serve, small
from .exits import EXIT_EPILOG


# values that start with a minus: numbers ('-1e-3', '-1,0.1', '-3:3') and expressions
# ('-a*x+b', '-x^2', '-exp(-k*t)': an operator or bracket, which no option name holds)
NEGATIVE_NUMBERS = re.compile(r"^-\.?\d[\d.eE+\-,:]*$|^-[^-\s][^\s]*[*/+^()]")


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
