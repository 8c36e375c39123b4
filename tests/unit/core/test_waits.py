"""What ``controller wait`` waits for: parsing ``--for`` and judging each look."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.core import actions as A
from controller.core import planner, waits, world
from controller.core.phases import Phase
from tests.factories import agent, binding, desired, observed, pane, proc, record, tree

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
S = world.AgentState


@pytest.mark.parametrize(
    ("text", "kind", "name"),
    [
        ("converged", waits.Kind.CONVERGED, ""),
        ("lane=a", waits.Kind.LANE, "a"),
        ("lane=feature-1", waits.Kind.LANE, "feature-1"),
        ("run=w-1", waits.Kind.RUN, "w-1"),
    ],
)
def test_parse(text: str, kind: waits.Kind, name: str) -> None:
    target = waits.parse(text)
    assert (target.kind, target.name) == (kind, name)
    assert str(target) == text


@pytest.mark.parametrize(
    "text", ["", "ready", "lane", "lane=", "lane=A", "run=-x", "converged=yes", "pod=a"]
)
def test_parse_refuses_what_it_does_not_know(text: str) -> None:
    with pytest.raises(ValueError, match="converged, lane=NAME or run=NAME"):
        waits.parse(text)


def test_converged_when_a_pass_would_do_nothing() -> None:
    check = waits.converged(planner.Plan(), {})
    assert check.reached and check.summary == "converged" and not check.failed
    assert check.state == {"actions": 0, "pending": 0, "drift": [], "refused": None, "blind": False}


def _provision(name: str) -> A.ProvisionLane:
    return A.ProvisionLane(name, f"/r/{name}", "declared", branch=f"lane/{name}")


@pytest.mark.parametrize(
    ("the_plan", "recorded", "words"),
    [
        (planner.Plan(actions=(_provision("a"),)), {}, "1 action(s) to apply (a)"),
        (
            planner.Plan(actions=tuple(_provision(n) for n in "abcdef")),
            {},
            "6 action(s) to apply (a, b, c, d, e, ...)",
        ),
        (planner.Plan(pending=(_provision("a"),)), {}, "1 action(s) held back"),
        (planner.Plan(refused="no lanes"), {}, "refused"),
        (
            planner.Plan(conditions={"a": (world.Condition("BranchInUse", "X", "m"),)}),
            {},
            "drift: a (BranchInUse)",
        ),
        (
            planner.Plan(),
            {"a": (world.Condition("CleanupRefused", "UncommittedChanges", "m"),)},
            "drift: a (CleanupRefused)",
        ),
        (
            planner.Plan(
                conditions={"a": (world.Condition("ObservationUnknown", "SourceUnreadable", "m"),)}
            ),
            {},
            "a source cannot be read",
        ),
    ],
)
def test_not_converged(the_plan: planner.Plan, recorded: Any, words: str) -> None:
    check = waits.converged(the_plan, recorded)
    assert not check.reached and words in check.summary


def test_waiting_on_policy_is_converged() -> None:
    backoff = world.Condition("AgentRestarting", "Backoff", "restarts at ...")
    assert waits.converged(planner.Plan(conditions={"a": (backoff,)}), {}).reached


def up(*records: world.AgentRecord, phase: Phase = Phase.RUNNING) -> world.Observed:
    return replace(
        observed([tree("a")], records=[record("a", phase)]),
        agents={r.binding: r for r in records},
        panes=tuple(pane(r) for r in records),
        processes={k: v for r in records for k, v in proc(r).items()},
    )


def test_lane_up_with_its_agents_running() -> None:
    b = binding("one")
    check = waits.lane("a", desired("a", b), up(agent(b)), planner.Plan())
    assert check.reached
    assert check.summary == "lane a: running (agents: one running)"
    assert check.state == {
        "name": "a",
        "phase": "running",
        "conditions": [],
        "agents": [{"binding": "one", "participant": "one", "state": "running"}],
        "pendingActions": [],
    }


def test_lane_without_agents_is_up_when_ready() -> None:
    check = waits.lane("a", desired("a"), up(phase=Phase.READY), planner.Plan())
    assert check.reached and check.summary == "lane a: ready"


def test_lane_not_up_yet() -> None:
    the_plan = planner.Plan(actions=(_provision("a"),))
    check = waits.lane("a", desired("a"), observed(), the_plan)
    assert not check.reached
    assert check.summary == "lane a: new; 1 action(s) to apply"
    assert check.state["pendingActions"] == [_provision("a").describe()]


def test_lane_with_an_agent_not_running() -> None:
    b, c = binding("one"), binding("two")
    exited = agent(c, S.EXITED, pid=None)
    seen = replace(up(agent(b)), agents={"one": agent(b), "two": exited})
    exit_note = world.Condition("AgentExited", "NotRestarted", "two: exited")
    the_plan = planner.Plan(conditions={"a": (exit_note,)})
    check = waits.lane("a", desired("a", b, c), seen, the_plan)
    assert not check.reached
    assert check.summary == (
        "lane a: running (agents: one running, two exited); AgentExited (NotRestarted)"
    )


@pytest.mark.parametrize(
    ("seen_change", "state"),
    [
        ({"processes": {}, "panes": ()}, "dead"),
        ({"processes": world.Unknown("ps failed")}, "unknown"),
        ({"agents": {}}, "pending"),
    ],
)
def test_lane_agent_states(seen_change: dict[str, Any], state: str) -> None:
    b = binding("one")
    seen = replace(up(agent(b)), **seen_change)
    check = waits.lane("a", desired("a", b), seen, planner.Plan())
    assert not check.reached and check.state["agents"][0]["state"] == state


def test_lane_with_a_recorded_condition() -> None:
    refused = world.Condition("CleanupRefused", "UncommittedChanges", "wip")
    seen = replace(observed([tree("a")]), records={"a": record("a", conditions=(refused,))})
    check = waits.lane("a", desired("a"), seen, planner.Plan())
    assert not check.reached and check.state["conditions"][0]["type"] == "CleanupRefused"


def _summary(phase: str, reason: str = "", **tasks: int) -> dict[str, Any]:
    return {"name": "w-1", "phase": phase, "reason": reason, "tasks": tasks}


@pytest.mark.parametrize(
    ("summary", "reached", "failed", "line"),
    [
        (None, False, False, "run w-1: not created yet"),
        (
            _summary("running", running=1, pending=2),
            False,
            False,
            "run w-1: running; tasks: 1 running, 2 pending",
        ),
        (_summary("succeeded", succeeded=3), True, False, "run w-1: succeeded; tasks: 3 succeeded"),
        (
            _summary("failed", "task_failed", failed=1, skipped=0),
            True,
            True,
            "run w-1: failed (task_failed); tasks: 1 failed",
        ),
        (_summary("aborted", "user_abort"), True, True, "run w-1: aborted (user_abort)"),
    ],
)
def test_run(summary: Any, reached: bool, failed: bool, line: str) -> None:
    check = waits.run("w-1", summary)
    assert (check.reached, check.failed, check.summary) == (reached, failed, line)
