"""The runs step of a pass: read the runs, decide with ``plan_run``, apply, expand into lanes.

Level-triggered like the rest of the pass: every pass reads the runs and their tasks from the
store (the truth), what the task processes did (agent records, liveness, the new part of their
stdout), composes the prompts of ready tasks, and lets the pure scheduler decide. The decisions
become run actions (shown by ``controller plan``), applied one run at a time; the tasks'
lanes and agents are then the lanes step's business, through the expansion.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

from controller.core import hosts, lifecycle, world
from controller.core.workflows import actions as run_actions
from controller.core.workflows import (
    budget,
    compaction,
    decisions,
    expansion,
    model,
    placement,
    scheduler,
    snapshots,
    usage,
)
from controller.core.workflows.model import TaskObservation, TaskPhase, TaskReason
from controller.executors import runs as run_handlers
from controller.executors.context import Context, Outcome
from controller.executors.runs import RunPaths
from controller.runtime.steps import Pass, StepResult, with_agents
from controller.spec.state import DesiredState
from controller.store import queries
from controller.store import runs as runs_store
from controller.system import git as gitseam

MAX_READ = 16 * 1024 * 1024  # bytes of a task's stdout read per pass
TMUX_POLL = timedelta(seconds=2)  # how soon the daemon looks again while a tmux task runs


@dataclass(frozen=True, slots=True)
class Parsed:
    """The new state of a running task's usage parser, and what it adds."""

    progress: usage.Progress
    offset: int  # bytes of stdout consumed after this pass
    from_offset: int
    charged: float  # what the attempt has cost so far, by ``budget.charged``
    increment: model.Usage
    cost: float  # charged for the increment
    catalog_cost: float


@dataclass(frozen=True, slots=True)
class TaskView:
    """One task as this pass sees it."""

    row: runs_store.TaskRow
    spec: model.TaskSpec
    worktree: Path
    seen: TaskObservation | None = None  # running tasks only
    parsed: Parsed | None = None
    composed: compaction.Composed | None = None  # ready tasks only
    agent_alive: bool = False
    host: str | None = None  # with `hosts`: where it runs (recorded), or is placed (ready)
    mine: bool = True  # whether this host runs it (always, without `hosts`)
    waits: str = ""  # a ready task placed nowhere: why (no live host allowed, its host lost)


@dataclass(frozen=True, slots=True)
class RunView:
    """One run as this pass sees it."""

    row: runs_store.RunRow
    tasks: Mapping[str, TaskView]
    drift: bool = False  # the Workflow changed since the run was created
    groups: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunsSeen:
    """Everything the runs step read this pass."""

    runs: tuple[RunView, ...] = ()
    names: frozenset[str] = frozenset()
    released: frozenset[str] = frozenset()  # the lanes of cleaned runs
    creates: bool = True  # whether this host creates declared runs (see ``Spread.creates``)


@dataclass(frozen=True, slots=True)
class RunsPlan:
    """What the runs step will do this pass."""

    actions: tuple[run_actions.RunAction, ...] = ()
    notices: tuple[str, ...] = ()
    next_due: datetime | None = None
    parsed: tuple[tuple[str, str, int, Parsed], ...] = ()  # (run, task, attempt, Parsed)
    unselected: tuple[run_actions.RunAction, ...] = ()  # held back: no lane of theirs selected


