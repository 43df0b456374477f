"""The playground's one run protocol, over the WebSocket ``/api/play``: the transport.

The run itself (one ``iter_fit`` kept alive through pauses, steps and changes of settings,
paced by the page's acknowledgements) is ``play.PlaySession``; this module carries its
messages and bounds what a client can make it hold.

Protocol (JSON text messages):

- client -> ``{"type": "start", ...PlayIn}`` first (within ``SEND_TIMEOUT``). Then
  ``{"type": "ack", "seq": k}`` once frame ``k`` is drawn; ``"pause"``, ``"play"``,
  ``"step"`` (one step while paused), ``"cancel"`` (each also as ``{"type": ...}``);
  ``{"type": "set", "lr", "loss", "optimizer"}`` changes settings from the next step on.
- server -> ``{"type": "frame", "seq", "step", ...}`` (the state after ``step`` steps);
  ``{"type": "done", ...}`` at the end, with the result; ``{"type": "error", "detail"}``
  for bad input (the run ends); ``{"type": "warning", "detail"}`` for a message it cannot
  use (binary, not JSON, unknown, a bad or over-priced "set": the run goes on and still
  obeys); ``{"type": "busy", "detail"}`` when ``MAX_RUNS`` runs are streaming already.

Bounds, whatever the client does (DESIGN principle 17):

- at most ``MAX_RUNS`` runs at once (``RunLimiter``);
- each step is priced before the run starts and before a new optimizer is taken
  (``limits.price_run_step``), so that a step is short and "cancel" acts within one;
- the run is at most ``WINDOW + 1`` frames ahead of the last one acknowledged, and an ack
  counts for frames already sent only, so at most ``WINDOW + 1`` frames wait to be sent
  (a client that acknowledges frames it has not read cannot pile them up);
- a page that acknowledges no frame for ``send_timeout`` seconds (playing or paused), or a
  message that cannot be sent within it (a client that does not read), ends the run; so
  does a pause of ``play.PAUSE_SECONDS`` (60 s) without a step (4 paused runs had held
  every run slot for 300 s);
- a run ends ``RUN_TIME_LIMIT`` seconds after it started, playing or paused; the whole
  stream is cut at ``RUN_TIME_LIMIT + send_timeout``;
- a frame holds at most ``limits.MAX_FRAME_NUMBERS`` numbers (priced at the start: the
  curve, the parameters, ``steps_per_frame`` losses), so that building, compressing and
  sending one is short and "cancel" stays prompt;
- the start message is at most ``MAX_JSON_BYTES`` (as a JSON body) and is parsed and
  validated off the event loop; every later message (ack, pause, set ...) is at most
  ``MAX_CONTROL_BYTES``: a larger one gets an ``error`` and the socket is closed with code
  1009 (message too big), before it is parsed.

Messages are encoded to JSON by the thread that puts them (the run's worker), off the event
loop; at most ``MAX_NOTES`` warnings wait to go out.
"""
from __future__ import annotations

import asyncio
import json
import threading

from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import GradfitError
from ..finite_json import dumps
from .limits import MAX_JSON_BYTES, ServerLimits
from .play import PlayIn, PlaySession
from .schemas import MAX_RUNS, RUN_TIME_LIMIT, SetIn, precheck, unique_keys

SEND_TIMEOUT = 10.0           # seconds for the start message, and the default send timeout
MAX_NOTES = 16                # answers to bad messages waiting to go out
MAX_CONTROL_BYTES = 64 * 1024   # a message after the start: an ack, a word, a "set"
TOO_BIG = 1009                # the WebSocket close code "message too big"
WORDS = ("cancel", "pause", "play", "step")


class RunLimiter:
    """At most ``limit`` runs at once, server-wide."""

    def __init__(self, limit: int = MAX_RUNS):
        self.limit, self.active, self._lock = limit, 0, threading.Lock()

    def acquire(self) -> bool:
        with self._lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.active -= 1


def validation_text(exc: ValidationError) -> str:
    """One line from pydantic's errors: where, what."""
    parts = []
    for e in exc.errors()[:3]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        msg = e.get("msg", "invalid").removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


