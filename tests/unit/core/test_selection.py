"""``--lane``: the planner acts on the selected lanes only, and the guards still hold."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from controller.core import actions as A
from controller.core import memory, planner, world
from controller.spec.state import DesiredState
from tests.factories import agent, binding, desired, observed, record, tree

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def plan(
    want: DesiredState,
    seen: world.Observed,
    *only: str,
    memories: Mapping[str, memory.LaneMemory] | None = None,
    allow_empty: bool = False,
) -> planner.Plan:
    return planner.plan(
        want, seen, memories or {}, NOW, selection=frozenset(only), allow_empty=allow_empty
    )


def kinds(actions: tuple[A.ActionBase, ...]) -> list[tuple[str, str]]:
    return [(a.kind, a.lane) for a in actions]


def test_without_a_selection_every_lane_is_planned() -> None:
    p = planner.plan(desired("a", "b"), observed(), {}, NOW)
    assert kinds(p.actions) == [("provision", "a"), ("provision", "b")]
    assert p.selection is None and p.unselected == ()


def test_lanes_outside_the_selection_are_held_back() -> None:
    p = plan(desired("a", "b", "c"), observed(), "b")
    assert kinds(p.actions) == [("provision", "b")]
    assert kinds(p.unselected) == [("provision", "a"), ("provision", "c")]
    assert p.selection == frozenset({"b"})


def test_an_undeclared_lane_outside_the_selection_is_not_removed() -> None:
    seen = observed([tree("a"), tree("old")], records=[record("a"), record("old")])
    p = plan(desired("a", "new"), seen, "new")
    assert kinds(p.actions) == [("provision", "new")]
    assert kinds(p.unselected) == [("remove", "old")]
    assert kinds(plan(desired("a", "new"), seen, "old").actions) == [("remove", "old")]


def test_conditions_are_those_of_the_selected_lanes() -> None:
    seen = observed([tree("a", branch="other")], records=[record("a")])
    assert [c.type for c in planner.plan(desired("a"), seen, {}, NOW).conditions["a"]] == [
        "BranchMismatch"
    ]
    p = plan(desired("a", "b"), seen, "b")
    assert dict(p.conditions) == {}


def test_cleanup_outside_any_lane_waits_for_a_full_pass() -> None:
    b = binding("one", runtime="process")
    seen = replace(
        observed([tree("a")], records=[record("a")]),
        agents={"one": agent(b)},
        processes={100: world.Proc(100, 1000.0)},
        launched={500: world.Proc(500, 2.0, argv=("python3", "launch.py"))},
    )
    everything = planner.plan(desired("a", b), seen, {}, NOW)
    assert ("kill-stray-process", "-") in kinds(everything.actions)
    p = plan(desired("a", b), seen, "a")
    assert kinds(p.actions) == []
    assert kinds(p.unselected) == [("kill-stray-process", "-")]


def test_the_empty_guard_still_refuses() -> None:
    seen = observed([tree("a")], records=[record("a")])
    p = plan(desired(), seen, "a")
    assert p.refused is not None and p.actions == ()
    assert kinds(plan(desired(), seen, "a", allow_empty=True).actions) == [("remove", "a")]


def test_max_deletions_counts_the_selected_removals() -> None:
    names = ("a", "b", "c")
    seen = observed([tree(n) for n in names], records=[record(n) for n in names])
    p = plan(desired("keep", maxDeletionsPerPass=1), seen, "b", "c")
    assert kinds(p.actions) == [("remove", "b")]
    assert kinds(p.pending) == [("remove", "c")]
    assert kinds(p.unselected) == [("remove", "a"), ("provision", "keep")]
    assert [c.reason for c in p.conditions["c"]] == ["MaxDeletionsPerPass"]


def test_a_move_waits_while_its_old_lane_is_not_selected() -> None:
    moved = binding("one", lane_="b")
    r = agent(binding("one"))  # recorded in lane a
    seen = replace(
        observed([tree("a"), tree("b")], records=[record("a"), record("b")]),
        agents={"one": r},
        panes=(world.Pane("$1", "@1", "%1", 100, session_name="a"),),
        processes={100: world.Proc(100, 1000.0)},
    )
    p = plan(desired("a", "b", moved), seen, "b")
    assert kinds(p.actions) == []
    assert kinds(p.unselected) == [("stop-agent", "a")]
    assert [c.reason for c in p.conditions["b"]] == ["PreviousAgentRunning"]


def test_a_blind_plan_speaks_of_the_selected_lanes() -> None:
    seen = replace(observed(), worktrees=world.Unknown("git timed out"))
    p = plan(desired("a", "b"), seen, "a")
    assert list(p.conditions) == ["a"] and p.actions == ()


def test_a_selected_lane_in_backoff_stays_pending() -> None:
    waiting = memory.LaneMemory(failures=2, next_attempt_at=NOW + timedelta(minutes=1))
    p = plan(desired("a", "b"), observed(), "a", memories={"a": waiting})
    assert kinds(p.pending) == [("provision", "a")] and p.actions == ()
    assert [c.type for c in p.conditions["a"]] == ["BackingOff"]
