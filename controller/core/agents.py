"""Planning agents: start, restart, stop and forget the processes bound to lanes. Pure.

It decides from the inventory (agent records), the observed panes and processes, and the
bindings: start what is missing, record deaths and restart by policy (with backoff and
crash-loop blocking), kill stale agents, restart changed ones, stop agents of suspended lanes,
forget agents whose binding is gone, and close stray windows. Nothing is started, restarted or
stopped on an unknown observation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from controller.core import actions, lifecycle, world
from controller.core.lifecycle import Life
from controller.core.workflows import expansion
from controller.spec.binding import Binding
from controller.spec.state import DesiredState

State = world.AgentState
WORKSPACE_WIDE = "-"  # the "lane" of actions that belong to no lane (never a valid lane name)


@dataclass(slots=True)
class AgentPlan:
    """Agent actions per lane: ``before`` runs ahead of the lane's own actions (stops ahead of a
    removal), ``after`` behind them (starts after provisioning)."""

    before: dict[str, list[actions.Action]] = field(default_factory=dict)
    after: dict[str, list[actions.Action]] = field(default_factory=dict)
    conditions: dict[str, list[world.Condition]] = field(default_factory=dict)

    def add(self, where: str, *steps: actions.Action) -> None:
        target = self.before if where == "before" else self.after
        for step in steps:
            target.setdefault(step.lane, []).append(step)

    def note(self, lane: str, type_: str, reason: str, message: str) -> None:
        self.conditions.setdefault(lane, []).append(world.Condition(type_, reason, message))


def plan_agents(
    desired: DesiredState,
    observed: world.Observed,
    now: datetime,
    *,
    paths: Mapping[str, str],
    usable: frozenset[str],
) -> AgentPlan:
    """Agent actions for one pass.

    ``paths`` maps each lane to its worktree path; ``usable`` names the lanes whose worktree
    exists on its branch (or is created earlier in this pass), where agents may start.
    """
    out = AgentPlan()
    for binding in desired.bindings.values():
        _plan_binding(out, binding, desired, observed, now, paths=paths, usable=usable)
    for record in observed.agents.values():
        if record.binding not in desired.bindings:
            _plan_orphan(out, record, observed, paths.get(record.lane, ""))
    _plan_strays(out, observed)
    _plan_stray_processes(out, observed)
    return out


def _plan_stray_processes(out: AgentPlan, observed: world.Observed) -> None:
    """Process-runtime launchers of this workspace that no agent record owns."""
    owned = {a.pid for a in observed.agents.values() if a.pid is not None}
    for pid, proc in sorted(observed.launched.items()):
        if pid not in owned and not proc.zombie:
            reason = "no agent record owns it (its start was never recorded)"
            out.add("before", actions.KillStrayProcess(WORKSPACE_WIDE, "", reason, pid=pid,
                                                       created=proc.created))  # fmt: skip


def _plan_binding(
    out: AgentPlan,
    binding: Binding,
    desired: DesiredState,
    observed: world.Observed,
    now: datetime,
    *,
    paths: Mapping[str, str],
    usable: frozenset[str],
) -> None:
    lane = binding.spec.lane
    record = observed.agents.get(binding.name)
    if desired.lanes[lane].spec.suspend:
        _plan_suspended(out, binding, record, observed, paths[lane])
        return
    if record is None:
        _plan_first_start(out, binding, observed, path=paths[lane], usable=lane in usable)
        return
    seen = lifecycle.liveness(record, observed)
    if seen.life == Life.UNKNOWN:
        out.note(lane, "AgentUnknown", "SourceUnreadable", f"{binding.name}: {seen.reason}")
    elif seen.life == Life.SETTLING:
        out.note(lane, "AgentUnknown", "Settling", f"{binding.name}: {seen.reason}")
    elif seen.life == Life.ORPHANED:
        out.add("after", stop(binding, record, path=paths[lane], reason=seen.reason))
        out.add("after", start(binding, observed, path=paths[lane], reason="start it here"))
    elif record.state == State.BLOCKED:
        out.note(lane, "CrashLoop", "Blocked", f"{binding.name}: {record.blocked}")
    elif seen.life == Life.ALIVE:
        _plan_alive(out, binding, record, observed, now, path=paths[lane])
    else:
        _plan_dead(out, binding, record, seen, now, path=paths[lane], usable=lane in usable)


def _plan_first_start(
    out: AgentPlan, binding: Binding, observed: world.Observed, *, path: str, usable: bool
) -> None:
    lane = binding.spec.lane
    if not usable:
        out.note(lane, "AgentWaiting", "LaneNotReady", f"{binding.name}: waiting for the worktree")
    elif binding.spec.runtime == "tmux" and isinstance(observed.panes, world.Unknown):
        out.note(lane, "AgentUnknown", "SourceUnreadable", f"tmux: {observed.panes.reason}")
    else:
        out.add("after", start(binding, observed, path=path, reason="binding has no agent yet"))


def _plan_suspended(
    out: AgentPlan,
    binding: Binding,
    record: world.AgentRecord | None,
    observed: world.Observed,
    path: str,
) -> None:
    lane = binding.spec.lane
    out.note(lane, "Suspended", "LaneSuspended", f"{binding.name}: not running (spec.suspend)")
    running = (Life.ALIVE, Life.ORPHANED)
    if record is not None and lifecycle.liveness(record, observed).life in running:
        out.add("after", stop(binding, record, path=path, reason="the lane is suspended"))


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
        out.add("after", stop(binding, record, path=path, reason="the binding changed"))
        out.add("after", start(binding, observed, path=path, reason="restart with the new spec"))
    elif lifecycle.is_stale(record, binding, observed, now):
        decision = lifecycle.after_death(record, binding, exit_code=None, now=now)
        assert binding.spec.heartbeat is not None
        why = f"no heartbeat for {binding.spec.heartbeat.stale_after:g}s (stale)"
        out.add("after", stop(binding, record, path=path, reason=why, exit=decision))
        if decision.next_start_at is not None and decision.next_start_at <= now:
            out.add("after", start(binding, observed, path=path, reason="replace the stale agent"))


def _plan_dead(
    out: AgentPlan,
    binding: Binding,
    record: world.AgentRecord,
    seen: lifecycle.Seen,
    now: datetime,
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
    _plan_restart(out, binding, status, now, path=path, due=due, usable=usable, record=record)


def _plan_restart(
    out: AgentPlan,
    binding: Binding,
    last_exit: int | None,
    now: datetime,
    *,
    path: str,
    due: datetime | None,
    usable: bool,
    record: world.AgentRecord,
) -> None:
    lane = binding.spec.lane
    if due is None:
        status = "unknown" if last_exit is None else str(last_exit)
        out.note(lane, "AgentExited", "NotRestarted",
                 f"{binding.name}: exited (status {status}); restart policy is "
                 f"{binding.spec.restart}")  # fmt: skip
    elif due > now or not usable:
        when = due.isoformat(timespec="seconds")
        out.note(lane, "AgentRestarting", "Backoff", f"{binding.name}: restarts at {when}")
    else:
        reason = f"restart policy {binding.spec.restart}"
        out.add("after", start_from(binding, record, path=path, reason=reason))


def _plan_orphan(
    out: AgentPlan, record: world.AgentRecord, observed: world.Observed, path: str
) -> None:
    seen = lifecycle.liveness(record, observed)
    if seen.life in (Life.UNKNOWN, Life.SETTLING):
        code = "SourceUnreadable" if seen.life == Life.UNKNOWN else "Settling"
        out.note(record.lane, "AgentUnknown", code, f"{record.binding}: {seen.reason}")
        return
    alive = seen.life in (Life.ALIVE, Life.ORPHANED)
    out.add(
        "before",
        actions.RemoveAgent(
            record.lane, path, "its binding is no longer declared",
            binding=record.binding, participant=record.participant, runtime=record.runtime,
            pid=record.pid if alive else None, pid_created=record.pid_created,
            window_id=record.window_id, grace=record.stop_grace,
        ),
    )  # fmt: skip


def _plan_strays(out: AgentPlan, observed: world.Observed) -> None:
    """Windows of the controller's own tmux server that no agent record owns."""
    if isinstance(observed.panes, world.Unknown):
        return
    owned = {r.window_id for r in observed.agents.values() if r.window_id}
    windows: dict[str, list[world.Pane]] = {}
    for pane in observed.panes:
        windows.setdefault(pane.window_id, []).append(pane)
    for window_id, panes in sorted(windows.items()):
        if window_id in owned:
            continue
        lane = panes[0].session_name or WORKSPACE_WIDE
        pids = tuple(p.pid for p in panes if p.pid and not p.dead)
        out.add(
            "before",
            actions.KillStray(
                lane, "", "no binding owns this window", window_id=window_id, pids=pids
            ),
        )


