"""uvicorn's HTTP/1.1 protocol (h11) with a deadline on a request's headers, room kept for
new clients, and a bounded drain of a refused body.

- **Head deadline**: uvicorn closes a keep-alive connection that stays idle after a
  response, but waits for ever on one that never completes a request's head: a connection
  that sends nothing, or half a header and then a line every few seconds. Some 20,000 of
  those (the process's file limit) made the server unreachable. Here every request's head
  (the first on a connection, and each next one on a kept-alive connection) must be
  complete within ``HEADER_SECONDS`` of the connection, or of the last response, else the
  connection is closed; within ``CROWDED_HEADER_SECONDS`` while more than
  ``CROWDED_CONNECTIONS`` connections wait for a head (a browser sends its head at once).
- **Room for new clients**: past ``MAX_CONNECTIONS`` connections, a new one closes the
  connection that has waited longest for a request head (idle: no request being answered),
  as nginx reuses idle keep-alive connections. uvicorn's own cap (``limit_concurrency``)
  counted idle connections too and answered every request past it with a plain-text 503:
  2,000 sockets that sent nothing, reopened as they were closed, kept every other client
  out. A request is never cut short here; requests being answered are capped by
  ``guard.Guard`` (503 JSON with ``Retry-After``). The server listens on loopback by
  default, where every client has the same address, so a per-address cap would not tell
  an attacker from the page; evicting the longest-idle connection does: to push out a new
  client's connection, an attacker must open ``MAX_CONNECTIONS`` others in the moment
  between its connect and its head.
- **Drain**: a response sent before its request's body was read (413, 415, 429) leaves
  the connection open while the rest of the body arrives and is thrown away (uvicorn
  discards it once the response is complete), at most ``DRAIN_BYTES`` and within the head
  deadline; then the connection is closed. Closing a socket with unread bytes sends a TCP
  reset, which throws away the answer the client has not read yet: a 413 for a body sent
  without Content-Length had reached the client as "connection reset", with no message.

A body that stops arriving is ``guard``'s (408); an upgraded WebSocket is the WebSocket's own.
"""
from __future__ import annotations

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .limits import DRAIN_BYTES, MAX_CONNECTIONS

HEADER_SECONDS = 10.0           # the longest wait for a request's head, line and headers
CROWDED_CONNECTIONS = 256       # connections waiting for a head past which ...
CROWDED_HEADER_SECONDS = 2.0    # ... a new wait for a head is this short


class HeaderDeadline(H11Protocol):
    """``H11Protocol`` that closes a connection whose request head is late, closes the
    longest-idle connection when there are too many, and drains a refused body."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._upgraded = False
        self._drained = 0
        # connections waiting for a request head, the longest-waiting first (a dict keeps
        # the order of insertion); shared by this server's connections
        self._waiting = self.server_state.__dict__.setdefault("gradfit_waiting", {})
        if len(self.connections) > MAX_CONNECTIONS:
            self._evict()
        self._arm()

    def _evict(self) -> None:
        """Close the connection that has waited longest for a request head, if any."""
        for other in self._waiting:
            if other is not self:
                del self._waiting[other]
                other.transport.close()
                return

    def _arm(self) -> None:
        handle = getattr(self, "_head_timer", None)
        if handle is not None:
            handle.cancel()
        self._waiting.pop(self, None)
        crowded = len(self._waiting) >= CROWDED_CONNECTIONS
        self._waiting[self] = None
        self._head_timer = self.loop.call_later(
            CROWDED_HEADER_SECONDS if crowded else HEADER_SECONDS, self._late, self.cycle)

    def _late(self, cycle) -> None:
        """Close if no request head came since the timer was armed (the cycle is the same
        one) and none is being answered (a long fit's response is not cut short)."""
        self._head_timer = None
        waiting = self.cycle is None or self.cycle.response_complete
        if self._upgraded or self.cycle is not cycle or not waiting or \
                self.transport.is_closing():
            return
        self._waiting.pop(self, None)
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.response_complete and \
                self.conn.their_state is h11.SEND_BODY:      # a refused body's rest
            self._drained += len(data)
            if self._drained > DRAIN_BYTES:
                self._waiting.pop(self, None)
                self.transport.close()
                return
        super().data_received(data)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:            # a request's head came: no longer idle
            self._waiting.pop(self, None)

    def handle_websocket_upgrade(self, event) -> None:
        self._upgraded = True
        self._waiting.pop(self, None)
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._drained = 0
        # the next request on this connection has its own deadline (unless a pipelined
        # one is being answered already)
        if not self.transport.is_closing() and self.cycle.response_complete:
            self._arm()

    def connection_lost(self, exc) -> None:
        handle = getattr(self, "_head_timer", None)
        if handle is not None:
            handle.cancel()
        waiting = getattr(self, "_waiting", None)
        if waiting is not None:
            waiting.pop(self, None)
        super().connection_lost(exc)
