"""Chunks of independent problems run side by side on the CPU's cores.

Problems share nothing, so the CPU's cores can take whole chunks of them, each chunk on
one core with torch's own intra-op threads set to one *in that thread* (OpenMP's thread
count is a per-thread setting: the caller's is untouched). Torch releases the GIL inside
its operations, and a chunk's operations are tens of microseconds each, so the threads run
nearly independently. This beats splitting every small operation across the cores: there
each operation ends in a barrier where the cores wait for each other, and on a machine
shared with other work a core that is taken away stalls every operation (measured on 2
busy cores: 12x slower than one thread). On a GPU the chunks run one after the other.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np
import torch

PARALLEL_MIN = 64        # problems per core below which the chunks run one after another
SMALL_WORK = 2 ** 18     # values of data below which those run on one torch thread

_local = threading.local()       # a worker thread's stop signal (``check_stop``)


class Stopped(Exception):
    """A chunk's work ended early: the caller was interrupted (Ctrl+C, a notebook's stop)."""


def check_stop() -> None:
    """Raise ``Stopped`` in a worker of ``each_chunk`` whose caller was interrupted; the
    batched engines call it once an iteration (a thread cannot be interrupted from outside,
    and leaving the pool waits for its running chunks: a minute of adam before)."""
    stop = getattr(_local, "stop", None)
    if stop is not None and stop.is_set():
        raise Stopped


def each_chunk(run: Callable[[np.ndarray], None], work: np.ndarray, size: int,
               device, points: int = 1) -> Iterator[np.ndarray]:
    """Call ``run(chunk)`` for consecutive chunks of ``work`` of at most ``size`` rows,
    yielding each chunk once it is done (in order). On the CPU with ``torch``'s thread
    count ``T > 1``, ``T`` chunks (of at most ``size / T`` rows, so that memory stays
    within the same budget) run at once, one per thread. Fewer problems than that, of
    ``points`` points each, run on one thread when their data are small (``SMALL_WORK``
    values): their operations are too small to share."""
    threads = torch.get_num_threads() if torch.device(device).type == "cpu" else 1
    if threads < 2 or len(work) < threads * PARALLEL_MIN:
        for at in range(0, len(work), size):
            chunk = work[at:at + size]
            if threads > 1 and len(work) * points <= SMALL_WORK:
                torch.set_num_threads(1)
                try:
                    run(chunk)
                finally:
                    torch.set_num_threads(threads)
            else:
                run(chunk)
            yield chunk
        return
    size = max(1, min(size // threads, -(-len(work) // threads)))
    chunks = [work[at:at + size] for at in range(0, len(work), size)]

    stop = threading.Event()

    def one(chunk):
        torch.set_num_threads(1)            # this thread's setting only
        _local.stop = stop
        try:
            run(chunk)
        finally:
            _local.stop = None
        return chunk
    pool = ThreadPoolExecutor(threads, thread_name_prefix="gradfit-many")
    try:
        yield from pool.map(one, chunks)
    except BaseException:       # KeyboardInterrupt, or the caller stopped iterating
        stop.set()              # the running chunks end at their next iteration
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