class Outbox:
    """What the run has for the client, in order; the last message (done or error) ends the
    stream. Frames are bounded by the run's flow control, notes by ``MAX_NOTES``."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.lock, self.ready = loop, threading.Lock(), asyncio.Event()
        self.queue: list[tuple[str, int | None]] = []     # (text, frame seq or None)
        self.notes = 0
        self.last: str | None = None
        self.close_code = 1000                          # how the stream ends

    def put(self, msg: dict) -> None:                # from any thread
        kind, text = msg.get("type"), dumps(msg)
        with self.lock:
            if kind in ("done", "error"):
                if self.last is None:
                    self.last = text
            elif kind != "warning":
                self.queue.append((text, msg.get("seq")))
            elif self.notes < MAX_NOTES:
                self.notes += 1
                self.queue.append((text, None))
        try:
            self.loop.call_soon_threadsafe(self.ready.set)
        except RuntimeError:                          # the loop is gone: the server stops
            pass

    def take(self) -> tuple[list[tuple[str, int | None]], bool]:
        """The messages to send (with their frame numbers), and whether the last one ends
        the run."""
        with self.lock:
            out = self.queue + ([(self.last, None)] if self.last is not None else [])
            ended = self.last is not None
            self.queue, self.last, self.notes = [], None, 0
            self.ready.clear()
            return out, ended


async def _send(ws: WebSocket, msg: dict | str, timeout: float = SEND_TIMEOUT) -> None:
    """Send one message, or give up after ``timeout`` seconds (a client that does not read)."""
    await asyncio.wait_for(ws.send_text(msg if isinstance(msg, str) else dumps(msg)), timeout)


class _Refused(Exception):
    """A start message that cannot be used: a one-line ``detail`` and the close code."""

    def __init__(self, detail: str, code: int):
        super().__init__(detail)
        self.detail, self.code = detail, code


async def _first_message(ws: WebSocket) -> str:
    """The start message's text, or ``_Refused``."""
    try:
        msg = await asyncio.wait_for(ws.receive(), SEND_TIMEOUT)
    except TimeoutError:
        raise _Refused(f"no start message within {SEND_TIMEOUT:g} s", 1003) from None
    if msg["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(msg.get("code", 1000))
    if msg.get("text") is None:
        raise _Refused("binary frames are not understood: expected a JSON text "
                       "{\"type\": \"start\", ...}", 1003)
    if len(msg["text"]) > MAX_JSON_BYTES:
        raise _Refused(f"the start message is too large: expected at most "
                       f"{MAX_JSON_BYTES:,} bytes", TOO_BIG)
    return msg["text"]


def _start_request(text: str) -> PlayIn:
    """The start message parsed and validated (in a worker thread: it may be megabytes)."""
    try:
        precheck(text)
    except GradfitError as exc:
        raise _Refused(str(exc), TOO_BIG) from None
    try:
        first = json.loads(text, object_pairs_hook=unique_keys)     # a key twice: refused
    except GradfitError as exc:
        raise _Refused(str(exc), 1008) from None
    except (json.JSONDecodeError, RecursionError):
        raise _Refused("the message is not JSON: expected {\"type\": \"start\", ...}",
                       1003) from None
    except ValueError:                        # an integer of more than 4,300 digits
        raise _Refused("a number in the message is too long to read: expected numbers of "
                       "at most 4,300 digits", 1008) from None
    if not isinstance(first, dict) or first.get("type", "start") != "start":
        raise _Refused("expected a JSON object {\"type\": \"start\", ...} first", 1003)
    try:
        return PlayIn.model_validate({k: v for k, v in first.items() if k != "type"})
    except ValidationError as exc:
        raise _Refused(validation_text(exc), 1008) from None


async def serve_run(ws: WebSocket, limiter: RunLimiter, limits: ServerLimits | None = None
                    ) -> None:
    """One run, from its start message to its end (``play.PlaySession`` runs it)."""
    limits = limits or ServerLimits()
    await ws.accept()
    try:
        req = await asyncio.to_thread(_start_request, await _first_message(ws))
    except WebSocketDisconnect:
        return
    except _Refused as exc:
        await _close(ws, {"type": "error", "detail": exc.detail}, exc.code)
        return
    if not limiter.acquire():
        await _close(ws, {"type": "busy", "detail": f"the server is busy: {limiter.limit} runs "
                          "are streaming already; try again in a moment"}, 1013)
        return
    try:
        outbox = Outbox(asyncio.get_running_loop())
        try:        # pricing, the data and the model's compilation: off the event loop
            session = await asyncio.to_thread(PlaySession, req, outbox.put, limits)
        except GradfitError as exc:
            await _close(ws, {"type": "error", "detail": str(exc)}, 1008)
            return
        await _stream(ws, session, outbox, limits)
    finally:
        limiter.release()


async def _close(ws: WebSocket, msg: dict, code: int) -> None:
    try:
        await _send(ws, msg)
        reason = msg["detail"].encode()[:120].decode("utf-8", "ignore")   # 123 bytes at most
        await asyncio.wait_for(ws.close(code, reason), SEND_TIMEOUT)
    except (WebSocketDisconnect, RuntimeError, TimeoutError, OSError):
        pass


async def _stream(ws: WebSocket, session, outbox: Outbox, limits: ServerLimits) -> None:
    worker = threading.Thread(target=session.work, name="gradfit-run", daemon=True)
    receiver = asyncio.create_task(_receive(ws, session, outbox))
    worker.start()
    try:
        async with asyncio.timeout(RUN_TIME_LIMIT + limits.send_timeout):   # whatever the client does
            ended = False
            while not ended:
                await outbox.ready.wait()
                texts, ended = outbox.take()
                for text, seq in texts:
                    await _send(ws, text, limits.send_timeout)
                    if seq is not None:        # only a frame sent can be acknowledged
                        session.control("sent", {"seq": seq})
        await asyncio.wait_for(ws.close(outbox.close_code), limits.send_timeout)
    except (WebSocketDisconnect, RuntimeError, TimeoutError, OSError):
        pass
    finally:
        session.control("cancel")
        receiver.cancel()
        while worker.is_alive():              # it stops within a step; then the slot is free
            await asyncio.sleep(0.005)


async def _receive(ws: WebSocket, session, outbox: Outbox) -> None:
    """Every message gets an effect or an answer; none stops the run's controls."""
    def complain(detail: str) -> None:
        outbox.put({"type": "warning", "detail": detail})
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            text = msg.get("text")
            size = len(text if text is not None else msg.get("bytes") or b"")
            if size > MAX_CONTROL_BYTES:         # not parsed: the run ends, the socket closes
                outbox.close_code = TOO_BIG
                outbox.put({"type": "error", "detail": f"a message of {size:,} bytes is too "
                            f"large: expected at most {MAX_CONTROL_BYTES:,} bytes after the "
                            "start (an ack, pause, play, step, cancel or set); the run ends"})
                break
            if text is None:
                complain("binary frames are not understood: expected JSON text such as "
                         '{"type": "ack", "seq": 3} or "pause"')
                continue
            if text.strip().strip('"') in WORDS:
                session.control(text.strip().strip('"'))
                continue
            try:
                data = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                complain('the message is not JSON: expected a message such as '
                         '{"type": "ack", "seq": 3} or "pause"')
                continue
            kind = data.get("type") if isinstance(data, dict) else None
            seq = data.get("seq") if kind == "ack" else None
            if kind == "ack" and not (isinstance(seq, int) and not isinstance(seq, bool)
                                      and seq >= 0):
                complain("bad ack: expected a frame number (a whole number >= 0) as its seq, "
                         f"got {repr(seq)[:40]}")
            elif kind in WORDS or kind == "ack":
                session.control(kind, data)
            elif kind == "set":
                try:
                    session.change(SetIn.model_validate(data))
                except (ValidationError, GradfitError) as exc:
                    complain(validation_text(exc) if isinstance(exc, ValidationError) else str(exc))
            else:
                complain("unknown message: expected ack, pause, play, step, cancel or set, got "
                         + (repr(kind)[:40] if kind else type(data).__name__))
    except (WebSocketDisconnect, RuntimeError, asyncio.CancelledError):
        pass
    session.control("cancel")


__all__ = ["RunLimiter", "serve_run", "validation_text", "Outbox", "SEND_TIMEOUT",
           "MAX_CONTROL_BYTES"]