# --- observe -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spread:
    """Many hosts, as the runs step needs them: who this host is, which hosts are live, and how
    many tasks each runs now. Without `hosts`, every task is this host's."""

    hosting: hosts.Hosting
    live: frozenset[str] = frozenset()  # lower-cased: leases held now, and this host
    load: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(
        cls,
        hosting: hosts.Hosting,
        leases: world.Leases | None,
        tasks: Mapping[tuple[str, str], runs_store.TaskRow],
    ) -> Spread:
        """Read off the leases and every run's task rows."""
        if not hosting.enabled:
            return cls(hosting)
        live = {hosting.me.lower()}
        if leases is not None:
            live |= {
                x.name.lower() for x in leases.items if x.state(leases.now) == hosts.HostState.LIVE
            }
        load: dict[str, int] = {}
        for row in tasks.values():
            host = cls(hosting).recorded(row)
            if row.record.phase == TaskPhase.RUNNING and host is not None:
                load[host.lower()] = load.get(host.lower(), 0) + 1
        return cls(hosting, frozenset(live), load)

    def recorded(self, row: runs_store.TaskRow) -> str | None:
        """The host a task was placed on; a task dispatched before tasks had hosts ran on the
        first declared host (decision 114, replaced by placement)."""
        if row.host is not None or not self.hosting.enabled or row.record.attempt < 1:
            return row.host
        return self.hosting.hosts[0]

    def mine(self, host: str | None) -> bool:
        """Whether a task on ``host`` is this host's to run."""
        return not self.hosting.enabled or self.hosting.is_me(host)

    @property
    def creates(self) -> bool:
        """Whether this host creates the runs WorkflowRun documents declare: the first live
        declared host (any host could: creating is guarded in the store; one avoids races)."""
        if not self.hosting.enabled:
            return True
        first = next((h for h in self.hosting.hosts if h.lower() in self.live), None)
        return self.hosting.is_me(first)

    def hosts_for(self, run: model.RunRecord) -> placement.Hosts:
        """The hosts ``run`` may place tasks on: its workflow's, of those declared."""
        declared = self.hosting.hosts
        wanted = {h.lower() for h in run.snapshot.hosts}
        allowed = tuple(h for h in declared if not wanted or h.lower() in wanted)
        return placement.Hosts(allowed, self.live, self.load)


async def observe(
    store: queries.Store,
    git: gitseam.Git,
    where: RunPaths,
    desired: DesiredState,
    observed: world.Observed,
    hosting: hosts.Hosting | None = None,
) -> RunsSeen:
    """Read every run that is running or still has lanes, and its tasks."""
    rows = await anyio.to_thread.run_sync(runs_store.runs, store)
    names = frozenset(r.record.name for r in rows)
    active = [r for r in rows if r.record.phase == model.RunPhase.RUNNING or not r.cleaned]
    tasks = await anyio.to_thread.run_sync(lambda: runs_store.tasks(store))
    spread = Spread.of(hosting or hosts.Hosting(me=""), observed.leases, tasks)
    views = [await _view(r, tasks, git, where, desired, observed, spread) for r in active]
    return RunsSeen(tuple(views), names, _released(rows, tasks), creates=spread.creates)


def _released(
    rows: list[runs_store.RunRow], tasks: Mapping[tuple[str, str], runs_store.TaskRow]
) -> frozenset[str]:
    cleaned = {r.record.name for r in rows if r.cleaned}
    return frozenset(t.lane for (run, _), t in tasks.items() if run in cleaned)


async def _view(
    row: runs_store.RunRow,
    all_tasks: Mapping[tuple[str, str], runs_store.TaskRow],
    git: gitseam.Git,
    where: RunPaths,
    desired: DesiredState,
    observed: world.Observed,
    spread: Spread,
) -> RunView:
    run = row.record
    mine = {t.name: all_tasks[(run.name, t.name)] for t in run.snapshot.tasks}
    grouping = placement.groups(run.snapshot.tasks)
    placed = _placed(run, mine, grouping, spread) if run.phase == model.RunPhase.RUNNING else {}
    views: dict[str, TaskView] = {}
    for spec in run.snapshot.tasks:
        task = mine[spec.name]
        where_ = placed.get(spec.name)
        host = where_.host if where_ is not None else spread.recorded(task)
        view = TaskView(
            task,
            spec,
            where.worktree(task.lane),
            host=host,
            mine=spread.mine(host),
            waits=where_.why if where_ is not None else "",
        )
        if run.phase == model.RunPhase.RUNNING:
            view = await _look(view, run, mine, git, where, observed)
        else:
            view = dataclasses.replace(view, agent_alive=_alive(task.lane, observed))
        views[spec.name] = view
    declared = desired.workflows.get(run.workflow)
    drift = declared is not None and _hash(declared, desired) != run.snapshot.template_hash
    return RunView(row, views, drift, grouping)


