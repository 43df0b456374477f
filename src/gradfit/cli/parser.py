"""The whole command line's parser: one subcommand per module, options from the table."""
from __future__ import annotations

import argparse

from .. import __version__
from ..errors import clip
from . import fit, pictures, serve, small
from .exits import EXIT_EPILOG


class Parser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line on stderr (exit 2), as every other
    bad input: the command, the message and where to read more."""

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
