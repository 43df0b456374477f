"""What may reach the playground: which Host, which Origin, how many body bytes, how fast.

- **Host**: a loopback name (``127.0.0.1``, ``localhost``, ``[::1]``) with any port, or the
  address given to ``--host``. Listening on every interface (``--host 0.0.0.0`` or ``::``)
  also admits Hosts that are IP literals (``192.0.2.2:8000``, ``[fe80::1]``: no DNS name,
  so no DNS rebinding) and this machine's own hostname and FQDN. Anything else (a
  DNS-rebinding name) gets 403; no Host at all gets 400.
- **Origin**: a request that carries one (browsers send it with every POST and WebSocket)
  must come from the page itself (the same scheme, host and port as its Host) or from an
  origin given to ``--allow-origin``. A page on another site can neither upload a CSV (a
  multipart POST needs no CORS preflight) nor drive a run over a WebSocket. (The CORS
  headers that let an allowed origin's page read the answers are Starlette's
  ``CORSMiddleware``, inside this guard; the guard's own refusals carry them too.)
- **One of each**: two Host, Origin, Content-Type or Content-Length headers get 400 (with
  two, a check could read one and the app the other).
- **Body size**: a JSON body over ``MAX_JSON_BYTES`` (a CSV upload over ``MAX_CSV_BYTES``
  plus its form) gets 413 before a byte of it is parsed: by its Content-Length when it has
  one, else while it streams in. Bodies being received at once hold at most
  ``MAX_BODY_BYTES_IN_FLIGHT``; past that the answer is 429.
- **Body time**: a body that stops arriving for ``BODY_IDLE_SECONDS`` gets 408 (a client
  that sends 7 bytes of a promised 1000 had held its connection for ever), and so does one
  that trickles: after ``BODY_GRACE_SECONDS`` a body must keep up ``BODY_MIN_RATE`` bytes a
  second on average, and be whole within ``BODY_MAX_SECONDS`` (a byte every few seconds
  had held a connection, and its file, for ever: some thousands of them used up the
  server's files). A 408 closes the connection; a 413 or 429 sent before the body is read
  leaves it open while the rest of the body is thrown away (``header_deadline``: a bounded
  drain; closing a socket with unread bytes resets it, and the client lost the answer).
- **Requests at once**: at most ``MAX_REQUESTS`` HTTP requests are answered at once; past
  that the answer is 503 with ``Retry-After`` (WebSocket runs have their own cap).

Refusals are JSON ``{"detail": "<one line>"}``; a refused WebSocket is closed before it is
accepted (the browser sees a 403). A client that goes away mid-body is no error: nothing is
answered or logged.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect

from .limits import (DRAIN_BYTES, MAX_BODY_BYTES_IN_FLIGHT, MAX_CSV_BYTES, MAX_JSON_BYTES,
                     MAX_REQUESTS)

LOOPBACK = ("127.0.0.1", "localhost", "::1")
UPLOADS = ("/api/csv",)
FORM_SLACK = 64 * 1024          # the multipart form's other fields and boundaries


BODY_IDLE_SECONDS = 15.0        # the longest wait for the next piece of a request's body
BODY_GRACE_SECONDS = 10.0       # a body's first seconds, at any rate
BODY_MIN_RATE = 32 * 1024       # bytes a second a body keeps up on average, after the grace
BODY_MAX_SECONDS = 120.0        # a whole body, at any rate (a 20 MB upload: 170 KB/s)
ANY_ADDRESS = ("0.0.0.0", "::")  # --host values that listen on every interface
SINGLE = (b"host", b"origin", b"content-type", b"content-length")   # at most one of each
CLOSE = [(b"connection", b"close")]
RETRY = [(b"retry-after", b"1")]


class TooLarge(Exception):
    pass


class Stalled(Exception):
    pass


class Slow(Stalled):
    pass


def ip_literal(name: str) -> bool:
    """Whether a Host's name is an IP address (not a DNS name), other than 0.0.0.0 or ::.

    >>> [ip_literal(h) for h in ("192.0.2.2", "fe80::1", "0.0.0.0", "127.1", "evil.com")]
    [True, True, False, False, False]
    """
    try:
        return not ipaddress.ip_address(name).is_unspecified
    except ValueError:
        return False


def own_names() -> set[str]:
    """This machine's hostname and fully qualified name, as a Host would carry them."""
    names = set()
    for get in (socket.gethostname, socket.getfqdn):
        try:
            names.add(get().strip().lower().rstrip("."))
        except OSError:
            pass
    return names - {""}