def _placed(
    run: model.RunRecord,
    rows: Mapping[str, runs_store.TaskRow],
    grouping: Mapping[str, tuple[str, ...]],
    spread: Spread,
) -> dict[str, placement.Placed]:
    """Where the run's pending tasks whose dependencies succeeded go (many hosts only), in the
    scheduler's order: higher priority first, then declaration order."""
    if not spread.hosting.enabled:
        return {}
    order = {spec.name: index for index, spec in enumerate(run.snapshot.tasks)}
    ready = sorted(
        (
            spec
            for spec in run.snapshot.tasks
            if rows[spec.name].record.phase == TaskPhase.PENDING and _deps_done(spec, rows)
        ),
        key=lambda spec: (-spec.priority, order[spec.name]),
    )
    recorded = {name: spread.recorded(row) for name, row in rows.items()}
    return placement.place((spec.name for spec in ready), grouping, recorded, spread.hosts_for(run))


def _hash(workflow: Any, desired: DesiredState) -> str:
    try:
        return snapshots.template_hash(workflow, desired)
    except KeyError:
        return ""


async def _look(
    view: TaskView,
    run: model.RunRecord,
    tasks: Mapping[str, runs_store.TaskRow],
    git: gitseam.Git,
    where: RunPaths,
    observed: world.Observed,
) -> TaskView:
    record = view.row.record
    alive = _alive(view.row.lane, observed)
    if record.phase == TaskPhase.RUNNING and not view.mine:
        return dataclasses.replace(view, seen=_elsewhere(view))
    if record.phase == TaskPhase.RUNNING:
        seen, parsed = await _running(view, run, where, observed)
        return dataclasses.replace(view, seen=seen, parsed=parsed, agent_alive=alive)
    if record.phase == TaskPhase.PENDING and not view.mine:
        return view  # placed on another host (or nowhere yet): its prompt is composed there
    if record.phase == TaskPhase.PENDING and _deps_done(view.spec, tasks):
        rows = {(run.name, name): row for name, row in tasks.items()}
        composed = await run_handlers.compose_prompt(git, run, view.spec, rows)
        return dataclasses.replace(view, composed=composed, agent_alive=alive)
    return dataclasses.replace(view, agent_alive=alive)


def _elsewhere(view: TaskView) -> TaskObservation:
    """A task running on another host: never completed here (its host sees its process), but
    counted with the usage its host has tallied so far."""
    stored = dict(view.row.progress or {})
    report = usage.Progress.from_json(stored["parser"]).report if "parser" in stored else None
    return TaskObservation("unknown", report=report, started_at=view.row.record.started_at)


def _alive(lane: str, observed: world.Observed) -> bool:
    record = observed.agents.get(lane)
    if record is None:
        return False
    return lifecycle.liveness(record, observed).life in (
        lifecycle.Life.ALIVE,
        lifecycle.Life.ORPHANED,
        lifecycle.Life.UNKNOWN,
        lifecycle.Life.SETTLING,
    )


def _deps_done(spec: model.TaskSpec, tasks: Mapping[str, runs_store.TaskRow]) -> bool:
    return all(tasks[d].record.phase == TaskPhase.SUCCEEDED for d in spec.depends_on)


async def _running(
    view: TaskView, run: model.RunRecord, where: RunPaths, observed: world.Observed
) -> tuple[TaskObservation, Parsed | None]:
    record = view.row.record
    agent = observed.agents.get(view.row.lane)
    parsed = await _parse(view, run, where)
    report = parsed.progress.report if parsed else None
    stale = (
        agent is not None
        and record.started_at is not None
        and (agent.started_at is None or agent.started_at < record.started_at)
    )
    if agent is None or stale:
        # No agent yet (the lanes step starts it), or only an earlier attempt's record.
        return TaskObservation("absent", report=report, started_at=record.started_at), parsed
    seen = lifecycle.liveness(agent, observed)
    life = {
        lifecycle.Life.ALIVE: "running",
        lifecycle.Life.ORPHANED: "running",
        lifecycle.Life.DEAD: "exited",
    }.get(seen.life, "unknown")
    code = seen.exit_code
    if life == "exited" and code is None and agent.state != world.AgentState.RUNNING:
        code = agent.last_exit  # recorded by an earlier pass
    observation = TaskObservation(
        life,  # type: ignore[arg-type]
        exit_code=code,
        report=report,
        started_at=agent.started_at or record.started_at,
    )
    return observation, parsed


