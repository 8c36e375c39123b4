"""Rate limits over a sliding window: at most ``count`` wakes per ``per`` seconds, per
participant and per thread. A limited wake is deferred to when the oldest one leaves the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from controller.core.safeguards import decisions
from controller.core.safeguards.decisions import Decision, Reason


def decide_window(
    deliveries: Sequence[datetime], *, count: int, per: float, now: datetime, reason: Reason
) -> Decision:
    """Allow if fewer than ``count`` deliveries fall within the last ``per`` seconds."""
    window = timedelta(seconds=per)
    recent = sorted(t for t in deliveries if now - t < window)
    if len(recent) < count:
        return decisions.ALLOW
    frees_at = recent[len(recent) - count] + window
    return decisions.defer(frees_at, reason, f"{len(recent)} wake(s) in the last {per:g}s")


def decide(
    participant_deliveries: Sequence[datetime],
    thread_deliveries: Sequence[datetime],
    *,
    per_participant: tuple[int, float],
    per_thread: tuple[int, float],
    now: datetime,
) -> Decision:
    """Both limits must allow; the later of two deferrals wins."""
    first = decide_window(
        participant_deliveries,
        count=per_participant[0],
        per=per_participant[1],
        now=now,
        reason=Reason.RATE_LIMITED_PARTICIPANT,
    )
    second = decide_window(
        thread_deliveries,
        count=per_thread[0],
        per=per_thread[1],
        now=now,
        reason=Reason.RATE_LIMITED_THREAD,
    )
    deferred = [d for d in (first, second) if not d.allowed]
    return max(deferred, key=lambda d: d.until or now, default=decisions.ALLOW)
