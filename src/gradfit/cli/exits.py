"""The command line's exit codes, stated once (``gradfit --help`` and the README show them)."""
from __future__ import annotations

import textwrap

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_PORT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 70, 130
EXIT_PIPE = 141             # the reader of the output went away (128 + SIGPIPE, as cat)
EXIT_CODES = {
    EXIT_OK: "done (for fit: the fit converged)",
    EXIT_FAILED: "the fit did not converge: diverged, failed (lost rank, not smooth) or "
                 "stopped at the step or time limit; the report shows where it stopped",
    EXIT_INPUT: "bad input or usage: data, model, option, an extra the command needs "
                "is not installed, or the output cannot be written (one line on stderr)",
    EXIT_PORT: "serve: cannot listen on the address (the port is in use)",
    EXIT_INTERNAL: "internal error, a bug of gradfit's (GRADFIT_DEBUG=1 shows the traceback)",
    EXIT_INTERRUPTED: "interrupted (Ctrl+C)",
    EXIT_PIPE: "the output's reader closed it early (as in '| head'); nothing is printed",
}
EXIT_EPILOG = "exit codes:\n" + "\n".join(
    textwrap.fill(v, 88, initial_indent=f"  {k:<5}", subsequent_indent=" " * 7)
    for k, v in EXIT_CODES.items())

#: optional packages -> the extra that installs them (``pip install 'gradfit[EXTRA]'``); a
#: command that needs a missing one is a usage error (exit 2), not a bug
EXTRA_OF = {
    "matplotlib": "plots", "PIL": "plots",
    "fastapi": "web", "starlette": "web", "uvicorn": "web", "websockets": "web",
    "multipart": "web", "python_multipart": "web", "plotly": "web", "pydantic": "web",
    "pandas": "tables",
    "dask": "dask", "distributed": "dask", "pyarrow": "dask", "xarray": "dask",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line message for a missing optional package, or None if it is not one."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF.get(top)
    if extra is None:
        return None
    return (f"this command needs {top!r}, which is not installed: "
            f"pip install 'gradfit[{extra}]' (or 'gradfit[all]')")
