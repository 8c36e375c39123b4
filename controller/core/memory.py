"""What the controller remembers between passes about each lane's failures.

Memory drives backoff: an action that failed, or that was applied and is planned again, waits
exponentially longer (capped) before it is tried again; after a few rounds the lane carries a
``Stalled`` condition with the last error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

BACKOFF_BASE = timedelta(seconds=10)
BACKOFF_CAP = timedelta(seconds=300)
STALLED_AFTER = 3


@dataclass(frozen=True, slots=True)
class LaneMemory:
    """Failure bookkeeping for one lane."""

    failures: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    last_applied: tuple[str, ...] = ()  # keys of the actions applied successfully last time

    @property
    def stalled(self) -> bool:
        """Whether the lane has failed often enough to be shown as stalled."""
        return self.failures >= STALLED_AFTER


def backoff_delay(failures: int) -> timedelta:
    """Delay after the ``failures``-th consecutive failure: 10 s doubling, capped at 300 s."""
    if failures <= 0:
        return timedelta(0)
    return min(BACKOFF_BASE * (1 << min(failures - 1, 16)), BACKOFF_CAP)


def after_failure(memory: LaneMemory, error: str, now: datetime) -> LaneMemory:
    """Memory after one more failure at ``now``."""
    failures = memory.failures + 1
    return replace(
        memory,
        failures=failures,
        next_attempt_at=now + backoff_delay(failures),
        last_error=error,
        last_applied=(),
    )


def after_success(applied: tuple[str, ...]) -> LaneMemory:
    """Memory after every planned action for the lane succeeded."""
    return LaneMemory(last_applied=applied)


def waiting(memory: LaneMemory, now: datetime) -> bool:
    """Whether the lane is still backing off at ``now``."""
    return memory.next_attempt_at is not None and now < memory.next_attempt_at


def remember(
    previous: LaneMemory,
    *,
    applied: tuple[str, ...],
    error: str | None,
    now: datetime,
) -> LaneMemory:
    """Memory after a pass that applied ``applied`` (keys) for the lane and maybe failed.

    An action applied last pass and applied again now made no progress: the world did not
    change as it should have, so it counts as a failure and backs off like one.
    """
    if error is not None:
        return after_failure(previous, error, now)
    repeated = sorted(set(applied) & set(previous.last_applied))
    if repeated:
        note = f"{', '.join(repeated)} was applied last pass and is needed again (no progress)"
        return replace(after_failure(previous, note, now), last_applied=applied)
    return after_success(applied)
