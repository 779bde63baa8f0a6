"""Per-resource tasks and schedule wake-ups."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from cassandra_backup.tasks import StopFlag, Tasks
from cassandra_backup.wakeups import Wakeups


async def test_a_key_runs_one_task_at_a_time_and_may_run_again_once_done() -> None:
    tasks = Tasks("schedule")
    started: list[str] = []
    release = asyncio.Event()

    async def work(stop: StopFlag) -> None:
        started.append("go")
        await release.wait()

    assert tasks.ensure(("ns", "a"), work) is True
    assert tasks.ensure(("ns", "a"), work) is False
    await asyncio.sleep(0)
    release.set()
    await asyncio.sleep(0.01)
    assert tasks.ensure(("ns", "a"), work) is True
    await asyncio.sleep(0.01)
    assert started == ["go", "go"]


async def test_stop_asks_first_and_cancels_a_task_that_does_not_listen() -> None:
    tasks = Tasks("run")
    seen: list[str] = []

    async def polite(stop: StopFlag) -> None:
        await stop.wait()
        seen.append("polite stopped")

    async def deaf(stop: StopFlag) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.append("deaf cancelled")
            raise

    tasks.ensure(("ns", "polite"), polite)
    tasks.ensure(("ns", "deaf"), deaf)
    await asyncio.sleep(0)
    await tasks.stop_all(grace=0.1)
    assert sorted(seen) == ["deaf cancelled", "polite stopped"]


async def test_sleep_ends_at_the_tick_not_before() -> None:
    until = datetime.now(UTC) + timedelta(seconds=0.1)
    await asyncio.wait_for(Wakeups().sleep("ns", "s", until=until,
                                           now=lambda: datetime.now(UTC), stopped=StopFlag()),
                           timeout=5)
    assert datetime.now(UTC) >= until - timedelta(milliseconds=5)


async def test_sleep_without_a_tick_ends_on_a_wake_up_or_a_stop() -> None:
    wakeups, stop = Wakeups(), StopFlag()
    loop = asyncio.get_running_loop()

    def forever() -> asyncio.Future[None]:
        return asyncio.ensure_future(wakeups.sleep(
            "ns", "s", until=None, now=lambda: datetime.now(UTC), stopped=stop))

    loop.call_later(0.05, wakeups.wake, "ns", "s")
    await asyncio.wait_for(forever(), timeout=5)
    loop.call_later(0.05, stop.set)
    await asyncio.wait_for(forever(), timeout=5)


async def test_a_wake_up_before_the_sleep_is_not_lost() -> None:
    wakeups = Wakeups()
    wakeups.wake("ns", "s")
    await asyncio.wait_for(
        wakeups.sleep("ns", "s", until=None, now=lambda: datetime.now(UTC),
                      stopped=StopFlag()), timeout=1.0)
