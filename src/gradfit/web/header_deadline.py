"""uvicorn's HTTP/1.1 protocol (h11) with a deadline on a request's headers.

uvicorn closes a keep-alive connection that stays idle after a response, but waits for ever
on one that never completes a request's head: a connection that sends nothing, or half a
header and then a line every few seconds. Some 20,000 of those (the process's file limit)
made the server unreachable. Here every request's head (the first on a connection, and
each next one on a kept-alive connection) must be complete within ``HEADER_SECONDS`` of
the connection, or of the last response, else the connection is closed. A body that stops
arriving is ``guard``'s (408); an upgraded WebSocket is the WebSocket's own.
"""
from __future__ import annotations

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_SECONDS = 10.0       # the longest wait for a request's head, line and headers


class HeaderDeadline(H11Protocol):
    """``H11Protocol`` that closes a connection whose request head is late."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._upgraded = False
        self._arm()

    def _arm(self) -> None:
        handle = getattr(self, "_head_timer", None)
        if handle is not None:
            handle.cancel()
        self._head_timer = self.loop.call_later(HEADER_SECONDS, self._late, self.cycle)

    def _late(self, cycle) -> None:
        """Close if no request head came since the timer was armed (the cycle is the same
        one) and none is being answered (a long fit's response is not cut short)."""
        self._head_timer = None
        waiting = self.cycle is None or self.cycle.response_complete
        if self._upgraded or self.cycle is not cycle or not waiting or \
                self.transport.is_closing():
            return
        self.transport.close()

    def handle_websocket_upgrade(self, event) -> None:
        self._upgraded = True
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()             # the next request on this connection has its own deadline

    def connection_lost(self, exc) -> None:
        handle = getattr(self, "_head_timer", None)
        if handle is not None:
            handle.cancel()
        super().connection_lost(exc)