async def _parse(view: TaskView, run: model.RunRecord, where: RunPaths) -> Parsed | None:
    spec, row = view.spec, view.row
    path = where.stdout(row.lane)
    data = await anyio.to_thread.run_sync(_read_from, path, row.log_offset)
    stored = dict(row.progress or {})
    before = (
        usage.Progress.from_json(stored["parser"])
        if "parser" in stored
        else usage.start(spec.usage)
    )
    text = data.decode("utf-8", "surrogateescape")
    after = usage.resume(spec.usage, before, text)
    used = after.consumed - before.consumed
    offset = row.log_offset + len(text[:used].encode("utf-8", "surrogateescape"))
    price = run.snapshot.models[spec.model]
    charged = budget.charged(price, after.report.usage)
    old_charged = float(stored.get("charged", 0.0))
    increment = _minus(after.report.usage, before.report.usage)
    catalog = budget.cost(price, after.report.usage) - budget.cost(price, before.report.usage)
    return Parsed(after, offset, row.log_offset, charged, increment, charged - old_charged, catalog)


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(MAX_READ)
    except OSError:
        return b""


def _minus(a: model.Usage, b: model.Usage) -> model.Usage:
    reported = None
    if a.reported_cost_usd is not None:
        reported = a.reported_cost_usd - (b.reported_cost_usd or 0.0)
    return model.Usage(
        input_tokens=a.input_tokens - b.input_tokens,
        output_tokens=a.output_tokens - b.output_tokens,
        cache_read_tokens=a.cache_read_tokens - b.cache_read_tokens,
        cache_write_tokens=a.cache_write_tokens - b.cache_write_tokens,
        reported_cost_usd=reported,
    )


# --- plan ----------------------------------------------------------------------------------


def plan(seen: RunsSeen, desired: DesiredState, now: datetime) -> RunsPlan:
    """The runs step's actions for this pass: creations, then each running run's decisions."""
    acts: list[run_actions.RunAction] = []
    notices: list[str] = []
    stored = {view.row.record.name: view.row.record for view in seen.runs}
    for name, declared in desired.runs.items():
        if name not in seen.names and seen.creates:
            acts.append(_create(name, declared.spec.workflow, desired))
        elif name in stored and stored[name].workflow != declared.spec.workflow:
            notices.append(
                f"WorkflowRun {name}: spec.workflow is {declared.spec.workflow} but the run "
                f"was created from {stored[name].workflow}; runs are immutable, use a new name"
            )
    dues: list[datetime] = []
    parsed: list[tuple[str, str, int, Parsed]] = []
    for view in seen.runs:
        run_acts, due = _plan_run(view, now)
        acts.extend(_ours(view, run_acts))
        notices.extend(_waiting(view))
        dues.extend([due] if due else [])
        if _watching_tmux(view):
            dues.append(now + TMUX_POLL)  # a pane's exit leaves no exit file to notice
        parsed.extend(
            (view.row.record.name, name, t.row.record.attempt, t.parsed)
            for name, t in view.tasks.items()
            if t.parsed is not None
        )
    return RunsPlan(tuple(acts), tuple(notices), min(dues, default=None), tuple(parsed))


def _watching_tmux(view: RunView) -> bool:
    return any(
        t.row.record.phase == TaskPhase.RUNNING and t.spec.runtime == "tmux" and t.mine
        for t in view.tasks.values()
    )


# What only a task's own host does: start it (its worktree and prompt are there), see it end
# (its process is there), keep what it left. Everything else moves store rows under guards
# (stop, skip, retry, finish), so every host may do it and a second one finds it done.
_TASK_LOCAL = (
    run_actions.DispatchTask,
    run_actions.CompleteTask,
    run_actions.FinalizeTask,
    run_actions.FailTask,  # its prompt was composed (too large) on its host
)


def _ours(view: RunView, acts: list[run_actions.RunAction]) -> list[run_actions.RunAction]:
    """The run's actions this host applies; a dispatch learns its host and group."""
    kept: list[run_actions.RunAction] = []
    for act in acts:
        t = view.tasks.get(act.task)
        if isinstance(act, _TASK_LOCAL) and t is not None and not t.mine:
            continue
        if isinstance(act, run_actions.DispatchTask) and t is not None and t.host is not None:
            act = dataclasses.replace(act, host=t.host, group=view.groups.get(act.task, ()))
        kept.append(act)
    return kept


