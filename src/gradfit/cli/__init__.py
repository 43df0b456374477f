"""The command line: arguments -> config -> core -> report and files.

One package: ``parser`` (the subcommands), ``options`` (run settings as options, from the
table ``gradfit.settings``), ``parsing`` (``a=1,b=2``, bounds, sizes, JSON out), and a
module per command: ``fit`` (``many`` with ``--group``, ``dask`` on Dask), ``pictures``
(``landscape``, ``lr-sweep``, ``--plot``; matplotlib only there), ``serve`` (the web stack
only there), ``small`` (``lesson``, ``eval``).

Exit codes (``EXIT_CODES``, also in ``gradfit --help`` and the README): 0 done (a fit
converged), 1 a fit did not converge (diverged, failed, lost rank, or stopped at the step or
time limit: the report still shows where it was), 2 bad input or usage (one line on
stderr; also when the command needs an extra that is not installed), 3 ``serve`` cannot listen (the port is in use), 70 an internal error (a bug of
gradfit's), 130 interrupted (Ctrl+C), 141 the output's reader went away (``| head``).
"""
from __future__ import annotations

import errno
import os
import sys
import warnings
from typing import Sequence

from ..errors import GradfitError, InputError
from .exits import (EXIT_CODES, EXIT_FAILED, EXIT_INPUT, EXIT_INTERNAL,  # noqa: F401
                    EXIT_INTERRUPTED, EXIT_OK, EXIT_PIPE, EXIT_PORT, missing_extra)
from .fit import cmd_fit  # noqa: F401
from .parser import build_parser
from .parsing import parse_assignments, parse_bounds, parse_size  # noqa: F401
from .small import cmd_eval, cmd_lesson  # noqa: F401


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv``; returns the exit code (``EXIT_CODES``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # numpy's RuntimeWarnings (overflow, invalid value in a landscape of a model undefined
    # somewhere) are no message for the user: what went wrong is said in one line
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    if sys.stdout is None:             # started with stdout closed ('>&-'): print() would
        sys.stdout = _Closed()         # drop the answer without a word
    try:
        return args.func(args)
    except InputError as exc:
        print(f"gradfit: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except GradfitError as exc:
        print(f"gradfit: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ModuleNotFoundError as exc:     # an extra not installed: say which, exit 2
        message = missing_extra(exc)
        if message is None:
            return _internal(exc)
        print(f"gradfit: error: {message}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("gradfit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:            # '| head' stopped reading: not an error of ours
        _quiet_stdout()
        return EXIT_PIPE
    except OSError as exc:             # output that cannot be written: a full disk, closed
        where = f" {exc.filename}" if exc.filename else " the output"
        print(f"gradfit: error: cannot write{where}: {exc.strerror or exc}",
              file=sys.stderr)
        _quiet_stdout()
        return EXIT_INPUT
    except Exception as exc:  # a bug of ours: one clear line, the traceback on request
        return _internal(exc)


class _Closed:
    """Standard output that was closed: writing to it is an error that says so."""

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "standard output is closed", "standard output")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that Python's last flush raises nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):   # no file descriptor (closed): nothing
        pass


def _internal(exc: Exception) -> int:
    if os.environ.get("GRADFIT_DEBUG"):
        raise exc
    print(f"gradfit: internal error: {type(exc).__name__}: {exc} "
          "(set GRADFIT_DEBUG=1 for the traceback)", file=sys.stderr)
    return EXIT_INTERNAL
