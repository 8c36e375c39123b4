"""Decisions and the fixed list of reason codes every trigger attempt is recorded with."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Reason(enum.StrEnum):
    """Why an attempt ended the way it did (stored with every attempt; documented)."""

    DELIVERED = "delivered"
    SUBMIT_UNCONFIRMED = "submit_unconfirmed"
    COLLISION_DEFERRED = "collision_deferred"
    COLLISION_TIMEOUT = "collision_timeout"
    RATE_LIMITED_PARTICIPANT = "rate_limited_participant"
    RATE_LIMITED_THREAD = "rate_limited_thread"
    LOOP_NO_PROGRESS = "loop_no_progress"
    LOOP_IDENTICAL_FINDINGS = "loop_identical_findings"
    PARTICIPANT_BLOCKED = "participant_blocked"
    NOT_MEMBER = "not_member"
    THREAD_CLOSED = "thread_closed"
    THREAD_UNKNOWN = "thread_unknown"
    NOTHING_UNREAD = "nothing_unread"
    PAYLOAD_REJECTED = "payload_rejected"
    PANE_DEAD = "pane_dead"
    PANE_IN_MODE = "pane_in_mode"
    PANE_UNKNOWN = "pane_unknown"
    RESUMED = "resumed"
    SPAWNED = "spawned"
    FALLBACK_EXHAUSTED = "fallback_exhausted"
    FALLBACK_REQUIRED_UNMANAGED = "fallback_required_unmanaged"
    FALLBACK_REQUIRED_OFFLINE = "fallback_required_offline"
    FALLBACK_REQUIRED_NO_SESSION = "fallback_required_no_session"
    SEND_FAILED = "send_failed"
    LEASE_EXPIRED = "lease_expired"
    RETRIED_BY_OPERATOR = "retried_by_operator"
    FORCED = "forced"


class Verdict(enum.StrEnum):
    """The shape of a decision."""

    ALLOW = "allow"
    DEFER = "defer"  # try again at ``until``; does not use an attempt
    BLOCK = "block"  # do not deliver; ``reason`` says why


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one safeguard."""

    verdict: Verdict
    reason: Reason | None = None
    until: datetime | None = None
    detail: str = ""

    @property
    def allowed(self) -> bool:
        """Whether delivery may go ahead as far as this safeguard is concerned."""
        return self.verdict == Verdict.ALLOW


ALLOW = Decision(Verdict.ALLOW)


def defer(until: datetime, reason: Reason, detail: str = "") -> Decision:
    """Try again at ``until``."""
    return Decision(Verdict.DEFER, reason, until, detail)


def block(reason: Reason, detail: str = "") -> Decision:
    """Do not deliver."""
    return Decision(Verdict.BLOCK, reason, None, detail)