def _waiting(view: RunView) -> list[str]:
    run = view.row.record.name
    return [f"run {run}: task {name} {t.waits}" for name, t in view.tasks.items() if t.waits]


def _create(name: str, workflow: str, desired: DesiredState) -> run_actions.CreateRun:
    tasks = len(desired.workflows[workflow].spec.tasks)
    why = "declared by a WorkflowRun document"
    return run_actions.CreateRun(name, "", why, run=name, workflow=workflow, tasks=tasks)


def _plan_run(view: RunView, now: datetime) -> tuple[list[run_actions.RunAction], datetime | None]:
    run = view.row.record
    acts: list[run_actions.RunAction] = [*_finalize(view)]
    if run.phase != model.RunPhase.RUNNING:
        return acts, None
    settled, records = _as_scheduled(view)
    for name, t in view.tasks.items():
        if t.composed is not None and t.composed.overflow:
            acts.append(_overflow(run.name, t))
            records[name] = records[name].moved(
                phase=TaskPhase.FAILED, reason=TaskReason.CONTEXT_OVERFLOW
            )
    observed = {n: t.seen for n, t in view.tasks.items() if t.seen is not None}
    tokens = {n: t.composed.tokens for n, t in view.tasks.items() if t.composed is not None}
    decided = scheduler.plan_run(settled, records, observed, now, prompt_tokens=tokens)
    acts.extend(_decision_action(view, d) for d in decided.decisions)
    if decided.finish is not None:
        f = decided.finish
        finish = run_actions.FinishRun(
            run.name,
            "",
            f.message,
            run=run.name,
            phase=f.phase,
            reason_code=f.reason,
            message=f.message,
        )
        acts.append(finish)
    return acts, decided.next_due


def _as_scheduled(view: RunView) -> tuple[model.RunRecord, dict[str, model.TaskRecord]]:
    """The run and tasks as the scheduler counts them: settled spending, and each running
    attempt at its estimate (its usage so far comes from what this pass parsed).

    The store counts a running attempt's tallied usage as spent and keeps only what its
    estimate has left as reserved (so one guarded UPDATE can compare); the scheduler wants the
    settled part and the whole estimates, and adds the parsed usage itself.
    """
    run = view.row.record
    records: dict[str, model.TaskRecord] = {}
    live_usd, live_tokens, reserved_usd, reserved_tokens = 0.0, 0, 0.0, 0
    for name, t in view.tasks.items():
        record = t.row.record
        if record.phase == TaskPhase.RUNNING:
            stored = dict(t.row.progress or {})
            live_usd += float(stored.get("charged", 0.0))
            live_tokens += _stored_tokens(stored)
            reserved_usd += t.row.estimate_usd
            reserved_tokens += t.row.estimate_tokens
            record = record.moved(
                reserved_usd=t.row.estimate_usd, reserved_tokens=t.row.estimate_tokens
            )
        records[name] = record
    settled = dataclasses.replace(
        run,
        spent_usd=max(0.0, run.spent_usd - live_usd),
        spent_tokens=max(0, run.spent_tokens - live_tokens),
        reserved_usd=reserved_usd,
        reserved_tokens=reserved_tokens,
    )
    return settled, records


def _stored_tokens(stored: Mapping[str, Any]) -> int:
    if "parser" not in stored:
        return 0
    return usage.Progress.from_json(stored["parser"]).report.usage.tokens


def _overflow(run: str, t: TaskView) -> run_actions.FailTask:
    assert t.composed is not None
    detail = "; ".join(t.composed.notes) or "the prompt does not fit the model's window"
    return run_actions.FailTask(
        t.row.lane,
        str(t.worktree),
        "prompt too large for the model even after compaction",
        run=run,
        task=t.spec.name,
        reason_code=TaskReason.CONTEXT_OVERFLOW,
        detail=detail,
    )


