"""What a pass remembers of each lane's failures, when a ``--lane`` pass holds lanes back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.core import memory, planner
from controller.runtime import steps
from tests.factories import desired, observed

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_held_back_lanes_keep_their_backoff_memory() -> None:
    waiting = memory.LaneMemory(failures=2, next_attempt_at=NOW + timedelta(minutes=1))
    p = planner.plan(desired("a", "b"), observed(), {"a": waiting}, NOW, selection=frozenset("b"))
    assert [(a.kind, a.lane) for a in p.unselected] == [("provision", "a")]
    after = steps.remembered(p, [], {"a": waiting}, NOW)
    assert "a" not in after  # kept as it is, not reset as if the lane had converged
    assert after["b"] == memory.LaneMemory()
