"""Which conditions the daemon logs as appeared or cleared between two passes (pure)."""

from __future__ import annotations

from controller.core import alerts, planner, world
from controller.core.alerts import Change
from tests import factories as f

MISMATCH = world.Condition("BranchMismatch", "WrongBranch", "on main, want lane/a")
CRASH = world.Condition("CrashLoop", "Blocked", "worker: 5 restarts in 60s")


def test_a_new_condition_appears_once_and_clears_once() -> None:
    assert alerts.compare({}, {"a": (MISMATCH,)}) == (alerts.Alert("a", MISMATCH, Change.APPEARED),)
    assert alerts.compare({"a": (MISMATCH,)}, {"a": (MISMATCH,)}) == ()
    assert alerts.compare({"a": (MISMATCH,)}, {}) == (alerts.Alert("a", MISMATCH, Change.CLEARED),)


def test_a_new_message_is_the_same_condition_a_new_reason_is_not() -> None:
    later = world.Condition("CrashLoop", "Blocked", "worker: 6 restarts in 60s")
    assert alerts.compare({"a": (CRASH,)}, {"a": (later,)}) == ()
    other = world.Condition("CrashLoop", "Other", "x")
    assert alerts.compare({"a": (CRASH,)}, {"a": (other,)}) == (
        alerts.Alert("a", other, Change.APPEARED),
        alerts.Alert("a", CRASH, Change.CLEARED),
    )


def test_lanes_are_told_apart_and_sorted() -> None:
    before = {"b": (MISMATCH,)}
    after = {"c": (CRASH,), "a": (MISMATCH,), "b": (MISMATCH,)}
    assert [(x.lane, x.condition.type) for x in alerts.compare(before, after)] == [
        ("a", "BranchMismatch"),
        ("c", "CrashLoop"),
    ]


def test_conditions_after_joins_the_inventory_and_the_plan() -> None:
    stuck = world.Condition("Blocked", "DirtyWorktree", "has changes")
    observed = f.observed(records=[f.record("a", conditions=(stuck,)), f.record("b")])
    plan = planner.Plan(conditions={"a": (MISMATCH,), "c": (CRASH,)})
    assert alerts.conditions_after(plan, observed) == {"a": (stuck, MISMATCH), "c": (CRASH,)}