def _finalize(view: RunView) -> list[run_actions.RunAction]:
    found: list[run_actions.RunAction] = []
    for name, t in view.tasks.items():
        r = t.row.record
        ended = r.phase in model.ENDED_TASK and r.attempt >= 1 and r.head_commit is None
        if ended and not t.agent_alive and not view.row.cleaned:
            found.append(
                run_actions.FinalizeTask(
                    t.row.lane,
                    str(t.worktree),
                    "the task ended; keep what it left",
                    run=view.row.record.name,
                    task=name,
                )
            )
    return found


def _decision_action(view: RunView, d: decisions.Decision) -> run_actions.RunAction:
    run = view.row.record.name
    t = view.tasks[d.task]
    lane, path = t.row.lane, str(t.worktree)
    common: dict[str, Any] = {"run": run, "task": d.task}
    if isinstance(d, decisions.Complete):
        attempt = t.row.record.attempt
        return run_actions.CompleteTask(
            lane,
            path,
            d.message,
            attempt=attempt,
            phase=d.phase,
            reason_code=d.reason,
            exit_code=d.exit_code,
            **common,
        )
    if isinstance(d, decisions.Stop):
        attempt = t.row.record.attempt
        return run_actions.StopTask(
            lane, path, d.message, attempt=attempt, phase=d.phase, reason_code=d.reason, **common
        )
    if isinstance(d, decisions.Retry):
        return run_actions.RetryTask(
            lane, path, d.message, attempt=d.attempt, due_at=d.due_at, **common
        )
    if isinstance(d, decisions.Skip):
        return run_actions.SkipTask(lane, path, d.message, reason_code=d.reason, **common)
    assert isinstance(d, decisions.Dispatch)
    return _dispatch_action(t, d, lane, path, common)


def _dispatch_action(
    t: TaskView, d: decisions.Dispatch, lane: str, path: str, common: dict[str, Any]
) -> run_actions.DispatchTask:
    composed = t.composed
    needs = t.spec.depends_on
    why = f"ready: {', '.join(needs)} succeeded" if needs else "ready: no dependencies"
    if d.attempt > 1:
        why = f"attempt {d.attempt} is due"
    return run_actions.DispatchTask(
        lane,
        path,
        why,
        attempt=d.attempt,
        model=t.spec.model,
        estimate_usd=d.estimate_usd,
        estimate_tokens=d.estimate_tokens,
        remaining_usd=d.remaining_usd,
        needs=t.spec.depends_on,
        branch=t.row.branch,
        base=t.spec.base,
        prompt=composed.text if composed else t.spec.prompt,
        prompt_tokens=composed.tokens if composed else compaction.estimate_tokens(t.spec.prompt),
        notes=composed.notes if composed else (),
        **common,
    )


# --- expansion -----------------------------------------------------------------------------


def task_lanes(
    seen: RunsSeen, where: RunPaths, *, workspace: str, plan_: RunsPlan | None = None
) -> list[expansion.TaskLane]:
    """The lanes (and running agents) of every run not cleaned, as the store says now.

    With ``plan_`` (``controller plan``: nothing applied), the dispatches it would make are
    included as they would start.
    """
    lanes: list[expansion.TaskLane] = []
    for view in seen.runs:
        if view.row.cleaned:
            continue
        for name, t in view.tasks.items():
            r = t.row.record
            if r.attempt >= 1 and r.base_commit is not None and t.mine:
                running = r.phase == TaskPhase.RUNNING and bool(t.row.command)
                argv = t.row.command if running else None
                lanes.append(_task_lane(view.row.record.name, name, t, r.base_commit, argv))
    for act in plan_.actions if plan_ else ():
        if isinstance(act, run_actions.DispatchTask) and not any(
            lane.lane == act.lane for lane in lanes
        ):
            view = next(v for v in seen.runs if v.row.record.name == act.run)
            t = view.tasks[act.task]
            argv = run_handlers.command_for(t.spec, act, where, workspace=workspace)
            base = act.base if not act.needs else "merge(" + ",".join(act.needs) + ")"
            lanes.append(_task_lane(act.run, act.task, t, base, argv))
    return lanes


def _task_lane(
    run: str, task: str, t: TaskView, base: str | None, argv: tuple[str, ...] | None
) -> expansion.TaskLane:
    return expansion.TaskLane(
        run=run,
        task=task,
        lane=t.row.lane,
        branch=t.row.branch,
        base=base,
        argv=argv,
        env=t.spec.env,
        runtime=t.spec.runtime,
    )


