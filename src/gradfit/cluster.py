"""Where Dask work runs: a cluster gradfit starts itself, or one the user already has.

``client_for(scheduler=None, workers=None)`` yields a ``dask.distributed.Client``:

- ``scheduler`` a ``Client``: that client; an address (``tcp://HOST:8786``, or
  ``HOST:8786`` as ``distributed.Client`` takes it): a client connected to that existing
  cluster (closed afterwards, the cluster left running), once at least one worker has
  joined it: a scheduler whose workers have not connected yet is waited for up to
  ``WORKER_WAIT_SECONDS`` (saying so on stderr after ``WORKER_NOTE_SECONDS``), then
  refused (its tasks would wait for ever);
- else a client already active in this process (``distributed.get_client``) when
  ``workers`` is not given;
- else a ``LocalCluster`` of ``workers`` processes (default: the CPU count, at most 4),
  one thread each, with ``OMP_NUM_THREADS=1`` so that each worker's torch uses one core
  (the parallelism is across workers) and glibc's malloc left to keep its memory
  (``PRE_SPAWN_ENV``), closed afterwards.

``progress(futures, show)`` follows the tasks with dask.distributed's progress bar.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

from .errors import InputError

WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
#: set before a worker process starts (glibc reads them once, at start). distributed's own
#: MALLOC_TRIM_THRESHOLD_=65536 also pins malloc's mmap threshold at 128 KiB, so every
#: tensor temporary of a batched fit became a fresh mmap with its page faults: fits ran
#: 3-4x slower in a worker than in the process that started it. These are glibc's own
#: upper values (an environment variable of the same name set by the user wins).
PRE_SPAWN_ENV = {**WORKER_ENV, "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
                 "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}
CONNECT_TIMEOUT = "10s"
HANDSHAKE_SECONDS = 20.0     # the whole connection, handshake included
WORKER_WAIT_SECONDS = 60.0   # for a scheduler's first worker (workers start after it)
WORKER_NOTE_SECONDS = 3.0    # ... before saying on stderr what is awaited


def _distributed():
    try:
        import distributed
    except ImportError:
        raise InputError("Dask is not installed", expected="pip install 'gradfit[dask]'") \
            from None
    return distributed


def check_workers(workers) -> int | None:
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError("bad number of workers", expected="a whole number >= 1", given=workers)
    return workers


@contextlib.contextmanager
def client_for(scheduler=None, workers: int | None = None) -> Iterator:
    """The ``Client`` to run on (see the module's docstring)."""
    distributed = _distributed()
    workers = check_workers(workers)
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if scheduler is not None:
        scheduler = address(scheduler)
        client = _connect(distributed, scheduler)
        with client:
            _wait_for_workers(client, scheduler)
            yield client
        return
    if workers is None:
        try:
            active = distributed.get_client()
        except ValueError:           # no client in this process
            active = None
        if active is not None:       # yielded outside the try: the body's errors pass through
            yield active
            return
    n = workers or max(1, min(4, os.cpu_count() or 1))
    with local_cluster(n) as cluster, distributed.Client(cluster) as client:
        yield client


def address(scheduler) -> str:
    """A scheduler's address: ``tcp://HOST:PORT`` (any scheme ``distributed`` knows), or
    ``HOST:PORT`` for tcp, as ``distributed.Client`` reads it."""
    text = scheduler.strip() if isinstance(scheduler, str) else ""
    if "://" in text:
        return text
    host, colon, port = text.rpartition(":")
    if colon and host and port.isdigit():
        return "tcp://" + text
    raise InputError("bad scheduler address", expected="an address such as tcp://HOST:8786 "
                     "(or HOST:8786), or a distributed.Client", given=str(scheduler))


def _wait_for_workers(client, scheduler: str) -> None:
    """Return once the scheduler has a worker; say on stderr what is awaited after
    ``WORKER_NOTE_SECONDS``; refuse after ``WORKER_WAIT_SECONDS`` (tasks sent to a
    scheduler without workers wait for ever, silently)."""
    import sys
    import time
    start = time.monotonic()
    noted = False
    while not client.scheduler_info(n_workers=1).get("workers"):
        waited = time.monotonic() - start
        if waited >= WORKER_WAIT_SECONDS:
            raise InputError(f"the Dask scheduler at {scheduler} has no workers",
                             expected="a cluster with at least one worker (dask worker "
                             f"{scheduler}), or --workers N / workers=N for a local one",
                             given=f"none joined within {WORKER_WAIT_SECONDS:g} s")
        if not noted and waited >= WORKER_NOTE_SECONDS:
            print(f"gradfit: waiting for a worker to join the Dask scheduler at {scheduler} "
                  f"(none yet; up to {WORKER_WAIT_SECONDS:g} s)", file=sys.stderr, flush=True)
            noted = True
        time.sleep(0.2)


def _connect(distributed, scheduler: str):
    """A ``Client`` of the scheduler at ``scheduler``, within ``HANDSHAKE_SECONDS`` whatever
    answers there: ``Client``'s own timeout covers the TCP connection, not the handshake,
    so a port that accepts and stays silent (or an HTTP server) held it for ever, and one
    that sends a banner (SSH) was read as a frame of exabytes (MemoryError)."""
    import threading
    box: dict = {}

    def connect():
        try:
            box["client"] = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT)
        except BaseException as exc:    # noqa: BLE001 - handed to the caller below
            box["error"] = exc
    thread = threading.Thread(target=connect, name="gradfit-connect", daemon=True)
    thread.start()
    thread.join(HANDSHAKE_SECONDS)
    exc = box.get("error")
    if "client" in box:
        return box["client"]
    why = ("no Dask answer within {:g} s".format(HANDSHAKE_SECONDS) if thread.is_alive()
           else (str(exc).splitlines() or [type(exc).__name__])[0] if exc else "no client")
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    if isinstance(exc, MemoryError):     # a banner read as the length of a Dask frame
        why = "the service there answers in another protocol, not Dask's"
    raise InputError(f"cannot reach the Dask scheduler at {scheduler}",
                     expected="a running Dask scheduler there (dask scheduler; dask worker "
                     "tcp://HOST:8786)", given=why[:200])


def local_cluster(n: int):
    """A ``LocalCluster`` of ``n`` worker processes, one thread each, started with
    ``PRE_SPAWN_ENV``."""
    import dask
    distributed = _distributed()
    with dask.config.set({"distributed.nanny.pre-spawn-environ": PRE_SPAWN_ENV}):
        return distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        dashboard_address=":0",
                                        scheduler_kwargs={"dashboard": False},
                                        env=dict(WORKER_ENV), silence_logs=50)


def progress(futures, show: bool) -> None:
    """dask.distributed's progress bar over ``futures`` (returns when they are done)."""
    if show:
        from distributed import progress as bar
        bar(futures)
