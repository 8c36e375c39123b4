"""Events: every state change, appended and never rewritten, with secrets redacted.

Redaction happens here, at the one place events are written, so no caller can forget it:
values under keys that look like secrets, and every value of an ``env`` mapping, are replaced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

REDACTED = "<redacted>"
_SECRET_KEY = re.compile(r"(secret|token|passw|credential|api[_-]?key|auth|private)", re.I)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@", re.I)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened, as written to the log."""

    kind: str
    reason: str
    at: datetime
    correlation_id: str
    lane: str | None = None
    participant: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A stable JSON object for ``controller events --output json``."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "correlationId": self.correlation_id,
            "lane": self.lane,
            "participant": self.participant,
            "kind": self.kind,
            "reason": self.reason,
            "data": dict(self.data),
        }


def redact(value: Any, *, key: str = "") -> Any:
    """A copy of ``value`` with secrets replaced, recursively."""
    if key.lower() == "env" and isinstance(value, Mapping):
        return dict.fromkeys(value, REDACTED)
    if key and _SECRET_KEY.search(key) and not isinstance(value, Mapping | list | tuple):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): redact(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key=key) for v in value]
    if isinstance(value, str):
        return _URL_PASSWORD.sub(rf"\g<scheme>{REDACTED}@", value)
    return value
