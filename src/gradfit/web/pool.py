"""A bounded pool of worker threads with a deadline on every job: nothing blocks the event loop.

Two lanes: a *light* one for small requests (a slider's ``/api/eval``), so that they never
wait behind a landscape, and a *heavy* one for the rest. At most ``MAX_WAITING`` jobs wait
for a lane; past that the answer is 429 ("busy").

Threads cannot be killed, so heavy work runs in chunks that call ``checkpoint()``: past the
job's deadline (``--max-seconds``) or once the job is cancelled it raises ``Cancelled``, the
thread is free again within a chunk, and the client has already been told (422, "cancelled
after 10 s"). A process pool would kill work outright, but each process holds its own copy
of torch (~250 MB), which the memory cap (1 GB) cannot afford; the cost model keeps each
chunk short instead.
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from ..errors import GradfitError

MAX_WAITING = 64
HEAVY_NICE = 10
_local = threading.local()


class Cancelled(GradfitError):
    """A job stopped at a checkpoint: past its deadline, or cancelled."""


class Busy(GradfitError):
    """No room: too many jobs are waiting, or one waited past its deadline."""


class Deadline:
    """When a job must stop (``time.monotonic()`` seconds), and a flag to stop it sooner."""

    def __init__(self, seconds: float):
        self.seconds, self.end = seconds, time.monotonic() + seconds
        self.cancelled, self.started = threading.Event(), False

    def expired(self) -> bool:
        return self.cancelled.is_set() or time.monotonic() > self.end

    def check(self) -> None:
        if self.expired():
            raise Cancelled(f"cancelled after {self.seconds:g} s (the time limit, "
                            "--max-seconds): ask for less work")


def checkpoint() -> None:
    """Raise ``Cancelled`` when the calling job is past its deadline (no-op outside a job)."""
    dl = getattr(_local, "deadline", None)
    if dl is not None:
        dl.check()


def current_deadline() -> Deadline | None:
    return getattr(_local, "deadline", None)


def _call(deadline: Deadline, fn: Callable, args: tuple):
    if deadline.expired():                   # waited too long: do nothing
        return None
    deadline.started = True
    _local.deadline = deadline
    try:
        return fn(*args)
    finally:
        _local.deadline = None


class WorkerPool:
    """``await pool.run(fn, *args, light=...)``: ``fn(*args)`` in a worker thread, with a
    deadline; raises ``Cancelled`` past it, ``Busy`` when the queue is full."""

    def __init__(self, seconds: float, heavy: int = 2, light: int = 2):
        self.seconds = seconds
        self.heavy = ThreadPoolExecutor(heavy, thread_name_prefix="gradfit-heavy",
                                        initializer=_lower_priority)
        self.light = ThreadPoolExecutor(light, thread_name_prefix="gradfit-light")
        self.waiting = 0

    async def run(self, fn: Callable, *args, light: bool = False, seconds: float | None = None):
        if self.waiting >= MAX_WAITING:
            raise Busy(f"the server is busy: {MAX_WAITING} requests are waiting; try again "
                       "in a moment")
        deadline = Deadline(self.seconds if seconds is None else seconds)
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self.light if light else self.heavy, _call, deadline, fn, args)
        self.waiting += 1
        try:
            return await asyncio.wait_for(asyncio.shield(fut), deadline.seconds)
        except TimeoutError:
            deadline.cancelled.set()
            fut.add_done_callback(_quiet)
            if not deadline.started:
                raise Busy(f"the server is busy: the request waited {deadline.seconds:g} s "
                           "for a worker; try again in a moment") from None
            raise Cancelled(f"cancelled after {deadline.seconds:g} s (the time limit, "
                            "--max-seconds): ask for less work") from None
        except asyncio.CancelledError:       # the client went away
            deadline.cancelled.set()
            fut.add_done_callback(_quiet)
            raise
        finally:
            self.waiting -= 1

    def shutdown(self) -> None:
        self.heavy.shutdown(wait=False, cancel_futures=True)
        self.light.shutdown(wait=False, cancel_futures=True)


def _lower_priority() -> None:
    """Heavy workers yield the CPU to the event loop and the light lane (Linux: a thread's
    own nice value)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HEAVY_NICE)
    except (AttributeError, OSError):
        pass


def _quiet(fut) -> None:
    """Read a cancelled job's outcome, so that its exception is not reported as lost."""
    if not fut.cancelled():
        fut.exception()


__all__ = ["WorkerPool", "Deadline", "Cancelled", "Busy", "checkpoint", "current_deadline",
           "MAX_WAITING"]