def start(
    binding: Binding, observed: world.Observed, *, path: str, reason: str
) -> actions.StartAgent:
    """The action that starts ``binding``'s agent."""
    s = binding.spec
    return actions.StartAgent(
        s.lane,
        path,
        reason,
        binding=binding.name,
        participant=s.participant,
        runtime=s.runtime,
        command=tuple(s.command),
        env=tuple(sorted(s.env.items())),
        spec_hash=lifecycle.spec_hash(binding),
        session_id=_session_of(observed, s.lane),
        grace=s.stop_grace_seconds,
        split_stderr=expansion.is_task(binding),
    )


def start_from(
    binding: Binding, record: world.AgentRecord, *, path: str, reason: str
) -> actions.StartAgent:
    """A restart: like ``start``, in the session the agent had."""
    s = binding.spec
    return actions.StartAgent(
        s.lane, path, reason,
        binding=binding.name, participant=s.participant, runtime=s.runtime,
        command=tuple(s.command), env=tuple(sorted(s.env.items())),
        spec_hash=lifecycle.spec_hash(binding), session_id=record.session_id,
        grace=s.stop_grace_seconds, split_stderr=expansion.is_task(binding),
    )  # fmt: skip


def stop(
    binding: Binding,
    record: world.AgentRecord,
    *,
    path: str,
    reason: str,
    exit: lifecycle.ExitDecision | None = None,
) -> actions.StopAgent:
    """The action that stops ``binding``'s running agent."""
    return actions.StopAgent(
        record.lane, path, reason,
        binding=binding.name, participant=record.participant, runtime=record.runtime,
        pid=record.pid, pid_created=record.pid_created, window_id=record.window_id,
        grace=binding.spec.stop_grace_seconds, exit=exit,
    )  # fmt: skip


def _record_exit(
    binding: Binding, path: str, decision: lifecycle.ExitDecision, why: str
) -> actions.RecordExit:
    return actions.RecordExit(
        binding.spec.lane, path, why,
        binding=binding.name, participant=binding.spec.participant,
        runtime=binding.spec.runtime, exit=decision,
    )  # fmt: skip


def _session_of(observed: world.Observed, lane: str) -> str | None:
    if isinstance(observed.panes, world.Unknown):
        return None
    return next((p.session_id for p in observed.panes if p.session_name == lane), None)
