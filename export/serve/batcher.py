"""Dynamic batching: images of concurrent requests that arrive within ``max_delay`` run as
one inference call of at most ``max_batch`` images.

One collector task per model takes a free lane (``lanes`` batches run at once, as in
``vision-tasks predict``), waits for the first image, then for more until the batch is full
or ``max_delay`` has passed since that first image, and hands the batch to a worker thread.
While every lane is busy, images wait in the queue, so the next batch is full without
waiting: under load the batches grow by themselves and the delay costs nothing. The queue is
bounded by the caller (:meth:`Batcher.admit`), so a burst is answered 503 at once instead of
growing a backlog that every later request waits behind.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .inputs import RequestError


@dataclass
class Job:
    """One image waiting for a batch: its prepared input, what the request asked, and the
    future its answer goes to."""

    item: Any
    options: Any
    future: asyncio.Future


class Batcher:
    """Collects :class:`Job` s into batches for ``run_batch`` (called in a worker thread with
    the batch's jobs, returning one result per job in order).

    Args:
        run_batch: ``jobs -> results``; its exception fails every job of the batch.
        max_batch: the most jobs per call.
        max_delay_s: how long the first job of a batch waits for more (seconds).
        max_queue: jobs admitted and not yet in a batch; :meth:`admit` refuses past it.
        lanes: batches running at once (worker threads).
        on_batch: called on the event loop with each batch's size (metrics).
    """

    def __init__(self, run_batch: Callable[[list[Job]], list[Any]], max_batch: int,
                 max_delay_s: float, max_queue: int, lanes: int,
                 on_batch: Callable[[int], None] = lambda n: None) -> None:
        self.run_batch = run_batch
        self.max_batch, self.max_delay_s, self.max_queue = max_batch, max_delay_s, max_queue
        self.lanes = lanes
        self.on_batch = on_batch
        self.admitted = 0  # jobs admitted and not yet taken into a batch
        self._jobs: deque[Job] = deque()
        self._arrived = asyncio.Event()
        self._free = asyncio.Semaphore(lanes)
        self._pool = ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="infer")
        self._running: set[asyncio.Task] = set()
        self._collector = asyncio.get_running_loop().create_task(self._collect())

    def admit(self, n: int) -> None:
        """Reserve room for ``n`` jobs, or refuse with 503 when the queue is full."""
        if self.admitted + n > self.max_queue:
            raise RequestError(503, "queue_full",
                               f"the server is busy ({self.admitted} images queued, at most "
                               f"{self.max_queue}: --max-queue); retry after the Retry-After "
                               "seconds", headers={"Retry-After": "1"})
        self.admitted += n

    def release(self, n: int) -> None:
        """Give back room reserved by :meth:`admit` for jobs that will not be submitted."""
        self.admitted -= n

    def submit(self, item: Any, options: Any) -> asyncio.Future:
        """Queue one admitted job; its future gets ``run_batch``'s result for it."""
        future = asyncio.get_running_loop().create_future()
        self._jobs.append(Job(item, options, future))
        self._arrived.set()
        return future

    async def _next_arrival(self, timeout: float | None) -> bool:
        self._arrived.clear()
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout)
        except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
            return False
        return True

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._free.acquire()
            while not self._jobs:
                await self._next_arrival(None)
            deadline = loop.time() + self.max_delay_s
            while len(self._jobs) < self.max_batch:
                left = deadline - loop.time()
                if left <= 0 or not await self._next_arrival(left):
                    break
            batch: list[Job] = []
            while self._jobs and len(batch) < self.max_batch:
                job = self._jobs.popleft()
                self.admitted -= 1
                if not job.future.done():  # a request that timed out or went away: dropped
                    batch.append(job)
            if not batch:
                self._free.release()
                continue
            task = loop.create_task(self._dispatch(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _dispatch(self, batch: list[Job]) -> None:
        try:
            self.on_batch(len(batch))
            results = await asyncio.get_running_loop().run_in_executor(
                self._pool, self.run_batch, batch)
        except Exception as err:  # the model failed: every request of the batch is told
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(err)
        else:
            for job, result in zip(batch, results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)
        finally:
            self._free.release()

    async def close(self, timeout: float) -> None:
        """Let the batches running finish (at most ``timeout`` seconds), then stop; jobs still
        queued are failed with 503."""
        self._collector.cancel()
        if self._running:
            await asyncio.wait(self._running, timeout=timeout or None)
        for job in self._jobs:
            if not job.future.done():
                job.future.set_exception(RequestError(503, "shutdown", "the server is shutting "
                                                      "down; retry on another instance"))
        self._pool.shutdown(wait=False, cancel_futures=True)
