"""Planning agents: start, restart, stop and forget the processes bound to lanes. Pure.

It decides from the inventory (agent records), the observed panes and processes, and the
bindings: start what is missing, record deaths and restart by policy (with backoff and
crash-loop blocking), kill stale agents, restart changed ones and those whose worktree was
re-created under them, move agents whose binding moved to another lane, stop agents of
suspended lanes, forget agents whose binding is gone, adopt live agents the inventory lost, and
close the controller's own stray panes (see ``strays``). Nothing is started, restarted or
stopped on an unknown observation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from controller.core import actions, lifecycle, strays, world
from controller.core.lifecycle import Life
from controller.core.workflows import expansion
from controller.spec.binding import Binding
from controller.spec.state import DesiredState

State = world.AgentState
WORKSPACE_WIDE = strays.WORKSPACE_WIDE
RUNNING = (Life.ALIVE, Life.ORPHANED)  # a process is there to stop


@dataclass(slots=True)
class AgentPlan:
    """Agent actions per lane: ``before`` runs ahead of the lane's own actions (every stop: a
    stop never needs the worktree, and a removal or re-creation needs it done), ``after``
    behind them (starts after provisioning)."""

    before: dict[str, list[actions.Action]] = field(default_factory=dict)
    after: dict[str, list[actions.Action]] = field(default_factory=dict)
    conditions: dict[str, list[world.Condition]] = field(default_factory=dict)
    adopted: list[actions.AdoptAgent] = field(default_factory=list)  # this pass

    def add(self, where: str, *steps: actions.Action) -> None:
        target = self.before if where == "before" else self.after
        for step in steps:
            target.setdefault(step.lane, []).append(step)

    def note(self, lane: str, type_: str, reason: str, message: str) -> None:
        self.conditions.setdefault(lane, []).append(world.Condition(type_, reason, message))


@dataclass(frozen=True, slots=True)
class Lanes:
    """Where each lane stands this pass, as the planner sees it."""

    paths: Mapping[str, str]  # lane -> worktree path
    usable: frozenset[str] = frozenset()  # worktree on its branch, or made earlier this pass
    rebuilt: frozenset[str] = frozenset()  # worktree (re-)created this pass after it vanished


def plan_agents(
    desired: DesiredState,
    observed: world.Observed,
    now: datetime,
    *,
    paths: Mapping[str, str],
    usable: frozenset[str],
    rebuilt: frozenset[str] = frozenset(),
) -> AgentPlan:
    """Agent actions for one pass.

    ``paths`` maps each lane to its worktree path; ``usable`` names the lanes whose worktree
    exists on its branch (or is created earlier in this pass), where agents may start;
    ``rebuilt`` the lanes whose worktree this pass re-creates (their running agents work in a
    deleted directory, so they are restarted).
    """
    out = AgentPlan()
    lanes = Lanes(paths, usable, rebuilt)
    for binding in desired.bindings.values():
        _plan_binding(out, binding, desired, observed, now, lanes=lanes)
    for record in observed.agents.values():
        if record.binding not in desired.bindings:
            _plan_orphan(out, record, observed, paths.get(record.lane, ""))
    out.add("before", *strays.stray_panes(observed, adopted=out.adopted))
    out.add("before", *strays.stray_processes(observed, adopted=out.adopted))
    _order_moves(out)
    return out


def _plan_binding(
    out: AgentPlan,
    binding: Binding,
    desired: DesiredState,
    observed: world.Observed,
    now: datetime,
    *,
    lanes: Lanes,
) -> None:
    lane = binding.spec.lane
    path, usable = lanes.paths[lane], lane in lanes.usable
    record = observed.agents.get(binding.name)
    if desired.lanes[lane].spec.suspend:
        _plan_suspended(out, binding, record, observed, lanes)
        return
    if record is None:
        _plan_first_start(out, binding, observed, path=path, usable=usable)
        return
    if record.state == State.STARTING:
        _plan_interrupted_start(out, binding, record, observed, now, path=path, usable=usable)
        return
    seen = lifecycle.liveness(record, observed)
    why = _replace_why(record, binding, observed, seen, lanes=lanes)
    if seen.life == Life.UNKNOWN:
        out.note(lane, "AgentUnknown", "SourceUnreadable", f"{binding.name}: {seen.reason}")
    elif seen.life == Life.SETTLING:
        out.note(lane, "AgentUnknown", "Settling", f"{binding.name}: {seen.reason}")
    elif why is not None:
        _plan_replace(out, binding, record, observed, why=why, lanes=lanes)
    elif record.state == State.BLOCKED:
        out.note(lane, "CrashLoop", "Blocked", f"{binding.name}: {record.blocked}")
    elif seen.life == Life.ALIVE:
        _plan_alive(out, binding, record, observed, now, path=path)
    else:
        _plan_dead(out, binding, record, seen, now, observed, path=path, usable=usable)


def _replace_why(
    record: world.AgentRecord,
    binding: Binding,
    observed: world.Observed,
    seen: lifecycle.Seen,
    *,
    lanes: Lanes,
) -> str | None:
    """Why a running agent must be stopped and started again whatever its policy, if it must."""
    if seen.life not in RUNNING:
        return None
    if record.lane != binding.spec.lane:
        return f"its binding moved from lane {record.lane} to {binding.spec.lane}"
    if record.lane in lanes.rebuilt:
        return "its worktree is re-created; the agent runs in the deleted one"
    procs = observed.processes
    proc = None if isinstance(procs, world.Unknown) else procs.get(record.pid or -1)
    if proc is not None and proc.stranded_in(lanes.paths[record.lane]):
        return "its worktree was deleted under it (re-created since)"
    return seen.reason if seen.life == Life.ORPHANED else None


def _plan_replace(
    out: AgentPlan,
    binding: Binding,
    record: world.AgentRecord,
    observed: world.Observed,
    *,
    why: str,
    lanes: Lanes,
) -> None:
    lane = binding.spec.lane
    out.add("before", stop(binding, record, path=lanes.paths.get(record.lane, ""), reason=why))
    if lane in lanes.usable:
        out.add("after", start(binding, observed, path=lanes.paths[lane], reason="start it again"))
    else:
        message = f"{binding.name}: waiting for the worktree"
        out.note(lane, "AgentWaiting", "LaneNotReady", message)


def _plan_first_start(
    out: AgentPlan, binding: Binding, observed: world.Observed, *, path: str, usable: bool
) -> None:
    lane = binding.spec.lane
    adopt = strays.adoption(binding, observed, path=path)
    if adopt is not None:
        out.add("after", adopt)  # after the lane's own actions: a lost store adopts both
        out.adopted.append(adopt)
    elif not usable:
        out.note(lane, "AgentWaiting", "LaneNotReady", f"{binding.name}: waiting for the worktree")
    elif binding.spec.runtime == "tmux" and isinstance(observed.panes, world.Unknown):
        out.note(lane, "AgentUnknown", "SourceUnreadable", f"tmux: {observed.panes.reason}")
    else:
        out.add("after", start(binding, observed, path=path, reason="binding has no agent yet"))


def _plan_interrupted_start(
    out: AgentPlan,
    binding: Binding,
    record: world.AgentRecord,
    observed: world.Observed,
    now: datetime,
    *,
    path: str,
    usable: bool,
) -> None:
    """A start recorded but never completed: the controller stopped between writing the
    record and recording the launched process. Adopt the agent if it runs; record its exit if
    it ran and ended (its exit file, or its dead pane); start it only if it never ran."""
    lane = binding.spec.lane
    tmux = binding.spec.runtime == "tmux"
    for source in (observed.processes, observed.panes if tmux else None):
        if isinstance(source, world.Unknown):
            out.note(lane, "AgentUnknown", "SourceUnreadable", f"{binding.name}: {source.reason}")
            return
    adopt = strays.adoption(binding, observed, path=path)
    if adopt is not None:
        out.add("after", adopt)
        out.adopted.append(adopt)
        return
    ended = _ended_launch(binding, observed)
    if ended is not None:
        seen = lifecycle.Seen(Life.DEAD, ended[0], "it ended while its start was being recorded")
        running = replace(record, state=State.RUNNING)
        _plan_dead(out, binding, running, seen, now, observed, path=path, usable=usable)
    elif usable:
        why = "its start was interrupted before the launch"
        out.add("after", start(binding, observed, path=path, reason=why, record=record))
    else:
        out.note(lane, "AgentWaiting", "LaneNotReady", f"{binding.name}: waiting for the worktree")


def _ended_launch(binding: Binding, observed: world.Observed) -> tuple[int | None] | None:
    """The exit status of the binding's launch that ended unrecorded, if it ran at all.

    A process-runtime launcher writes an exit file (removed before the start was recorded);
    a tmux pane stays, dead, with its status (``remain-on-exit``)."""
    if binding.spec.runtime == "process":
        code = observed.exits.get(binding.name)
        return None if code is None else (code,)
    if isinstance(observed.panes, world.Unknown):
        return None
    dead = [p for p in strays.unowned_panes(observed) if p.binding == binding.name and p.dead]
    return (dead[0].dead_status,) if dead else None


def _plan_suspended(
    out: AgentPlan,
    binding: Binding,
    record: world.AgentRecord | None,
    observed: world.Observed,
    lanes: Lanes,
) -> None:
    lane = binding.spec.lane
    out.note(lane, "Suspended", "LaneSuspended", f"{binding.name}: not running (spec.suspend)")
    if record is not None and lifecycle.liveness(record, observed).life in RUNNING:
        path = lanes.paths.get(record.lane, "")
        out.add("before", stop(binding, record, path=path, reason="the lane is suspended"))


def _plan_alive(
    out: AgentPlan,
    binding: Binding,
    record: world.AgentRecord,
    observed: world.Observed,
    now: datetime,
    *,
    path: str,
) -> None:
    if record.spec_hash != lifecycle.spec_hash(binding):
        now_fields = dict(lifecycle.spec_fields(binding))
        changes = lifecycle.changed_fields(record.spec_fields, now_fields)
        halt = stop(binding, record, path=path, reason="the binding changed")
        out.add("before", replace(halt, changes=changes))
        out.add("after", start(binding, observed, path=path, reason="restart with the new spec"))
    elif lifecycle.is_stale(record, binding, observed, now):
        decision = lifecycle.after_death(record, binding, exit_code=None, now=now)
        assert binding.spec.heartbeat is not None
        why = f"no heartbeat for {binding.spec.heartbeat.stale_after:g}s (stale)"
        out.add("before", stop(binding, record, path=path, reason=why, exit=decision))
        if decision.next_start_at is not None and decision.next_start_at <= now:
            out.add("after", start(binding, observed, path=path, reason="replace the stale agent"))


def _plan_dead(
    out: AgentPlan,
    binding: Binding,
    record: world.AgentRecord,
    seen: lifecycle.Seen,
    now: datetime,
    observed: world.Observed,
    *,
    path: str,
    usable: bool,
) -> None:
    lane = binding.spec.lane
    due = record.next_start_at
    status = record.last_exit
    if record.state == State.RUNNING:
        decision = lifecycle.after_death(record, binding, exit_code=seen.exit_code, now=now)
        out.add("after", _record_exit(binding, path, decision, seen.reason))
        due, status = decision.next_start_at, decision.last_exit
        if decision.blocked is not None:
            out.note(lane, "CrashLoop", "Blocked", f"{binding.name}: {decision.blocked}")
            return
    elif record.state == State.STOPPED and due is None:
        due = now  # stopped on purpose (suspended, changed): start again as soon as allowed
    if due is None:
        shown = "unknown" if status is None else str(status)
        message = (
            f"{binding.name}: exited (status {shown}); restart policy is {binding.spec.restart}"
        )
        out.note(lane, "AgentExited", "NotRestarted", message)
    elif due > now or not usable:
        when = due.isoformat(timespec="seconds")
        out.note(lane, "AgentRestarting", "Backoff", f"{binding.name}: restarts at {when}")
    else:
        reason = f"restart policy {binding.spec.restart}"
        out.add("after", start(binding, observed, path=path, reason=reason, record=record))


def _plan_orphan(
    out: AgentPlan, record: world.AgentRecord, observed: world.Observed, path: str
) -> None:
    seen = lifecycle.liveness(record, observed)
    if seen.life in (Life.UNKNOWN, Life.SETTLING):
        code = "SourceUnreadable" if seen.life == Life.UNKNOWN else "Settling"
        out.note(record.lane, "AgentUnknown", code, f"{record.binding}: {seen.reason}")
        return
    alive = seen.life in RUNNING
    remove = actions.RemoveAgent(
        record.lane,
        path,
        "its binding is no longer declared",
        binding=record.binding,
        participant=record.participant,
        runtime=record.runtime,
        pid=record.pid if alive else None,
        pid_created=record.pid_created,
        window_id=record.window_id,
        pane_id=record.pane_id,
        grace=record.stop_grace,
    )
    out.add("before", remove)


def _order_moves(out: AgentPlan) -> None:
    """A start whose binding (or participant) has a live agent stopped in another lane this
    pass waits for that lane's stops: two copies never run, and the stop is never undone."""
    stopping: dict[str, str] = {}
    for lane, chain in out.before.items():
        for step in chain:
            if isinstance(step, actions.StopAgent) and step.pid is not None:
                stopping[f"binding:{step.binding}"] = lane
                stopping[f"participant:{step.participant}"] = lane
    for lane, chain in out.after.items():
        for index, step in enumerate(chain):
            if not isinstance(step, actions.StartAgent):
                continue
            old = stopping.get(f"binding:{step.binding}")
            old = old or stopping.get(f"participant:{step.participant}")
            if old is not None and old != lane:
                chain[index] = replace(step, moved_from=old)


