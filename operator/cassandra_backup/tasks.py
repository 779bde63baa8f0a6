"""One long-lived asyncio task per resource, started and stopped by watch events.

kopf's daemons would do this too, but kopf puts a finalizer on every object that has a
daemon, so no schedule and no run could be deleted while the operator is down. Plain
tasks need none: a finalizer is added only where deletion has work to do (clearing a
run's snapshots, deleting an OpsCenter schedule).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

Key = tuple[str, str]


class StopFlag:
    """Tells a task to finish; true once set, and awaitable with a timeout."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (as kopf's)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        return self._event.is_set()


class Tasks:
    """At most one running task per key; a finished task may be started again."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._running: dict[Key, tuple[asyncio.Task[None], StopFlag]] = {}

    def ensure(self, key: Key,
               start: Callable[[StopFlag], Coroutine[Any, Any, None]]) -> bool:
        """Start ``start(stop)`` for ``key`` unless it runs already; True if started."""
        running = self._running.get(key)
        if running is not None and not running[0].done():
            return False
        stop = StopFlag()
        task = asyncio.create_task(start(stop), name=f"{self._what} {key[0]}/{key[1]}")
        task.add_done_callback(lambda done: self._finished(key, done))
        self._running[key] = (task, stop)
        return True

    def _finished(self, key: Key, task: asyncio.Task[None]) -> None:
        if self._running.get(key, (None,))[0] is task:
            del self._running[key]
        if not task.cancelled() and task.exception() is not None:
            log.error("%s %s/%s ended by an error", self._what, *key, exc_info=task.exception())

    async def stop(self, key: Key, *, grace: float = 10.0) -> None:
        running = self._running.get(key)
        if running is not None:
            await self._stop(*running, grace=grace)

    async def stop_all(self, *, grace: float = 10.0) -> None:
        await asyncio.gather(*(self._stop(task, stop, grace=grace)
                               for task, stop in list(self._running.values())))

    @staticmethod
    async def _stop(task: asyncio.Task[None], stop: StopFlag, *, grace: float) -> None:
        stop.set()
        done, _ = await asyncio.wait([task], timeout=grace)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
