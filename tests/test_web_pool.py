"""The server's worker pool: a request that would wait past its deadline is told at once."""
import asyncio
import time

import pytest

pytest.importorskip("fastapi")

from gradfit.web.pool import Busy, Cancelled, WorkerPool, checkpoint  # noqa: E402


def work(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        checkpoint()
        time.sleep(0.01)
    return seconds


def test_a_request_that_would_wait_past_its_deadline_is_busy_at_once():
    async def main():
        pool = WorkerPool(1.0, heavy=1, light=1)
        try:
            assert await pool.run(work, 0.8) == 0.8      # the lane learns its time a job
            first = asyncio.create_task(pool.run(work, 0.8))
            second = asyncio.create_task(pool.run(work, 0.8))
            await asyncio.sleep(0.05)
            t = time.monotonic()
            with pytest.raises(Busy, match="would wait about"):
                await pool.run(work, 0.8)             # two ahead of it: ~1.2 s > 1 s
            assert time.monotonic() - t < 0.2           # not after waiting the second out
            done = await asyncio.gather(first, second, return_exceptions=True)
            assert done[0] == 0.8 and (done[1] == 0.8 or isinstance(done[1], Cancelled))
        finally:
            pool.shutdown()

    asyncio.run(main())


def test_the_light_lane_is_not_held_up_by_heavy_work():
    async def main():
        pool = WorkerPool(1.0, heavy=1, light=1)
        try:
            await pool.run(work, 0.5)
            heavy = [asyncio.create_task(pool.run(work, 0.5)) for _ in range(2)]
            await asyncio.sleep(0.05)
            assert await pool.run(work, 0.05, light=True) == 0.05
            results = await asyncio.gather(*heavy, return_exceptions=True)
            assert all(r == 0.5 or isinstance(r, (Busy, Cancelled)) for r in results)
        finally:
            pool.shutdown()

    asyncio.run(main())
