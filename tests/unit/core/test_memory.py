"""Backoff and no-progress bookkeeping, with time passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.core import memory

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(0, 0), (1, 10), (2, 20), (3, 40), (4, 80), (5, 160), (6, 300), (7, 300), (50, 300)],
)
def test_backoff_schedule(failures: int, seconds: int) -> None:
    assert memory.backoff_delay(failures) == timedelta(seconds=seconds)


def test_failure_sets_next_attempt_and_error() -> None:
    mem = memory.after_failure(memory.LaneMemory(), "boom", NOW)
    assert mem.failures == 1
    assert mem.next_attempt_at == NOW + timedelta(seconds=10)
    assert mem.last_error == "boom"
    assert memory.waiting(mem, NOW + timedelta(seconds=9))
    assert not memory.waiting(mem, NOW + timedelta(seconds=10))


def test_stalled_after_three_failures() -> None:
    mem = memory.LaneMemory()
    for _ in range(memory.STALLED_AFTER - 1):
        mem = memory.after_failure(mem, "x", NOW)
        assert not mem.stalled
    assert memory.after_failure(mem, "x", NOW).stalled


@pytest.mark.parametrize(
    ("previous", "applied", "error", "failures", "last_applied"),
    [
        (memory.LaneMemory(), ("a",), None, 0, ("a",)),
        (memory.LaneMemory(last_applied=("a",)), ("a",), None, 1, ("a",)),
        (memory.LaneMemory(last_applied=("a",)), ("b",), None, 0, ("b",)),
        (memory.LaneMemory(failures=2), (), None, 0, ()),
        (memory.LaneMemory(failures=2), (), "boom", 3, ()),
    ],
    ids=["first-apply", "applied-again-no-progress", "progress", "converged-resets", "failure"],
)
def test_remember(
    previous: memory.LaneMemory,
    applied: tuple[str, ...],
    error: str | None,
    failures: int,
    last_applied: tuple[str, ...],
) -> None:
    mem = memory.remember(previous, applied=applied, error=error, now=NOW)
    assert mem.failures == failures
    assert mem.last_applied == last_applied
    assert (mem.next_attempt_at is not None) == (failures > 0)