# --- apply ---------------------------------------------------------------------------------


async def apply(
    ctx: Context, desired: DesiredState, the_plan: RunsPlan, *, source: str = "document"
) -> list[Outcome]:
    """Record usage parsed this pass, then apply each run's actions in plan order."""
    for run, task, attempt, parsed in the_plan.parsed:
        await _record_usage(ctx, run, task, attempt, parsed)
    outcomes: list[Outcome] = []
    for wave in _waves(the_plan.actions):
        outcomes += await _apply_wave(ctx, desired, wave, source=source)
    return outcomes


# Creations first; then what ends, moves or keeps tasks (a completion records the commit a
# dependent's dispatch merges); then dispatches; a run's finish last. Within a wave the
# actions concern different tasks and each is guarded in the store: they run in parallel.
_WAVES: tuple[tuple[type[run_actions.RunAction], ...], ...] = (
    (run_actions.CreateRun,),
    (
        run_actions.CompleteTask,
        run_actions.StopTask,
        run_actions.FailTask,
        run_actions.FinalizeTask,
        run_actions.SkipTask,
    ),
    (run_actions.RetryTask,),
    (run_actions.DispatchTask,),
    (run_actions.FinishRun,),
)
PARALLEL = 8


def _waves(
    acts: tuple[run_actions.RunAction, ...],
) -> list[list[run_actions.RunAction]]:
    waves = [[a for a in acts if isinstance(a, kinds)] for kinds in _WAVES]
    return [wave for wave in waves if wave]


async def _apply_wave(
    ctx: Context, desired: DesiredState, wave: list[run_actions.RunAction], *, source: str
) -> list[Outcome]:
    done: list[Outcome | None] = [None] * len(wave)
    limiter = anyio.CapacityLimiter(PARALLEL)

    async def one(index: int, action: run_actions.RunAction) -> None:
        async with limiter:
            done[index] = await _apply_one(ctx, desired, action, source=source)

    async with anyio.create_task_group() as group:
        for index, action in enumerate(wave):
            group.start_soon(one, index, action)
    return [o for o in done if o is not None]


async def _apply_one(
    ctx: Context, desired: DesiredState, action: run_actions.RunAction, *, source: str
) -> Outcome:
    try:
        if isinstance(action, run_actions.CreateRun):
            return await run_handlers.create_run(action, ctx, desired, source=source)
        return await run_handlers.HANDLERS[type(action)](action, ctx)
    except Exception as exc:  # one broken run must not stop the pass: record, retry next pass
        message = f"{type(exc).__name__}: {exc}"
        await ctx.emit("ActionFailed", message, lane=None, action=action.key, run=action.run)
        return Outcome(action, "failed", message)


async def _record_usage(ctx: Context, run: str, task: str, attempt: int, parsed: Parsed) -> None:
    progress = {"parser": parsed.progress.to_json(), "charged": parsed.charged}
    now = ctx.clock.now()
    nothing = parsed.increment == model.Usage() and abs(parsed.cost) < 1e-12
    if nothing:
        if parsed.offset != parsed.from_offset:
            keep = functools.partial(
                runs_store.set_progress,
                ctx.store,
                run,
                task,
                attempt=attempt,
                offset=parsed.offset,
                progress=progress,
                now=now,
            )
            await anyio.to_thread.run_sync(keep)
        return
    row = await ctx.db(runs_store.get, ctx.store, run)
    model_name = row.record.snapshot.task(task).model if row else ""
    inc = runs_store.Increment(
        run,
        task,
        attempt,
        model_name,
        parsed.increment,
        cost_usd=parsed.cost,
        catalog_cost_usd=parsed.catalog_cost,
        from_offset=parsed.from_offset,
        log_offset=parsed.offset,
        progress=progress,
    )
    await ctx.db(runs_store.add_usage, ctx.store, inc, now)


# --- the step ------------------------------------------------------------------------------


