"""Every action renders for people and for JSON; a few edge branches of the pure core."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from controller.core import actions as A
from controller.core import agents, lifecycle, planner, triggers, world
from controller.core.safeguards.decisions import Reason
from tests.factories import agent, binding, desired, observed, pane, proc, record, tree
from tests.unit.core.test_triggers import live_facts, state

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
DECISION = lifecycle.ExitDecision(world.AgentState.EXITED, (NOW,), 1, None, NOW, None)

EVERY_ACTION = [
    A.ProvisionLane("a", "/r/a", "why", branch="lane/a", reuse_branch=True),
    A.ProvisionLane("a", "/r/a", "why", branch="lane/a", base="v1"),
    A.AdoptWorktree("a", "/r/a", "why", branch="lane/a"),
    A.RemoveLane("a", "/r/a", "why", branch="lane/a"),
    A.RemoveLane("a", "/r/a", "why", branch="lane/a", on_dirty="refuse"),
    A.PruneRecord("a", "/r/a", "why"),
    A.DiscardInterrupted("a", "/r/a", "why"),
    A.QuarantineDir("a", "/r/a", "why"),
    A.ForgetLane("a", "/r/a", "why"),
    A.StartAgent(
        "a", "/r/a", "why", binding="b", participant="p", command=("x",), env=(("K", "secret"),)
    ),
    A.StopAgent("a", "/r/a", "why", binding="b", participant="p", pid=5, exit=DECISION),
    A.RemoveAgent("a", "/r/a", "why", binding="b", participant="p"),
    A.RecordExit("a", "/r/a", "why", binding="b", participant="p", exit=DECISION),
    A.RecordExit(
        "a", "/r/a", "why", binding="b", participant="p", exit=replace(DECISION, last_exit=3)
    ),
    A.StartAgent("b", "/r/b", "why", binding="b", participant="p", moved_from="a"),
    A.StopAgent("a", "/r/a", "why", binding="b", participant="p", pid=5, pane_id="%2"),
    A.AdoptAgent(
        "a",
        "/r/a",
        "why",
        binding="b",
        participant="p",
        pid=5,
        pid_created=1.5,
        session_id="$1",
        window_id="@2",
        pane_id="%3",
        spec_hash="h",
        started_at=NOW,
    ),
    A.KillStray("a", "", "why", window_id="@3", pane_id="%4", pid=1, created=2.5),
    A.KillStray("-", "", "why", window_id="@3", pane_id="%4"),
    A.KillStrayProcess("-", "", "why", pid=7, created=1.0),
]


@pytest.mark.parametrize("action", EVERY_ACTION, ids=lambda a: a.kind)
def test_every_action_renders(action: A.Action) -> None:
    assert action.describe()
    data = action.to_json()
    assert data["kind"] == action.kind and data["key"] == action.key
    text = json.dumps(data)  # plain JSON: no datetimes or tuples left
    assert "secret" not in text
    assert "_" not in "".join(k for k in data if k != "key")  # camelCase keys


def test_plan_lanes_lists_lanes_with_actions_in_order() -> None:
    result = planner.plan(desired("b", "a"), observed(), {}, NOW)
    assert result.lanes == ("a", "b")


def test_unknown_worktrees_have_no_worktree_at_any_path() -> None:
    seen = replace(observed([tree("a")]), worktrees=world.Unknown("x"))
    assert seen.worktree_at("/r/.lanes/worktrees/a") is None


def test_settling_agents_are_reported_not_acted_on() -> None:
    b = binding("one")
    r = agent(b)
    base = replace(observed([tree("a")], records=[record("a")]), agents={"one": r})
    settling = replace(base, panes=(pane(r),), processes={})  # ended, status not yet reported
    assert planner.plan(desired("a", b), settling, {}, NOW).actions == ()
    gone = planner.plan(desired("a"), settling, {}, NOW)  # binding removed: wait, then remove
    assert gone.actions == ()
    assert [c.reason for c in gone.conditions["a"]] == ["Settling"]


def test_heartbeat_of_process_agents_is_their_log_activity() -> None:
    b = binding("one", runtime="process", heartbeat={"staleAfter": "1m"})
    r = agent(b, started_at=NOW - timedelta(hours=1))
    seen = replace(observed(), log_activity={"one": NOW - timedelta(seconds=5)}, processes=proc(r))
    assert lifecycle.last_heartbeat(r, b, seen) == NOW - timedelta(seconds=5)
    assert not lifecycle.is_stale(r, b, seen, NOW)
    unknown = replace(seen, panes=world.Unknown("x"))
    tmux = binding("two", heartbeat={"staleAfter": "1m"})
    assert lifecycle.last_heartbeat(agent(tmux, started_at=NOW), tmux, unknown) == NOW


def test_closed_thread_refuses_a_forced_wake() -> None:
    step = triggers.decide(state(closed=True), live_facts(forced=True), NOW)
    assert (step.kind, step.reason) == (triggers.Kind.DONE, Reason.THREAD_CLOSED)


def test_rejected_payload_fails_the_attempt() -> None:
    desired_ = state(policy={"template": "x\x1b[2J{thread}", "payload": {"controlChars": "reject"}})
    step = triggers.decide(desired_, live_facts(), NOW)
    assert (step.kind, step.reason) == (triggers.Kind.FAIL, Reason.PAYLOAD_REJECTED)


def test_agent_plan_add_before() -> None:
    out = agents.AgentPlan()
    out.add("before", A.ForgetLane("a", "/r/a", "x"))
    assert list(out.before) == ["a"]