def _split_host(value: str) -> tuple[str, str]:
    """``"[::1]:8000"`` -> ``("::1", "8000")``; ``"localhost"`` -> ``("localhost", "")``."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, rest.removeprefix(":")
    host, _, port = value.partition(":")
    return host, port


class Guard:
    """ASGI middleware: Host and Origin checks and body caps, before the app sees a request."""

    def __init__(self, app, hosts=(), origins=(), body_idle: float = BODY_IDLE_SECONDS,
                 body_grace: float | None = None, body_rate: float | None = None,
                 body_seconds: float | None = None):
        self.app, self.body_idle = app, body_idle
        # read at start: a test may set the module's values
        self.body_grace = BODY_GRACE_SECONDS if body_grace is None else body_grace
        self.body_rate = BODY_MIN_RATE if body_rate is None else body_rate
        self.body_seconds = BODY_MAX_SECONDS if body_seconds is None else body_seconds
        self.hosts = set(LOOPBACK) | {h.strip("[]").lower() for h in hosts if h}
        self.any_address = bool(self.hosts & set(ANY_ADDRESS))
        self.hosts -= set(ANY_ADDRESS)              # an address to listen on, not a name
        if self.any_address:                        # reached from other machines
            self.hosts |= own_names()
        self.origins = {normal_origin(o) for o in origins if o}
        self.in_flight = 0
        self.requests = 0               # HTTP requests being answered

    def host_ok(self, host: str) -> bool:
        name, port = _split_host(host)
        known = name in self.hosts or (self.any_address and ip_literal(name))
        return known and (port == "" or port.isdigit())

    def cors(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        """The CORS headers of the guard's own answers to a page of an allowed origin (as
        ``CORSMiddleware`` sends them on the app's), so that its page can read them."""
        if origin is None or not self.origins:
            return []
        if "*" in self.origins:
            return [(b"access-control-allow-origin", b"*")]
        if normal_origin(origin) in self.origins:
            return [(b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"vary", b"Origin")]
        return []

    def origin_ok(self, origin: str | None, host: str, scheme: str) -> bool:
        if origin is None:
            return True                 # not a browser's cross-site request
        origin = normal_origin(origin)
        if origin in self.origins or "*" in self.origins:
            return True
        parts = urlsplit(origin)
        same = {"http": "http", "https": "https", "ws": "http", "wss": "https"}.get(scheme, scheme)
        return parts.scheme == same and parts.netloc == host.strip().lower()

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        names = [k for k, _ in scope["headers"]]
        twice = next((k for k in SINGLE if names.count(k) > 1), None)
        if twice is not None:
            what = twice.decode().title()
            return await self._refuse(scope, receive, send, 400, f"the request has more than "
                                      f"one {what} header: expected one")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not host:
            return await self._refuse(scope, receive, send, 400, "the request has no Host "
                                      "header: expected one (HTTP/1.1)")
        if not self.host_ok(host):
            return await self._refuse(scope, receive, send, 403, "this server answers to its own "
                                      "address only: expected a loopback Host (or --host)")
        if not self.origin_ok(headers.get("origin"), host, scope.get("scheme", "http")):
            return await self._refuse(scope, receive, send, 403, "cross-origin requests are refused: "
                                      "expected the page's own origin (or --allow-origin)")
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)
        cap = MAX_CSV_BYTES + FORM_SLACK if scope["path"] in UPLOADS else MAX_JSON_BYTES
        length = headers.get("content-length", "")
        cors = self.cors(headers.get("origin"))
        unread = _after_refusal(headers)
        if self.requests >= MAX_REQUESTS:
            return await _json(send, 503, f"the server is busy: {MAX_REQUESTS:,} requests are "
                               "being answered; try again in a moment", cors + RETRY + unread)
        if length.isdigit() and int(length) > cap:
            return await _json(send, 413, f"the request body is too large: expected at most "
                               f"{cap:,} bytes", cors + unread)
        self.requests += 1
        try:
            return await self._counted(scope, receive, send, cap, cors)
        finally:
            self.requests -= 1

    def _slow(self) -> Slow:
        return Slow(f"the request body arrived too slowly: expected at least "
                    f"{self.body_rate / 1024:g} KB a second after the first "
                    f"{self.body_grace:g} s, and all of it within {self.body_seconds:g} s")

    async def _counted(self, scope, receive, send, cap, cors):
        taken, started, whole = 0, False, False
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def counting_receive():
            nonlocal taken, whole
            if whole:                   # the body is in: the app waits for a disconnect
                return await receive()
            # the time the bytes so far have earned: a grace, then BODY_MIN_RATE
            earned = min(self.body_grace + taken / self.body_rate, self.body_seconds)
            left = t0 + earned - loop.time()
            if left <= 0:
                raise self._slow()
            try:                        # a body that stops arriving holds nothing for long
                msg = await asyncio.wait_for(receive(), min(self.body_idle, left))
            except asyncio.TimeoutError:
                if left <= self.body_idle:
                    raise self._slow() from None
                raise Stalled(f"the request body stopped arriving: expected the next part "
                              f"within {self.body_idle:g} s") from None
            whole = msg["type"] != "http.request" or not msg.get("more_body", False)
            if msg["type"] == "http.request":
                size = len(msg.get("body", b""))
                taken += size
                self.in_flight += size
                if taken > cap:
                    raise TooLarge(f"the request body is too large: expected at most {cap:,} "
                                   "bytes")
                if self.in_flight > MAX_BODY_BYTES_IN_FLIGHT:
                    raise TooLarge("the server is busy receiving other requests; try again "
                                   "in a moment")
            return msg

        async def tracking_send(msg):
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except TooLarge as exc:
            if not started:             # the rest of the body is drained (header_deadline)
                busy = "busy" in str(exc)
                await _json(send, 429 if busy else 413, str(exc), cors + RETRY * busy)
        except Stalled as exc:          # Slow too
            if not started:
                await _json(send, 408, str(exc), cors + CLOSE)
        except ClientDisconnect:        # the client went away mid-body: nobody to answer
            pass
        finally:
            self.in_flight -= taken

    async def _refuse(self, scope, receive, send, status, detail):
        if scope["type"] == "websocket":        # closed before it is accepted: a 403
            if (await receive())["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            return
        await _json(send, status, detail, CLOSE)     # its body, if any, is not read


def _after_refusal(headers: dict) -> list:
    """The headers of a refusal sent before the body is read: the connection stays open
    while the rest of the body is thrown away (``header_deadline``: a bounded drain), but
    is closed where no drain helps: no body, a client that waits to send it (``Expect:
    100-continue``), or more of it than a drain reads."""
    length = headers.get("content-length", "")
    body = "transfer-encoding" in headers or length.isdigit() and 0 < int(length) <= DRAIN_BYTES
    return [] if body and "expect" not in headers else CLOSE


def normal_origin(origin: str) -> str:
    """An origin as compared: lower case, no trailing slash."""
    return origin.strip().rstrip("/").lower()


async def _json(send, status: int, detail: str, headers=()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["Guard", "LOOPBACK", "ip_literal", "own_names", "normal_origin"]
