"""Admission control: a bounded number of generating requests, a bounded queue, 429 beyond it.

``slot()`` hands out a :class:`Slot` (release is idempotent, because a streamed response releases it
from whichever of its generator or background task runs last).
"""

from __future__ import annotations

import asyncio
import contextlib

from serve.errors import APIError
from serve.metrics import ServerMetrics


class Slot:
    def __init__(self, limiter: ConcurrencyLimiter) -> None:
        self._limiter = limiter
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._limiter._release()


class ConcurrencyLimiter:
    def __init__(self, max_running: int, max_queue: int, retry_after_s: int, metrics: ServerMetrics) -> None:
        self.max_running, self.max_queue, self.retry_after_s = max_running, max_queue, retry_after_s
        self.metrics = metrics
        self.running = 0
        self.waiting = 0
        self._free = asyncio.Condition()

    async def acquire(self) -> Slot:
        if self.running >= self.max_running and self.waiting >= self.max_queue:
            self.metrics.rejected.labels("queue_full").inc()
            raise APIError(
                429,
                f"server busy: {self.running} requests running and {self.waiting} waiting (queue bound "
                f"{self.max_queue}); retry after {self.retry_after_s} s",
                code="queue_full",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        async with self._free:
            self.waiting += 1
            self.metrics.waiting.set(self.waiting)
            try:
                await self._free.wait_for(lambda: self.running < self.max_running)
            finally:
                self.waiting -= 1
                self.metrics.waiting.set(self.waiting)
            self.running += 1
            self.metrics.running.set(self.running)
        return Slot(self)

    def _release(self) -> None:
        self.running -= 1
        self.metrics.running.set(self.running)

        async def _notify() -> None:
            async with self._free:
                self._free.notify()

        with contextlib.suppress(RuntimeError):  # no loop (shutdown): nobody is waiting
            asyncio.get_running_loop().create_task(_notify())
