"""RFC 3339 UTC timestamps, the one form every status field uses."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(instant: datetime) -> str:
    """``2012-05-03T18:00:00Z``: seconds precision, UTC, with a Z."""
    return instant.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_rfc3339(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
