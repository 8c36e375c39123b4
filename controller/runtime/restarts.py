"""``controller restart LANE [PARTICIPANT]``: start a lane's agents again now, audited.

Under the workspace lock: a running agent is stopped by the stop handler (TERM, grace, KILL of
its process family) and recorded as stopped on purpose; an exited agent (whatever its restart
policy) or a crash-loop-blocked one is made due now. One pass over that lane alone (as
``--once --lane LANE``) then starts them. Nothing is decided on an unknown observation, and a
run task's agent is refused: its exit is the task's end (``controller runs retry``).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

import anyio

from controller import errors
from controller.core import actions, hosts, lifecycle, planner, world
from controller.core import agents as agent_plans
from controller.core.lifecycle import Life
from controller.core.workflows import expansion
from controller.executors import agents as agent_handlers
from controller.executors.context import Outcome
from controller.runtime import apply, hosting, reconcile, wiring
from controller.runtime.steps import Pass
from controller.spec.binding import Binding
from controller.spec.state import DesiredState
from controller.store import runs as runs_store
from controller.system import locks

State = world.AgentState


class RestartError(errors.ControllerError):
    """A restart that cannot be done (unknown lane or participant, a run task, unknown state)."""


class Was(enum.StrEnum):
    """What a restarted agent was doing when the restart was asked for."""

    RUNNING = "running"  # stopped by the restart, started by its pass
    EXITED = "exited"  # made due now, whatever its restart policy
    BLOCKED = "blocked"  # crash loop: the block is lifted for one start, its deaths kept
    STOPPED = "stopped"  # stopped on purpose earlier; the pass starts it
    NEW = "new"  # never started; the pass starts it


@dataclass(frozen=True, slots=True)
class Restarted:
    """One agent of the restart, after its pass."""

    binding: str
    participant: str
    was: Was
    state: str  # the agent record's state after the pass ("none": still no record)
    pid: int | None  # the recorded process (a process-runtime agent's launcher)
    restarts: int
    back: bool  # started again by this restart's pass

    def to_json(self) -> dict[str, object]:
        """The entry of ``agents`` in ``restart -o json``."""
        return {
            "binding": self.binding,
            "participant": self.participant,
            "was": str(self.was),
            "state": self.state,
            "pid": self.pid,
            "restarts": self.restarts,
            "back": self.back,
        }


@dataclass(frozen=True, slots=True)
class Report:
    """What a restart did: its own stops and records, then its pass."""

    lane: str
    reason: str
    by: str
    correlation_id: str
    agents: tuple[Restarted, ...]
    outcomes: tuple[Outcome, ...]  # the restart's own, then the pass's
    result: reconcile.PassResult

    @property
    def ok(self) -> bool:
        """Whether every agent was started again and nothing failed."""
        return all(a.back for a in self.agents) and not any(o.failed for o in self.outcomes)


def targets(
    desired: DesiredState,
    lane: str,
    participant: str | None,
    *,
    run_lanes: Mapping[str, tuple[str, str]],
) -> tuple[Binding, ...]:
    """The bindings a restart of ``lane`` (and ``participant``) means, or why there are none.

    ``run_lanes`` maps each run task's lane to its (run, task): those are refused.
    """
    if lane not in desired.lanes:
        if lane in run_lanes:
            raise RestartError(_task_refusal(lane, *run_lanes[lane]))
        declared = ", ".join(sorted(desired.lanes)) or "none"
        raise RestartError(f"lane {lane} is not declared (lanes: {declared})")
    if desired.lanes[lane].spec.suspend:
        raise RestartError(f"lane {lane} is suspended (spec.suspend: true); its agents stay off")
    bound = desired.bindings_of(lane)
    if not bound:
        raise RestartError(f"lane {lane} has no agents: no Binding names it")
    task = next((b.metadata.labels for b in bound if expansion.is_task(b)), None)
    if task is not None:
        run = task[expansion.RUN_LABEL]
        raise RestartError(_task_refusal(lane, run, task.get(expansion.TASK_LABEL, "?")))
    if participant is None:
        return bound
    chosen = tuple(b for b in bound if b.spec.participant == participant)
    if not chosen:
        names = ", ".join(sorted(b.spec.participant for b in bound))
        raise RestartError(f"lane {lane} has no participant {participant} (participants: {names})")
    return chosen


def _task_refusal(lane: str, run: str, task: str) -> str:
    return (
        f"lane {lane} runs task {task} of run {run}; a task is not restarted (its exit is its "
        f"end): use `controller runs retry {run} --task {task}`"
    )


async def restart(
    rec: reconcile.Reconciler,
    desired: DesiredState,
    lane: str,
    participant: str | None = None,
    *,
    reason: str,
    lock_timeout: float,
    on_wait: object = None,
    on_outcome: apply.OnOutcome | None = None,
) -> Report:
    """Restart ``lane``'s agents (or ``participant``'s) now: stop or make due, then a pass."""
    _check_host(rec, desired, lane)
    run_lanes = await anyio.to_thread.run_sync(_run_lanes, rec)
    chosen = targets(desired, lane, participant, run_lanes=run_lanes)
    by, correlation = wiring.who(), uuid.uuid4().hex[:16]
    only = frozenset({lane})
    async with (
        locks.workspace_lock(rec.wiring.paths.lock, wait=lock_timeout, on_wait=on_wait),
        hosting.held(rec.wiring.paths, rec.wiring.store),
    ):
        p = await rec.begin(desired, correlation=correlation, selection=only)
        wanted = [(b, _was(b, p.observed)) for b in chosen]  # all known before anything changes
        own: list[Outcome] = []
        for binding, was in wanted:
            own += await _request(p, binding, was, reason=reason, by=by)
        for outcome in own:
            if on_outcome is not None:
                on_outcome(outcome)
        result = await rec.run_pass(
            desired, selection=only, on_outcome=on_outcome, correlation=correlation
        )
        after = await anyio.to_thread.run_sync(rec.wiring.store.agent_records)
    agents = tuple(_after(b, was, after.get(b.name), since=p.now) for b, was in wanted)
    return Report(lane, reason, by, correlation, agents, (*own, *result.outcomes), result)


def _check_host(rec: reconcile.Reconciler, desired: DesiredState, lane: str) -> None:
    """Many hosts: an agent is restarted by the host its lane is on."""
    paths = rec.wiring.paths
    mine = hosts.hosting(wiring.effective(paths, desired), paths.host)
    if lane in desired.lanes and not mine.owns(lane):
        where = mine.owners.get(lane)
        if where is None:
            raise errors.ControllerError(f"lane {lane} is Unscheduled: no host selects it")
        raise errors.ControllerError(
            f"lane {lane} runs on host {where}: ssh {where}, then controller restart {lane}"
        )


def _run_lanes(rec: reconcile.Reconciler) -> dict[str, tuple[str, str]]:
    return {t.lane: key for key, t in runs_store.tasks(rec.wiring.store).items()}


def _was(binding: Binding, observed: world.Observed) -> Was:
    record = observed.agents.get(binding.name)
    if record is None:
        return Was.NEW
    seen = lifecycle.liveness(record, observed)
    if seen.life == Life.UNKNOWN:
        raise RestartError(f"cannot see {binding.name}'s agent ({seen.reason}); nothing restarted")
    if seen.life in agent_plans.RUNNING:
        return Was.RUNNING
    if record.state == State.BLOCKED:
        return Was.BLOCKED
    return Was.STOPPED if record.state == State.STOPPED else Was.EXITED


async def _request(p: Pass, binding: Binding, was: Was, *, reason: str, by: str) -> list[Outcome]:
    """Record the request, then stop the agent or make it due now."""
    ctx, name = p.ctx, binding.name
    await ctx.emit(
        "AgentRestartRequested",
        reason,
        lane=binding.spec.lane,
        participant=binding.spec.participant,
        binding=name,
        by=by,
        was=str(was),
    )
    record = p.observed.agents.get(name)
    if record is None:
        return []
    path = _path(p, record.lane)
    if was == Was.RUNNING:
        why = f"restart requested by {by}: {reason}"
        stop = agent_plans.stop(binding, record, path=path, reason=why)
        return [await agent_handlers.stop_agent(stop, ctx)]
    now = ctx.clock.now()
    if record.state == State.RUNNING:  # it died, and no pass has recorded it yet
        return [await agent_handlers.record_exit(_exit_now(binding, record, p, path, now), ctx)]
    due = {"state": State.EXITED, "next_start_at": now, "blocked": None}
    await ctx.db(ctx.store.update_agents, now, where={"binding": name}, **due)
    return []


def _exit_now(
    binding: Binding, record: world.AgentRecord, p: Pass, path: str, now: datetime
) -> actions.RecordExit:
    """The death recorded as a pass would, but due now and never blocked."""
    seen = lifecycle.liveness(record, p.observed)
    decision = lifecycle.after_death(record, binding, exit_code=seen.exit_code, now=now)
    due = replace(decision, state=State.EXITED, next_start_at=now, blocked=None)
    return actions.RecordExit(
        record.lane,
        path,
        f"{seen.reason}; restart requested",
        binding=binding.name,
        participant=record.participant,
        runtime=record.runtime,
        exit=due,
    )


def _path(p: Pass, lane: str) -> str:
    record = p.observed.records.get(lane)
    return record.path if record is not None else planner.lane_path(p.observed.root, lane)


def _after(
    binding: Binding, was: Was, record: world.AgentRecord | None, *, since: datetime
) -> Restarted:
    started = record is not None and record.started_at is not None and record.started_at >= since
    back = started and record is not None and record.state == State.RUNNING
    return Restarted(
        binding=binding.name,
        participant=binding.spec.participant,
        was=was,
        state=str(record.state) if record is not None else "none",
        pid=record.pid if record is not None else None,
        restarts=record.restarts if record is not None else 0,
        back=back,
    )
