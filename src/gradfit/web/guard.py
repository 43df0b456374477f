"""What may reach the playground: which Host, which Origin, how many body bytes.

- **Host**: a loopback name (``127.0.0.1``, ``localhost``, ``[::1]``) with any port, or the
  address given to ``--host``. Anything else (a DNS-rebinding name) gets 403.
- **Origin**: a request that carries one (browsers send it with every POST and WebSocket)
  must come from the page itself (the same scheme, host and port as its Host) or from an
  origin given to ``--allow-origin``. A page on another site can neither upload a CSV (a
  multipart POST needs no CORS preflight) nor drive a run over a WebSocket.
- **Body size**: a JSON body over ``MAX_JSON_BYTES`` (a CSV upload over ``MAX_CSV_BYTES``
  plus its form) gets 413 before a byte of it is parsed: by its Content-Length when it has
  one, else while it streams in. Bodies being received at once hold at most
  ``MAX_BODY_BYTES_IN_FLIGHT``; past that the answer is 429. A body that stops arriving
  for ``BODY_IDLE_SECONDS`` gets 408 (a client that sends 7 bytes of a promised 1000 had
  held its connection for ever).

Refusals are JSON ``{"detail": "<one line>"}``; a refused WebSocket is closed before it is
accepted (the browser sees a 403).
"""
from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

from .limits import MAX_BODY_BYTES_IN_FLIGHT, MAX_CSV_BYTES, MAX_JSON_BYTES

LOOPBACK = ("127.0.0.1", "localhost", "::1")
UPLOADS = ("/api/csv",)
FORM_SLACK = 64 * 1024          # the multipart form's other fields and boundaries


BODY_IDLE_SECONDS = 15.0        # the longest wait for the next piece of a request's body


class TooLarge(Exception):
    pass


class Stalled(Exception):
    pass


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

    def __init__(self, app, hosts=(), origins=(), body_idle: float = BODY_IDLE_SECONDS):
        self.app, self.body_idle = app, body_idle
        self.hosts = set(LOOPBACK) | {h.strip("[]").lower() for h in hosts if h}
        self.hosts -= {"0.0.0.0", "::"}             # an address to listen on, not a name
        self.origins = {o.rstrip("/").lower() for o in origins if o}
        self.in_flight = 0

    def host_ok(self, host: str) -> bool:
        name, port = _split_host(host)
        return name in self.hosts and (port == "" or port.isdigit())

    def origin_ok(self, origin: str | None, host: str, scheme: str) -> bool:
        if origin is None:
            return True                 # not a browser's cross-site request
        origin = origin.rstrip("/").lower()
        if origin in self.origins or "*" in self.origins:
            return True
        parts = urlsplit(origin)
        same = {"http": "http", "https": "https", "ws": "http", "wss": "https"}.get(scheme, scheme)
        return parts.scheme == same and parts.netloc == host.strip().lower()

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
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
        if length.isdigit() and int(length) > cap:
            return await self._too_large(send, cap)
        return await self._counted(scope, receive, send, cap)

    async def _counted(self, scope, receive, send, cap):
        taken, started, whole = 0, False, False

        async def counting_receive():
            nonlocal taken, whole
            if whole:                   # the body is in: the app waits for a disconnect
                return await receive()
            try:                        # a body that stops arriving holds nothing for long
                msg = await asyncio.wait_for(receive(), self.body_idle)
            except asyncio.TimeoutError:
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
            if not started:
                status = 429 if "busy" in str(exc) else 413
                await _json(send, status, str(exc))
        except Stalled as exc:
            if not started:
                await _json(send, 408, str(exc))
        finally:
            self.in_flight -= taken

    async def _too_large(self, send, cap):
        await _json(send, 413, f"the request body is too large: expected at most {cap:,} bytes")

    async def _refuse(self, scope, receive, send, status, detail):
        if scope["type"] == "websocket":        # closed before it is accepted: a 403
            if (await receive())["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            return
        await _json(send, status, detail)


async def _json(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["Guard", "LOOPBACK"]
