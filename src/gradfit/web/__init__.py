"""The web playground: fit by hand, then watch gradient descent fit, in the browser.

``serve()`` runs it with uvicorn; ``create_app()`` (in ``app.py``) builds the FastAPI app.
Needs the web extras: ``pip install fastapi uvicorn plotly``.
"""
from __future__ import annotations

DATA_DEFAULT = "lesson"


def create_app(*args, **kwargs):
    from .app import create_app as make
    return make(*args, **kwargs)


def serve(host: str = "127.0.0.1", port: int = 8000, open_browser: bool = False,
          data: str = DATA_DEFAULT, max_memory: int | None = None,
          max_seconds: float | None = None, origins: tuple[str, ...] = ()) -> None:
    """Serve the playground at ``http://host:port/`` (printed) until interrupted.

    ``data``: the built-in dataset the page opens with (``gradfit.web.datasets.DATASETS``).
    ``max_memory`` (bytes, default 1 GiB) and ``max_seconds`` (default 10) bound every
    request (``limits.ServerLimits``); ``host`` is accepted as a Host besides loopback
    (``0.0.0.0`` or ``::``: IP literals and this machine's names, so that other machines
    can reach it), and ``origins`` as page origins besides the server's own, with CORS
    headers (``guard.Guard``). Past ``MAX_CONNECTIONS`` connections a new one closes the one
    idle longest (``header_deadline``; uvicorn's ``limit_concurrency`` is not used: it counted
    idle sockets and answered everyone a plain-text 503); at most ``MAX_REQUESTS`` requests
    are answered at once (past that 503 JSON with ``Retry-After``); a WebSocket message is at
    most ``MAX_JSON_BYTES``.
    """
    import threading
    import webbrowser

    import uvicorn

    from .datasets import DATASETS
    from .limits import MAX_JSON_BYTES, ServerLimits, prepare_process
    from ..errors import InputError

    if data not in DATASETS:
        raise InputError(f"unknown dataset {data!r}", expected="one of " + ", ".join(DATASETS))
    limits = ServerLimits(**{k: v for k, v in (("max_memory", max_memory),
                                               ("max_seconds", max_seconds)) if v is not None})
    prepare_process()
    sock = listen(host, port)          # an OSError here, before the address is announced
    every = host in ("0.0.0.0", "::")
    shown = "127.0.0.1" if every else f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + ("" if data == DATA_DEFAULT else f"#data={data}")
    print(f"gradfit playground: open {url}  (Ctrl+C stops it)"
          + ("; other machines: this machine's address or name" if every else ""), flush=True)
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    app = create_app(limits=limits, hosts=(host,), origins=origins)
    from .header_deadline import HeaderDeadline
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           http=HeaderDeadline, ws_max_size=MAX_JSON_BYTES))
    server.run(sockets=[sock])


def listen(host: str, port: int):
    """A socket bound to ``host:port`` and listening (as uvicorn binds: SO_REUSEADDR);
    ``OSError`` (errno EADDRINUSE when the port is taken) if it cannot be."""
    import socket
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


__all__ = ["create_app", "serve"]
