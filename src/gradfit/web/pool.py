"""A bounded pool of worker threads with a deadline on every job: nothing blocks the event loop.

Two lanes: a *light* one for small requests (a slider's ``/api/eval``), so that they never
wait behind a landscape, and a *heavy* one for the rest. At most ``MAX_WAITING`` jobs wait
for a lane; past that the answer is 429 ("busy"). A job that would wait past its own
deadline (the jobs queued ahead of it, shared among the lane's workers, times the lane's
recent time a job) gets its 429 at once, not after waiting out the deadline in vain.

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


class _Lane:
    """A lane's workers, its jobs queued and running, and its recent time a job (a moving
    average, so that the estimate follows what the lane is asked to do now)."""

    def __init__(self, workers: int, name: str, initializer=None):
        self.workers = workers
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix=f"gradfit-{name}",
                                           initializer=initializer)
        self.queued = self.running = 0
        self.job_seconds = None         # none done yet: no estimate
        self.lock = threading.Lock()

    def expected_wait(self) -> float:
        """Seconds a job sent now would wait for a worker (0 while one is free)."""
        with self.lock:
            if self.running + self.queued < self.workers or self.job_seconds is None:
                return 0.0
            # the queued jobs in full, the running ones half done on average
            return (self.queued + 0.5 * self.running) / self.workers * self.job_seconds

    def submit(self) -> None:
        with self.lock:
            self.queued += 1

    def call(self, deadline: Deadline, fn: Callable, args: tuple):
        with self.lock:
            self.queued -= 1
            if deadline.expired():           # waited too long: do nothing
                return None
            self.running += 1
        deadline.started = True
        _local.deadline = deadline
        t = time.monotonic()
        try:
            return fn(*args)
        except StopIteration as exc:     # a Future cannot hold it: the request had hung
            raise RuntimeError(f"StopIteration in a job: {exc!r}") from exc
        finally:
            _local.deadline = None
            with self.lock:
                self.running -= 1
                took = time.monotonic() - t
                self.job_seconds = took if self.job_seconds is None else \
                    self.job_seconds + 0.3 * (took - self.job_seconds)


class WorkerPool:
    """``await pool.run(fn, *args, light=...)``: ``fn(*args)`` in a worker thread, with a
    deadline; raises ``Cancelled`` past it, ``Busy`` when the queue is full."""

    def __init__(self, seconds: float, heavy: int = 2, light: int = 2):
        self.seconds = seconds
        self.heavy = _Lane(heavy, "heavy", _lower_priority)
        self.light = _Lane(light, "light")
        self.waiting = 0

    async def run(self, fn: Callable, *args, light: bool = False, seconds: float | None = None):
        if self.waiting >= MAX_WAITING:
            raise Busy(f"the server is busy: {MAX_WAITING} requests are waiting; try again "
                       "in a moment")
        deadline = Deadline(self.seconds if seconds is None else seconds)
        lane = self.light if light else self.heavy
        wait = lane.expected_wait()
        if wait >= deadline.seconds:
            raise Busy(f"the server is busy: this request would wait about {wait:.3g} s for a "
                       f"worker, past its time limit of {deadline.seconds:g} s; try again in "
                       "a moment")
        loop = asyncio.get_running_loop()
        lane.submit()
        fut = loop.run_in_executor(lane.executor, lane.call, deadline, fn, args)
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
        self.heavy.executor.shutdown(wait=False, cancel_futures=True)
        self.light.executor.shutdown(wait=False, cancel_futures=True)


async def unless_gone(receive, job):
    """Await the coroutine ``job`` (a ``pool.run``, its body read already), cancelled when
    the client disconnects first (``receive``, the request's ASGI channel, reports
    ``http.disconnect``): its work stops at the next checkpoint, as at the deadline, and
    this raises Starlette's ``ClientDisconnect`` (nothing is answered or logged). Two
    landscapes posted and dropped had kept the heavy lane busy to their deadline."""
    from starlette.requests import ClientDisconnect

    async def gone():
        while (await receive())["type"] != "http.disconnect":
            pass
    task, watch = asyncio.ensure_future(job), asyncio.ensure_future(gone())
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and watch.exception() is None:      # the client went away
            task.cancel()               # pool.run's CancelledError: the deadline is cancelled
        await asyncio.wait((task,))
        if task.cancelled():
            raise ClientDisconnect()
        return task.result()
    finally:
        watch.cancel()
        task.cancel()                   # (our own request cancelled: the job too)


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
           "unless_gone", "MAX_WAITING"]
