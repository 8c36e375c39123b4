"""One reconcile pass: observe every source once, plan, apply, remember.

Level-triggered: a pass recomputes everything from the desired state and what it sees now;
nothing depends on having seen an earlier event.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio

from controller import errors
from controller.core import hosts, lifecycle, planner, strays, world
from controller.executors.context import Context, Outcome
from controller.observers import git, processes
from controller.observers import tmux as tmux_observer
from controller.runtime import apply, wiring
from controller.runtime import steps as steps_
from controller.runtime.wiring import Wiring
from controller.spec.state import DesiredState

if TYPE_CHECKING:
    from controller.executors import triggers as deliver
    from controller.runtime import runs, wakes

NUDGE_WAIT = 0.1


class UnknownLanes(errors.ControllerError):
    """``--lane`` names a lane that is neither declared, nor in the inventory, nor a run's."""


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one pass saw, planned and did, step by step."""

    plan: planner.Plan
    observed: world.Observed
    outcomes: tuple[Outcome, ...] = ()
    correlation_id: str = ""
    started: datetime | None = None
    wakes: tuple[deliver.Envelope, ...] = ()
    steps: Mapping[str, steps_.StepResult] = field(default_factory=dict)

    @property
    def failed(self) -> tuple[Outcome, ...]:
        """Outcomes that failed, in every step."""
        return tuple(o for o in self.outcomes if o.failed)

    def next_due(self) -> datetime | None:
        """The earliest future time something is due (a restart, a retry, a wake), if any."""
        times = [r.next_due for r in self.steps.values() if r.next_due is not None]
        future = [t for t in times if self.started is None or t > self.started]
        return min(future, default=None)

    @property
    def failed_wakes(self) -> tuple[deliver.Envelope, ...]:
        """Wakes whose attempt failed (queued for a retry) or that died."""
        return tuple(w for w in self.wakes if w.failed)

    @property
    def blind(self) -> bool:
        """Whether some source could not be read (so nothing was done)."""
        o = self.observed
        sources = (o.worktrees, o.root_entries, o.branches, o.panes, o.processes)
        return any(isinstance(v, world.Unknown) for v in sources)


@dataclass(slots=True)
class PassState:
    """What the handlers of one pass share (see ``executors.context.PassState``)."""

    children: list[subprocess.Popen[bytes]]  # the reconciler's own: it reaps them across passes
    sessions: dict[str, str] = field(default_factory=dict)  # lane -> tmux session id


@dataclass(slots=True)
class Reconciler:
    """Runs passes for one workspace; the daemon keeps one for its whole life.

    A pass observes once, then runs its steps in order: runs (their decisions, and the lanes
    and agents their tasks need), lanes and agents, wakes.
    """

    wiring: Wiring
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    runs_step: runs.RunsStep | None = None  # loaded by the first pass that has runs
    lanes_step: steps_.LanesStep = field(default_factory=steps_.LanesStep)
    wakes_step: steps_.WakesStep = field(default_factory=steps_.WakesStep)

    @property
    def waker(self) -> wakes.Waker:
        """The trigger queue's worker (one lease owner per reconciler)."""
        return self.wakes_step.waker

    async def _runs(self, p: steps_.Pass) -> runs.RunsStep | None:
        """The runs step, or None for a pass with no run to see: none in the store and no
        WorkflowRun declared. Such a pass costs one small query instead of the step, and never
        loads the workflow machinery (decision 92)."""
        if not p.desired.runs and not await anyio.to_thread.run_sync(p.ctx.store.has_runs):
            return None
        if self.runs_step is None:
            from controller.runtime import runs  # the workflow machinery: only with runs

            self.runs_step = runs.RunsStep()
        return self.runs_step

    async def observe(
        self, desired: DesiredState | None = None, hosting: hosts.Hosting | None = None
    ) -> world.Observed:
        """Read every source once, concurrently (tmux only when some agent uses it).

        With ``hosting`` (many hosts), the inventory rows of other hosts are set aside first:
        their PIDs and panes are another machine's, never looked up here.
        """
        w = self.wiring
        hosting = hosting or hosts.Hosting(me=w.paths.host)
        everyone = await anyio.to_thread.run_sync(w.store.agent_records)
        agents, foreign_agents = hosts.split(hosting, everyone)
        results: dict[str, Any] = {}

        async def read(name: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
            results[name] = await fn(*args)

        async with anyio.create_task_group() as group:
            group.start_soon(read, "worktrees", git.observe_worktrees, w.runner, w.paths.repo)
            group.start_soon(read, "branches", git.observe_branches, w.runner, w.paths.repo)
            group.start_soon(read, "root", git.observe_root, w.paths.root)
            group.start_soon(read, "records", _records, w)
            group.start_soon(read, "panes", self._panes, desired, agents)
            pids = [a.pid for a in agents.values() if a.pid is not None]
            marker = str(w.paths.state_dir / "run" / "env-")
            scan = functools.partial(processes.observe_processes, pids, launcher_marker=marker)
            group.start_soon(read, "scan", scan)
            run_dir = w.paths.state_dir / "run"
            logs = {a.binding: a.log_path for a in agents.values() if a.log_path}
            group.start_soon(read, "activity", processes.observe_log_activity, logs)
            supervising = (a for a in agents.values() if a.runtime == "process")
            launchers = {a.binding: a.pid for a in supervising if a.pid is not None}
            group.start_soon(read, "supervised", processes.observe_supervised, run_dir, launchers)
        # Exit files are read after the process scan, never alongside it: a launcher writes
        # its agent's status before it exits, so one seen gone has left its file already.
        results["exits"] = await processes.observe_exits(run_dir)
        if _settling(agents, results["panes"], results["scan"][0]):
            # tmux (built with libutempter, as Debian does) can miss a SIGCHLD and never reap
            # an agent (tmux#311, #4559); a second SIGCHLD makes it collect the status.
            await self._nudge(results["panes"])
            results["panes"] = await self._panes(desired, agents)
        strangers = strays.unowned(results["panes"], agents)
        server = next((p.server_pid for p in strangers if p.server_pid), None)
        pids = [p.pid for p in strangers if p.pid]
        unrecorded = await processes.observe_unrecorded(pids, parent=server)
        records, foreign = hosts.split(hosting, results["records"])
        leases = await self._leases() if hosting.enabled else None
        return world.Observed(
            repo=str(w.paths.repo),
            root=str(w.paths.root),
            worktrees=results["worktrees"],
            root_entries=results["root"],
            branches=results["branches"],
            records=records,
            panes=results["panes"],
            processes=results["scan"][0],
            launched=results["scan"][1],
            agents=agents,
            exits=results["exits"],
            log_activity=results["activity"],
            supervised=results["supervised"],
            unrecorded=unrecorded,
            foreign=foreign,
            foreign_agents=foreign_agents,
            leases=leases,
        )

    async def _leases(self) -> world.Leases:
        from controller.store import leases  # many hosts only

        return await anyio.to_thread.run_sync(leases.read, self.wiring.store)

    async def _nudge(self, panes: tuple[world.Pane, ...]) -> None:
        server = next((p.server_pid for p in panes if p.server_pid), None)
        if server is not None:
            with contextlib.suppress(OSError):
                os.kill(server, signal.SIGCHLD)
            await self.wiring.clock.sleep(NUDGE_WAIT)

    async def _panes(
        self, desired: DesiredState | None, agents: Mapping[str, world.AgentRecord]
    ) -> tuple[world.Pane, ...] | world.Unknown:
        """Panes of the workspace's server; skipped (empty) when nothing uses tmux."""
        tmux_bindings = desired is not None and any(
            b.spec.runtime == "tmux" for b in desired.bindings.values()
        )
        if self.wiring.tmux is None or not (tmux_bindings or agents):
            return ()
        return await tmux_observer.observe_panes(self.wiring.tmux)

    async def begin(
        self,
        desired: DesiredState,
        *,
        correlation: str | None = None,
        allow_empty: bool = False,
        on_outcome: apply.OnOutcome | None = None,
        selection: frozenset[str] | None = None,
    ) -> steps_.Pass:
        """Observe once and gather what every step plans from.

        A ``selection`` (``--lane``) naming a lane that is neither declared, nor in the
        inventory, nor a run task's lane raises ``UnknownLanes`` before anything is done.
        """
        desired = wiring.effective(self.wiring.paths, desired)
        now = self.wiring.clock.now()
        hosting = hosts.hosting(desired, self.wiring.paths.host)
        observed = await self.observe(desired, hosting)
        await self._check_selection(selection, desired, observed)
        memories = await anyio.to_thread.run_sync(self.wiring.store.memories)
        if hosting.enabled:  # another host's lanes: its backoff is its own
            keep = {*observed.records, *(n for n in desired.lanes if hosting.owns(n))}
            memories = {n: m for n, m in memories.items() if n in keep}
        ctx = self.context(correlation or uuid.uuid4().hex[:16])
        if not isinstance(observed.panes, world.Unknown):
            ctx.pass_state.sessions.update({p.session_name: p.session_id for p in observed.panes})
        return steps_.Pass(
            hosts.restrict(desired, hosting, observed.foreign),
            observed,
            now,
            memories,
            ctx,
            allow_empty=allow_empty,
            on_outcome=on_outcome,
            selection=selection,
            hosting=hosting,
        )

    async def _check_selection(
        self, selection: frozenset[str] | None, desired: DesiredState, observed: world.Observed
    ) -> None:
        if selection is None:
            return
        from controller.store import runs as runs_store  # run tasks' lanes may be selected too

        tasks = await anyio.to_thread.run_sync(runs_store.tasks, self.wiring.store)
        known = {*desired.lanes, *observed.records, *observed.foreign}
        known |= {t.lane for t in tasks.values()}
        unknown = sorted(selection - known)
        if unknown:
            shown = ", ".join(sorted(known)) or "none"
            raise UnknownLanes(
                f"--lane {', '.join(unknown)}: no such lane (neither declared nor in the "
                f"inventory); lanes: {shown}"
            )

    async def plan(
        self,
        desired: DesiredState,
        *,
        allow_empty: bool = False,
        selection: frozenset[str] | None = None,
    ) -> tuple[planner.Plan, world.Observed, datetime]:
        """Observe and plan every step, changing nothing; the lanes step's plan first."""
        p = await self.begin(desired, allow_empty=allow_empty, selection=selection)
        runs_step = await self._runs(p)
        runs_plan = await runs_step.plan(p) if runs_step is not None else None
        the_plan = _with_runs(await self.lanes_step.plan(p), runs_plan)
        return self._noted(the_plan), p.observed, p.now

    async def run_pass(
        self,
        desired: DesiredState,
        *,
        allow_empty: bool = False,
        on_outcome: apply.OnOutcome | None = None,
        selection: frozenset[str] | None = None,
        correlation: str | None = None,
    ) -> PassResult:
        """One full pass: observe once, then each step plans and applies in turn.

        With a ``selection`` (``--lane``) the pass acts on those lanes only (see ``planner``).
        """
        p = await self.begin(
            desired,
            correlation=correlation,
            allow_empty=allow_empty,
            on_outcome=on_outcome,
            selection=selection,
        )
        await self._sync_policies(p.desired, p.observed, selection)
        the_plan = planner.Plan()
        runs_step = await self._runs(p)
        runs_plan: runs.RunsPlan | None = None
        results: dict[str, steps_.StepResult] = {}
        steps: tuple[steps_.Step | None, ...] = (runs_step, self.lanes_step, self.wakes_step)
        for step in (s for s in steps if s is not None):
            step_plan = await step.plan(p)
            if isinstance(step_plan, planner.Plan):
                the_plan = step_plan
            elif step is runs_step:
                runs_plan = step_plan
            results[step.name] = await step.apply(p, step_plan)
        the_plan = _with_runs(the_plan, runs_plan)
        self._reap()
        outcomes = tuple(o for r in results.values() for o in r.outcomes)
        wakes_ = tuple(w for r in results.values() for w in r.wakes)
        return PassResult(
            self._noted(the_plan),
            p.observed,
            outcomes,
            p.ctx.correlation_id,
            p.now,
            wakes_,
            results,
        )

    def _noted(self, the_plan: planner.Plan) -> planner.Plan:
        if not self.wiring.paths.recalled:
            return the_plan
        note = (
            f"no Workspace is declared; using the last one declared here "
            f"({self.wiring.paths.workspace}, from .lanes/{wiring.WORKSPACE_MEMORY})"
        )
        return dataclasses.replace(the_plan, notices=(note, *the_plan.notices))

    async def wake_step(
        self, desired: DesiredState, ctx: Context | None = None
    ) -> tuple[list[deliver.Envelope], datetime | None]:
        """The wake step alone (the daemon's quick wakes between passes)."""
        return await self.wakes_step.work(ctx or self.context(uuid.uuid4().hex[:16]), desired)

    def _reap(self) -> None:
        """Collect process-runtime launchers that ended (the daemon outlives them)."""
        self.children[:] = [child for child in self.children if child.poll() is None]

    def context(self, correlation: str) -> Context:
        """The executors' context for one pass."""
        return Context(self.wiring, correlation, PassState(self.children))

    async def _sync_policies(
        self,
        desired: DesiredState,
        observed: world.Observed,
        selection: frozenset[str] | None = None,
    ) -> None:
        """Keep each (selected) record's cleanup policy equal to what its lane last declared."""
        now = self.wiring.clock.now()
        for name, record in observed.records.items():
            if selection is not None and name not in selection:
                continue
            lane = desired.lanes.get(name)
            if lane is not None and lane.spec.on_dirty_cleanup != record.on_dirty:
                update = functools.partial(
                    self.wiring.store.update_lane, name, now, on_dirty=lane.spec.on_dirty_cleanup
                )
                await anyio.to_thread.run_sync(update)


def _with_runs(the_plan: planner.Plan, runs_plan: runs.RunsPlan | None) -> planner.Plan:
    """One plan to show: the runs' actions first (they come first), then the lanes'."""
    if runs_plan is None:
        return the_plan
    if not runs_plan.actions and not runs_plan.notices and not runs_plan.unselected:
        return the_plan
    return dataclasses.replace(
        the_plan,
        actions=(*runs_plan.actions, *the_plan.actions),
        notices=(*the_plan.notices, *runs_plan.notices),
        unselected=(*runs_plan.unselected, *the_plan.unselected),
    )


async def _records(w: Wiring) -> Mapping[str, world.LaneRecord]:
    return await anyio.to_thread.run_sync(w.store.lane_records)


def _settling(
    agents: Mapping[str, world.AgentRecord],
    panes: tuple[world.Pane, ...] | world.Unknown,
    procs: Mapping[int, world.Proc] | world.Unknown,
) -> bool:
    """Whether some tmux agent's process ended but tmux has not reported its status."""
    if isinstance(panes, world.Unknown) or isinstance(procs, world.Unknown):
        return False
    by_id = {p.pane_id: p for p in panes}
    for record in agents.values():
        pane = by_id.get(record.pane_id or "")
        if record.runtime != "tmux" or record.state != world.AgentState.RUNNING or pane is None:
            continue
        ended = not lifecycle.same_process(procs.get(record.pid or -1), record)
        if ended and pane.pid == record.pid and not (pane.dead and pane.dead_status is not None):
            return True
    return False
