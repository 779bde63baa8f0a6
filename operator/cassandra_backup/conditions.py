"""Status conditions as the Kubernetes API conventions describe them.

``lastTransitionTime`` moves only when a condition's status changes, so re-asserting a
condition on every reconcile causes no churn and no status write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from cassandra_backup.timefmt import rfc3339


def set_condition(conditions: list[dict[str, Any]], *, type: str,
                  status: Literal["True", "False", "Unknown"], reason: str, message: str,
                  now: datetime, generation: int | None = None) -> list[dict[str, Any]]:
    """A new list with condition ``type`` set; the others kept as they were."""
    previous = next((c for c in conditions if c.get("type") == type), None)
    transition = rfc3339(now)
    if previous is not None and previous.get("status") == status:
        transition = previous.get("lastTransitionTime", transition)
    updated: dict[str, Any] = {"type": type, "status": status, "reason": reason,
                               "message": message, "lastTransitionTime": transition}
    if generation is not None:
        updated["observedGeneration"] = generation
    others = [c for c in conditions if c.get("type") != type]
    return sorted([*others, updated], key=lambda c: str(c.get("type")))


def condition(conditions: list[dict[str, Any]], type: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type), None)
