"""Failures of OpsCenter requests, as values the reconciler can act on and show.

Each error says whether waiting helps (``transient``: a 5xx, a timeout, a garbled
answer) or whether only a change by a person will (a 4xx). Its text names the
OpsCenter, the request and OpsCenter's own words from its error body
``{"brief", "message", "type"}``, so it can go straight into a condition or an Event.
Texts pass through ``redact`` first: OpsCenter may echo a session id back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

REDACTED = "[redacted]"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret in ``secrets`` replaced (longest first, so none leaks)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


@dataclass(frozen=True)
class ErrorBody:
    """OpsCenter's error answer: a short title, a sentence, and an error class name."""

    brief: str
    message: str
    type: str

    @classmethod
    def parse(cls, content: bytes) -> ErrorBody | None:
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict) or not any(k in data for k in ("brief", "message")):
            return None
        return cls(brief=str(data.get("brief") or ""), message=str(data.get("message") or ""),
                   type=str(data.get("type") or ""))

    def sentence(self) -> str:
        """``brief: message``, or whichever of the two says more when one holds the other."""
        brief, message = self.brief.strip(), self.message.strip()
        if not brief or brief in message:
            return message or brief
        if not message or message in brief:
            return brief
        return f"{brief}: {message}"


class OpsCenterError(Exception):
    """An OpsCenter request that did not succeed; ``str`` is a sentence for a person."""

    reason: ClassVar[str] = "OpsCenterError"
    transient: ClassVar[bool] = False

    def __init__(self, message: str, *, status: int | None = None,
                 body: ErrorBody | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body

    def __str__(self) -> str:
        return self.message


class OpsCenterUnavailable(OpsCenterError):
    """No usable answer for now: a 5xx, a timeout, or no connection at all."""

    reason = "OpsCenterUnavailable"
    transient = True


class OpsCenterBadAnswer(OpsCenterError):
    """An answer that is not the JSON the API documents (a proxy page, a cut-off body)."""

    reason = "OpsCenterBadAnswer"
    transient = True


class OpsCenterRefused(OpsCenterError):
    """A 4xx: OpsCenter understood and said no; asking again unchanged will not help."""

    reason = "OpsCenterRefused"


class OpsCenterNotFound(OpsCenterRefused):
    """A 404: an unknown cluster, or a job schedule id OpsCenter does not have."""

    reason = "OpsCenterNotFound"


class OpsCenterLoginFailed(OpsCenterRefused):
    """The credentials were refused, or OpsCenter wants a login and none was given."""

    reason = "LoginFailed"