@dataclass(slots=True)
class RunsStep:
    """Runs first: their decisions, then the expansion the lanes step reconciles.

    On a blind pass (a source could not be read) runs wait: nothing is completed, dispatched
    or stopped on the strength of an unknown observation.
    """

    name: str = "runs"

    async def plan(self, p: Pass) -> RunsPlan:
        """Read the runs, decide, and leave the expansion (with this plan's dispatches)."""
        if p.blind:
            return RunsPlan()
        paths = run_handlers.paths_of(p.ctx)
        seen = await observe(p.ctx.store, _git_of(p.ctx), paths, p.desired, p.observed, p.hosting)
        the_plan = _with_branches(plan(seen, p.desired, p.now), p.observed)
        if p.selection is not None:
            the_plan, p.selection = select(the_plan, seen, p.selection)
        lanes = task_lanes(seen, paths, workspace=p.ctx.workspace, plan_=the_plan)
        p.expanded, problems = expansion.expand(p.desired, lanes)
        p.released = seen.released
        return dataclasses.replace(the_plan, notices=(*the_plan.notices, *problems))

    async def apply(self, p: Pass, the_plan: RunsPlan) -> StepResult:
        """Apply the decisions, then expand from what the store now says."""
        if p.blind:
            return StepResult()
        outcomes = await apply(p.ctx, p.desired, the_plan)
        if outcomes or the_plan.parsed:
            await self._expand_again(p)
        return StepResult(tuple(outcomes), the_plan.next_due)

    async def _expand_again(self, p: Pass) -> None:
        store = p.ctx.store
        paths = run_handlers.paths_of(p.ctx)
        rows = await anyio.to_thread.run_sync(runs_store.runs, store)
        tasks = await anyio.to_thread.run_sync(lambda: runs_store.tasks(store))
        spread = Spread(p.hosting)
        views = [_bare_view(r, tasks, paths, spread) for r in rows if not r.cleaned]
        seen = RunsSeen(tuple(views), released=_released(rows, tasks))
        lanes = task_lanes(seen, paths, workspace=p.ctx.workspace)
        p.expanded, _ = expansion.expand(p.desired, lanes)
        p.released = seen.released
        with_agents(p, await anyio.to_thread.run_sync(store.agent_records))


def select(
    the_plan: RunsPlan, seen: RunsSeen, selection: frozenset[str]
) -> tuple[RunsPlan, frozenset[str]]:
    """With ``--lane``: a run acts only when one of its task lanes is selected, and then every
    lane of it is selected (a run's decisions span its tasks: one completes, the next is
    dispatched). Runs yet to be created (WorkflowRun documents) wait for a full pass."""
    chosen = {
        v.row.record.name
        for v in seen.runs
        if any(t.row.lane in selection for t in v.tasks.values())
    }
    lanes = {t.row.lane for v in seen.runs if v.row.record.name in chosen for t in v.tasks.values()}
    kept = dataclasses.replace(
        the_plan,
        actions=tuple(a for a in the_plan.actions if a.run in chosen),
        parsed=tuple(x for x in the_plan.parsed if x[0] in chosen),
        unselected=tuple(a for a in the_plan.actions if a.run not in chosen),
    )
    return kept, selection | lanes


def _with_branches(the_plan: RunsPlan, observed: world.Observed) -> RunsPlan:
    """Tell each dispatch whether its branch exists already (from the pass's observation)."""
    branches = observed.branches
    if isinstance(branches, world.Unknown):
        return the_plan
    acts = tuple(
        dataclasses.replace(a, branch_exists=a.branch in branches)
        if isinstance(a, run_actions.DispatchTask)
        else a
        for a in the_plan.actions
    )
    return dataclasses.replace(the_plan, actions=acts)


def _bare_view(
    row: runs_store.RunRow,
    tasks: Mapping[tuple[str, str], runs_store.TaskRow],
    paths: RunPaths,
    spread: Spread,
) -> RunView:
    run = row.record
    views: dict[str, TaskView] = {}
    for spec in run.snapshot.tasks:
        task = tasks[(run.name, spec.name)]
        host = spread.recorded(task)
        views[spec.name] = TaskView(
            task, spec, paths.worktree(task.lane), host=host, mine=spread.mine(host)
        )
    return RunView(row, views)


def _git_of(ctx: Context) -> gitseam.Git:
    return gitseam.Git(ctx.runner, ctx.repo)
