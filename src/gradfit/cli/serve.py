"""``gradfit serve``: the playground in the browser (the web stack is imported only here)."""
from __future__ import annotations

import sys

from ..datasets import DATASETS
from ..errors import InputError
from .exits import EXIT_OK, EXIT_PORT
from .parsing import parse_size

SERVE_EXAMPLES = """examples:
  gradfit serve                     # then open http://127.0.0.1:8000/
  gradfit serve --port 8080 --open  # another port, and open a browser
  gradfit serve --data outliers     # start on another built-in dataset
"""


def add_parser(sub, fmt) -> None:
    servep = sub.add_parser("serve", help="the playground in the browser: fit by hand, watch "
                            "gradient descent", epilog=SERVE_EXAMPLES, formatter_class=fmt)
    servep.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only)")
    servep.add_argument("--port", type=int, default=8000, help="default 8000")
    servep.add_argument("--open", action="store_true", help="open the page in a browser")
    servep.add_argument("--data", default="lesson", choices=list(DATASETS),
                        help="the built-in dataset the page opens with (default: lesson)")
    servep.add_argument("--max-memory", default="1G", metavar="SIZE",
                        help="the server's memory cap, e.g. 1G or 1500M (default 1G): every "
                        "request is priced against it")
    servep.add_argument("--max-seconds", type=float, default=10.0, metavar="S",
                        help="seconds a request may compute before it is cancelled (default 10)")
    servep.add_argument("--allow-origin", action="append", default=[], metavar="URL",
                        help="a page origin allowed besides the server's own, e.g. "
                        "http://localhost:3000 (repeatable)")
    servep.set_defaults(func=cmd_serve)


def check_origin(origin: str) -> None:
    """An --allow-origin is what a browser sends as Origin: scheme://host[:port], no path
    (or ``*``, any page). Anything else would never match, and allow nothing, unsaid."""
    from urllib.parse import urlsplit
    if origin == "*":
        return
    expected = "an origin such as http://localhost:3000 (scheme, host, port; no path), or *"
    try:
        parts = urlsplit(origin)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        raise InputError("bad --allow-origin", expected=expected, given=origin) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or \
            parts.path not in ("", "/") or parts.query or parts.fragment or \
            parts.username or parts.password:
        raise InputError("bad --allow-origin", expected=expected, given=origin)


def check_host(host: str) -> None:
    """Refuse an empty --host (it listened on every interface, printing 'http://:8000/');
    warn on stderr for one other than this machine's loopback: the playground then serves
    whoever can reach this machine."""
    import ipaddress
    if not host.strip():
        raise InputError("bad --host: an empty address listens on every network interface",
                         expected="an address such as 127.0.0.1 (this machine only), or "
                         "0.0.0.0 to serve other machines on purpose", given=host)
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host.lower() in ("localhost", "localhost.")
    if not loopback:
        every = " (every network interface)" if host in ("0.0.0.0", "::") else ""
        print(f"gradfit: warning: --host {host}{every} serves the playground to every machine "
              "that can reach this one, not only to this machine (the default 127.0.0.1)",
              file=sys.stderr)


def cmd_serve(args) -> int:
    from ..web import serve          # here, so that the core never loads the web stack
    if not 0 < args.port < 65536:
        raise InputError("bad --port", expected="a port number 1..65535", given=args.port)
    if not 0 < args.max_seconds <= 3600:       # NaN too: before the web stack loads
        raise InputError("bad --max-seconds", expected="seconds in (0, 3600]",
                         given=args.max_seconds)
    for origin in args.allow_origin:
        check_origin(origin)
    check_host(args.host)
    try:
        serve(host=args.host, port=args.port, open_browser=args.open, data=args.data,
              max_memory=parse_size(args.max_memory), max_seconds=args.max_seconds,
              origins=tuple(args.allow_origin))
    except OSError as exc:     # raised by the bind, before any "open http://..." line
        import errno
        advice = (f"try another port, e.g. --port {8080 if args.port != 8080 else 8081}"
                  if exc.errno in (errno.EADDRINUSE, errno.EACCES) else
                  "expected --host to be an address of this machine, such as 127.0.0.1")
        print(f"gradfit: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
              f"; {advice}",
              file=sys.stderr)
        return EXIT_PORT
    return EXIT_OK
