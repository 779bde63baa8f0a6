"""Status writes that carry only what changed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

from cassandra_backup.conditions import condition, set_condition

ConditionStatus = Literal["True", "False", "Unknown"]


class StatusDraft:
    """A resource's status as read, the changes made to it since, and how to write them.

    Only fields whose value differs from what was read are written, so a reconcile
    that finds nothing new writes nothing (and wakes no watcher).
    """

    def __init__(self, current: dict[str, Any], *, now: datetime, generation: int | None,
                 write: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self.current = current
        self.changes: dict[str, Any] = {}
        self.now = now
        self.generation = generation
        self._write = write

    def get(self, key: str) -> Any:
        return self.changes.get(key, self.current.get(key))

    def set(self, **fields: Any) -> None:
        for key, value in fields.items():
            if self.current.get(key) != value:
                self.changes[key] = value
            else:
                self.changes.pop(key, None)

    def condition(self, type: str, status: ConditionStatus, reason: str, message: str) -> bool:
        """Set a condition; True when its status, reason or message changed."""
        before = condition(self.get("conditions") or [], type)
        conditions = set_condition(self.get("conditions") or [], type=type, status=status,
                                   reason=reason, message=message, now=self.now,
                                   generation=self.generation)
        self.set(conditions=conditions)
        after = condition(conditions, type) or {}
        return before is None or any(before.get(k) != after.get(k)
                                     for k in ("status", "reason", "message"))

    def condition_of(self, type: str) -> dict[str, Any]:
        return condition(self.get("conditions") or [], type) or {}

    async def save(self) -> None:
        if self.changes:
            changes, self.changes = self.changes, {}
            await self._write(changes)
            self.current.update(changes)
