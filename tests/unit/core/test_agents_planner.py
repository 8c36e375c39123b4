"""The agent half of the planner, table-driven: what happens to an agent in each situation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.core import actions as A
from controller.core import agents, memory, planner, world
from tests.factories import (
    agent,
    binding,
    desired,
    lane,
    observed,
    pane,
    path,
    proc,
    record,
    tree,
)

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
S = world.AgentState


def ready(*records: world.AgentRecord, panes: Any = None, procs: Any = None) -> world.Observed:
    """Lane `a` converged, with these agent records alive unless told otherwise."""
    alive_panes = tuple(pane(r) for r in records if r.runtime == "tmux")
    alive_procs = {k: v for r in records for k, v in proc(r).items()}
    return replace(
        observed([tree("a")], records=[record("a")]),
        agents={r.binding: r for r in records},
        panes=alive_panes if panes is None else panes,
        processes=alive_procs if procs is None else procs,
    )


def plan(want: Any, seen: world.Observed, now: datetime = NOW) -> planner.Plan:
    return planner.plan(want, seen, {}, now)


def kinds(p: planner.Plan) -> list[str]:
    return [a.kind for a in p.actions]


def types(p: planner.Plan, lane_: str = "a") -> list[str]:
    return [c.type for c in p.conditions.get(lane_, ())]


def test_start_when_lane_ready() -> None:
    b = binding("one")
    p = plan(desired("a", b), ready())
    (start,) = p.actions
    assert isinstance(start, A.StartAgent)
    assert (start.participant, start.runtime, start.command) == ("one", "tmux", ("agent",))


def test_start_after_provisioning_in_the_same_chain() -> None:
    p = plan(desired("a", binding("one")), observed())
    assert kinds(p) == ["provision", "start-agent"]


def test_no_start_on_a_lane_that_cannot_be_used() -> None:
    seen = observed([tree("a", branch="other")], records=[record("a")])
    p = plan(desired("a", binding("one")), seen)
    assert p.actions == ()
    assert types(p) == ["BranchMismatch", "AgentWaiting"]


def test_alive_and_unchanged_is_left_alone() -> None:
    b = binding("one")
    assert plan(desired("a", b), ready(agent(b))).actions == ()


def test_changed_binding_restarts() -> None:
    b = binding("one")
    changed = binding("one", command=["agent", "--new"])
    assert kinds(plan(desired("a", changed), ready(agent(b)))) == ["stop-agent", "start-agent"]


def test_a_restart_for_a_changed_binding_names_the_fields_and_env_keys_only() -> None:
    b = binding("one", env={"API_KEY": "old-secret", "MODE": "dev"})
    changed = binding(
        "one", command=["agent", "--new"], env={"API_KEY": "new-secret", "MODE": "dev"}
    )
    halt, _ = plan(desired("a", changed), ready(agent(b))).actions
    assert isinstance(halt, A.StopAgent)
    assert halt.describe() == "restart one: command, env (API_KEY) changed"
    assert halt.to_json()["changes"] == [
        {"field": "command", "keys": []},
        {"field": "env", "keys": ["API_KEY"]},
    ]
    shown = f"{halt.describe()} {halt.reason} {halt.to_json()}"
    assert "secret" not in shown


def test_a_restart_of_an_agent_recorded_without_digests_still_says_why() -> None:
    b = binding("one")
    changed = binding("one", command=["agent", "--new"])
    halt, _ = plan(desired("a", changed), ready(agent(b, spec_fields={}))).actions
    assert halt.describe() == "restart one: binding changed"


def test_death_is_recorded_and_first_restart_is_immediate() -> None:
    b = binding("one")
    r = agent(b, started_at=NOW - timedelta(seconds=30))
    seen = ready(r, panes=(pane(r, dead=True, dead_status=1),), procs={})
    p = plan(desired("a", b), seen)
    assert kinds(p) == ["record-exit", "start-agent"]
    exit_ = p.actions[0]
    assert isinstance(exit_, A.RecordExit) and exit_.exit is not None
    assert exit_.exit.last_exit == 1


def test_second_death_in_a_row_waits() -> None:
    b = binding("one")
    r = agent(b, consecutive=1, started_at=NOW - timedelta(seconds=30))
    p = plan(desired("a", b), ready(r, panes=(), procs={}))
    assert kinds(p) == ["record-exit"]
    assert types(p) == ["AgentRestarting"]


def test_due_restart_happens_later() -> None:
    b = binding("one")
    r = agent(b, S.EXITED, next_start_at=NOW + timedelta(seconds=10))
    assert plan(desired("a", b), ready(r, panes=(), procs={})).actions == ()
    later = plan(desired("a", b), ready(r, panes=(), procs={}), NOW + timedelta(seconds=10))
    assert kinds(later) == ["start-agent"]


def test_clean_exit_with_on_failure_is_not_restarted() -> None:
    b = binding("one")
    r = agent(b)
    p = plan(desired("a", b), ready(r, panes=(pane(r, dead=True, dead_status=0),), procs={}))
    assert kinds(p) == ["record-exit"]
    assert types(p) == ["AgentExited"]


def test_crash_loop_blocks_and_stays_blocked() -> None:
    b = binding("one", crashLoop={"deaths": 2, "within": "10m"})
    r = agent(b, deaths=(NOW - timedelta(minutes=1),), consecutive=1)
    p = plan(desired("a", b), ready(r, panes=(), procs={}))
    assert kinds(p) == ["record-exit"]
    assert types(p) == ["CrashLoop"]
    blocked = agent(b, S.BLOCKED, blocked="crash loop")
    again = plan(desired("a", b), ready(blocked, panes=(), procs={}))
    assert again.actions == ()
    assert types(again) == ["CrashLoop"]


def test_unknown_tmux_changes_nothing() -> None:
    b, fresh = binding("one"), binding("two")
    r = agent(b)
    seen = ready(r, panes=world.Unknown("server hung"))
    p = plan(desired("a", b, fresh), seen)
    assert p.actions == ()
    assert types(p) == ["AgentUnknown", "AgentUnknown"]


def test_unknown_process_table_changes_nothing() -> None:
    b = binding("one", runtime="process")
    p = plan(desired("a", b), ready(agent(b), procs=world.Unknown("no /proc")))
    assert p.actions == ()


def test_stale_agent_is_replaced() -> None:
    b = binding("one", heartbeat={"staleAfter": "30m"})
    r = agent(b, started_at=NOW - timedelta(hours=2))
    seen = ready(r, panes=(pane(r, activity=NOW - timedelta(hours=1)),))
    p = plan(desired("a", b), seen)
    assert kinds(p) == ["stop-agent", "start-agent"]
    stop = p.actions[0]
    assert isinstance(stop, A.StopAgent) and stop.exit is not None
    assert "stale" in stop.reason


def test_suspended_lane_stops_agents_and_keeps_worktree() -> None:
    b = binding("one")
    p = plan(desired(lane("a", suspend=True), b), ready(agent(b)))
    assert kinds(p) == ["stop-agent"]
    assert types(p) == ["Suspended"]


def test_stopped_agent_starts_when_lane_resumes() -> None:
    b = binding("one")
    r = agent(b, S.STOPPED, window_id=None, pane_id=None)
    assert kinds(plan(desired("a", b), ready(r, panes=(), procs={}))) == ["start-agent"]


def test_removed_binding_is_stopped_and_forgotten() -> None:
    b = binding("one")
    p = plan(desired("a"), ready(agent(b)))
    assert kinds(p) == ["remove-agent"]
    assert p.actions[0].change == A.Change.DESTROY


def test_lane_removal_stops_agents_first() -> None:
    b = binding("one")
    p = plan(desired("keep"), ready(agent(b)))
    assert [(a.kind, a.lane) for a in p.actions] == [
        ("remove-agent", "a"),
        ("remove", "a"),
        ("provision", "keep"),
    ]


def test_pane_the_controller_started_without_a_record_is_closed() -> None:
    b = binding("one")
    r = agent(b)
    stray = world.Pane("$1", "@9", "%9", 4242, session_name="a", binding="one")
    seen = replace(ready(r, panes=(pane(r), stray)), unrecorded={4242: world.Proc(4242, 7.5)})
    (kill,) = plan(desired("a", b), seen).actions
    assert isinstance(kill, A.KillStray)
    assert (kill.window_id, kill.pane_id, kill.pid, kill.created) == ("@9", "%9", 4242, 7.5)


def test_windows_and_panes_people_open_are_left_alone() -> None:
    b = binding("one")
    r = agent(b)
    window = world.Pane("$1", "@9", "%9", 4242, session_name="a")  # Ctrl-b c
    split = world.Pane("$1", "@1", "%5", 4343, session_name="a")  # Ctrl-b % in the agent's
    other = world.Pane("$2", "@7", "%7", 4444, session_name="scratch")  # their own session
    seen = ready(r, panes=(pane(r), window, split, other))
    assert plan(desired("a", b), seen).actions == ()


def test_env_values_never_in_plan_json() -> None:
    b = binding("one", env={"API_TOKEN": "hunter2"})
    (start,) = plan(desired("a", b), ready()).actions
    assert "hunter2" not in str(start.to_json())
    assert "hunter2" not in start.describe()


def test_agent_outside_the_server_is_replaced_not_duplicated() -> None:
    b = binding("one")
    r = agent(b)
    p = plan(desired("a", b), ready(r, panes=()))  # process alive, window not on this server
    assert kinds(p) == ["stop-agent", "start-agent"]
    stop = p.actions[0]
    assert isinstance(stop, A.StopAgent) and stop.pid == r.pid


def test_removed_binding_keeps_its_own_grace() -> None:
    b = binding("one")
    p = plan(desired("a"), ready(agent(b, stop_grace=2.5)))
    (remove,) = p.actions
    assert isinstance(remove, A.RemoveAgent) and remove.grace == 2.5


def test_agent_in_a_re_created_worktree_is_restarted_after_it() -> None:
    b = binding("one")
    r = agent(b)
    gone = replace(ready(r), worktrees=observed([tree("a", prunable="gitdir missing")]).worktrees)
    assert kinds(plan(desired("a", b), gone)) == ["stop-agent", "prune", "provision", "start-agent"]
    forgotten = replace(ready(r), worktrees=observed().worktrees, root_entries=())
    assert kinds(plan(desired("a", b), forgotten)) == ["stop-agent", "provision", "start-agent"]


def test_agent_whose_worktree_was_deleted_under_it_is_restarted() -> None:
    b = binding("one")
    r = agent(b)
    assert r.pid is not None and r.pid_created is not None
    moved = world.Proc(r.pid, r.pid_created, cwd=path("a"), cwd_deleted=True)
    p = plan(desired("a", b), ready(r, procs={r.pid: moved}))
    assert kinds(p) == ["stop-agent", "start-agent"]
    assert "deleted under it" in p.actions[0].reason
    elsewhere = world.Proc(r.pid, r.pid_created, cwd=path("a") + "/build", cwd_deleted=True)
    assert plan(desired("a", b), ready(r, procs={r.pid: elsewhere})).actions == ()


def test_binding_moved_to_a_renamed_lane_is_stopped_before_the_old_lane_goes() -> None:
    b = binding("one", lane_="b")
    r = agent(binding("one"))  # recorded in lane a
    p = plan(desired("b", b), ready(r))
    assert [(a.kind, a.lane) for a in p.actions] == [
        ("stop-agent", "a"),
        ("remove", "a"),
        ("provision", "b"),
        ("start-agent", "b"),
    ]
    stop, start = p.actions[0], p.actions[-1]
    assert isinstance(stop, A.StopAgent) and stop.path == path("a") and stop.pane_id == "%1"
    assert isinstance(start, A.StartAgent) and start.moved_from == "a"


def test_participant_with_a_binding_in_another_lane_starts_after_the_old_one_stops() -> None:
    old = agent(binding("a-one", participant="one"))
    p = plan(desired("a", "b", binding("b-one", "b", participant="one")), ready(old))
    assert [(a.kind, a.lane) for a in p.actions] == [
        ("remove-agent", "a"),
        ("provision", "b"),
        ("start-agent", "b"),
    ]
    start = p.actions[-1]
    assert isinstance(start, A.StartAgent) and start.moved_from == "a"


def test_move_waits_while_the_old_lane_is_held_back() -> None:
    b = binding("one", lane_="b")
    held = {"a": memory.LaneMemory(failures=1, next_attempt_at=NOW + timedelta(minutes=1))}
    p = planner.plan(desired("b", b), ready(agent(binding("one"))), held, NOW)
    assert kinds(p) == ["provision"]
    assert [a.kind for a in p.pending] == ["stop-agent", "remove"]
    assert [c.reason for c in p.conditions["b"]] == ["PreviousAgentRunning"]


def test_dead_agent_of_a_moved_binding_starts_in_its_new_lane() -> None:
    b = binding("one", lane_="b")
    r = agent(binding("one"), S.EXITED, next_start_at=NOW, session_id="$7")
    seen = replace(
        ready(r, panes=(), procs={}), worktrees=observed([tree("a"), tree("b")]).worktrees
    )
    seen = replace(seen, records={**seen.records, "b": record("b")})
    (start,) = plan(desired("a", "b", b), seen).actions
    assert isinstance(start, A.StartAgent)
    assert (start.lane, start.session_id, start.moved_from) == ("b", None, None)


def test_every_stop_comes_before_the_lanes_own_actions() -> None:
    b = binding("one", heartbeat={"staleAfter": "30m"})
    r = agent(b, started_at=NOW - timedelta(hours=2))
    stale = ready(r, panes=(pane(r, activity=NOW - timedelta(hours=1)),))
    quarantined = replace(stale, worktrees=observed().worktrees)  # a plain directory now
    assert kinds(plan(desired("a", b), quarantined)) == [
        "stop-agent",
        "quarantine",
        "provision",
        "start-agent",
    ]
    suspended = desired(lane("a", suspend=True), b)
    assert kinds(plan(suspended, quarantined)) == ["stop-agent", "quarantine", "provision"]


def test_moved_agent_waits_for_its_new_lane() -> None:
    b = binding("one", lane_="b")
    seen = ready(agent(binding("one")))
    seen = replace(seen, worktrees=observed([tree("a"), tree("b", branch="other")]).worktrees)
    p = planner.plan(desired("a", lane("b", branch="lane/b"), b), seen, {}, NOW)
    assert [(a.kind, a.lane) for a in p.actions] == [("stop-agent", "a")]
    assert types(p, "b") == ["BranchMismatch", "AgentWaiting"]


def test_move_between_two_converged_lanes_waits_for_the_old_lanes_backoff() -> None:
    b = binding("one", lane_="b")
    seen = ready(agent(binding("one")))
    seen = replace(seen, worktrees=observed([tree("a"), tree("b")]).worktrees)
    seen = replace(seen, records={**seen.records, "b": record("b")})
    held = {"a": memory.LaneMemory(failures=1, next_attempt_at=NOW + timedelta(minutes=1))}
    p = planner.plan(desired("a", "b", b), seen, held, NOW)
    assert p.actions == () and [a.kind for a in p.pending] == ["stop-agent"]
    assert types(p, "b") == ["AgentWaiting"]
    moves = planner.plan(desired("a", "b", b), seen, {}, NOW)
    assert [(a.kind, a.lane) for a in moves.actions] == [("stop-agent", "a"), ("start-agent", "b")]


def test_a_wake_fallback_starts_the_binding_as_the_planner_does_with_its_own_command() -> None:
    b = binding("w", env={"K": "v"}, stopGraceSeconds=30)
    planned = agents.start(b, ready(), path=path("a"), reason="binding has no agent yet")
    resumed = agents.start(b, None, path=path("a"), reason="fallback", command=("agent", "-r"))
    assert resumed == replace(planned, reason="fallback", command=("agent", "-r"), session_id=None)
    assert (resumed.grace, resumed.env) == (30.0, (("K", "v"),))