def start(
    binding: Binding,
    observed: world.Observed | None,
    *,
    path: str,
    reason: str,
    record: world.AgentRecord | None = None,
    command: Sequence[str] | None = None,
) -> actions.StartAgent:
    """The action that starts ``binding``'s agent (in the session its last run had, if that
    was in the same lane: tmux may not show it if the window closed).

    ``command`` replaces the binding's own (a wake's resume or spawn fallback); without
    ``observed`` (outside a pass) the session is the recorded one, or a new one.
    """
    s = binding.spec
    session = _session_of(observed, s.lane) if observed is not None else None
    if session is None and record is not None and record.lane == s.lane:
        session = record.session_id
    return actions.StartAgent(
        s.lane,
        path,
        reason,
        binding=binding.name,
        participant=s.participant,
        runtime=s.runtime,
        command=tuple(s.command if command is None else command),
        env=tuple(sorted(s.env.items())),
        spec_hash=lifecycle.spec_hash(binding),
        spec_fields=lifecycle.spec_fields(binding),
        session_id=session,
        grace=s.stop_grace_seconds,
        split_stderr=expansion.is_task(binding),
    )


def stop(
    binding: Binding,
    record: world.AgentRecord,
    *,
    path: str,
    reason: str,
    exit: lifecycle.ExitDecision | None = None,
) -> actions.StopAgent:
    """The action that stops ``binding``'s running agent, in the lane it runs in."""
    return actions.StopAgent(
        record.lane,
        path,
        reason,
        binding=binding.name,
        participant=record.participant,
        runtime=record.runtime,
        pid=record.pid,
        pid_created=record.pid_created,
        window_id=record.window_id,
        pane_id=record.pane_id,
        grace=binding.spec.stop_grace_seconds,
        exit=exit,
    )


def _record_exit(
    binding: Binding, path: str, decision: lifecycle.ExitDecision, why: str
) -> actions.RecordExit:
    return actions.RecordExit(
        binding.spec.lane,
        path,
        why,
        binding=binding.name,
        participant=binding.spec.participant,
        runtime=binding.spec.runtime,
        exit=decision,
    )


def _session_of(observed: world.Observed, lane: str) -> str | None:
    if isinstance(observed.panes, world.Unknown):
        return None
    return next((p.session_id for p in observed.panes if p.session_name == lane), None)
