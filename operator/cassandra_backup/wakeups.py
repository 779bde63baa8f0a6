"""Per-schedule wake-up signals: sleep until a tick, or until the schedule changes.

A schedule's daemon sleeps exactly until its next tick instead of polling; any watch
event on the schedule (an edit, a finished run) wakes it early so it can recompute.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol


class Stopped(Protocol):
    """kopf's daemon stop flag, as far as sleeping needs it."""

    def __bool__(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> Awaitable[Any]: ...


class Wakeups:
    def __init__(self) -> None:
        self._events: dict[tuple[str, str], asyncio.Event] = {}

    def _event(self, namespace: str, name: str) -> asyncio.Event:
        return self._events.setdefault((namespace, name), asyncio.Event())

    def wake(self, namespace: str, name: str) -> None:
        self._event(namespace, name).set()

    async def sleep(self, namespace: str, name: str, *, until: datetime | None,
                    now: Callable[[], datetime], stopped: Stopped) -> None:
        """Return at ``until`` (never, if None), on a wake-up, or when ``stopped``."""
        event = self._event(namespace, name)
        timeout = None if until is None else max((until - now()).total_seconds(), 0.0)
        if not event.is_set() and not stopped and timeout != 0.0:
            waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopped.wait())]
            try:
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        event.clear()

    def forget(self, namespace: str, name: str) -> None:
        self._events.pop((namespace, name), None)
