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
from typing import Any

import anyio

from controller.core import actions, lifecycle, memory, planner, strays, world
from controller.executors import triggers as deliver
from controller.executors.context import Context, Outcome
from controller.observers import git, processes
from controller.observers import tmux as tmux_observer
from controller.runtime import apply, wakes, wiring
from controller.runtime.wiring import Wiring
from controller.spec.state import DesiredState
from controller.store import jobs

NUDGE_WAIT = 0.1


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one pass saw, planned and did."""

    plan: planner.Plan
    observed: world.Observed
    outcomes: tuple[Outcome, ...] = ()
    correlation_id: str = ""
    started: datetime | None = None
    wakes: tuple[deliver.Envelope, ...] = ()
    queue_due: datetime | None = None

    @property
    def failed(self) -> tuple[Outcome, ...]:
        """Outcomes that failed."""
        return tuple(o for o in self.outcomes if o.failed)

    def next_due(self, memories: Mapping[str, memory.LaneMemory] | None = None) -> datetime | None:
        """The earliest future time something is due (a restart, a retry), if any."""
        times = [a.next_start_at for a in self.observed.agents.values() if a.next_start_at]
        times += [m.next_attempt_at for m in (memories or {}).values() if m.next_attempt_at]
        for action in self.plan.actions:
            if isinstance(action, actions.RecordExit) and action.exit and action.exit.next_start_at:
                times.append(action.exit.next_start_at)
        if self.queue_due is not None:
            times.append(self.queue_due)
        future = [t for t in times if self.started is None or t > self.started]
        return min(future, default=None)

    @property
    def failed_wakes(self) -> tuple[deliver.Envelope, ...]:
        """Wakes whose attempt failed (queued for a retry) or that died."""
        failing = {"dead", "submit_unconfirmed"}
        return tuple(
            w for w in self.wakes
            if w.result in failing or (w.result == "queued" and w.reason == "send_failed")
        )  # fmt: skip

    @property
    def blind(self) -> bool:
        """Whether some source could not be read (so nothing was done)."""
        o = self.observed
        sources = (o.worktrees, o.root_entries, o.branches, o.panes, o.processes)
        return any(isinstance(v, world.Unknown) for v in sources)


@dataclass(slots=True)
class Reconciler:
    """Runs passes for one workspace; the daemon keeps one for its whole life."""

    wiring: Wiring
    locks: apply.LaneLocks = field(default_factory=apply.LaneLocks)
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    waker: wakes.Waker = field(default_factory=wakes.Waker)

    async def observe(self, desired: DesiredState | None = None) -> world.Observed:
        """Read every source once, concurrently (tmux only when some agent uses it)."""
        w = self.wiring
        agents = await anyio.to_thread.run_sync(w.store.agent_records)
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
            group.start_soon(read, "scan", functools.partial(
                processes.observe_processes, pids, launcher_marker=marker))  # fmt: skip
            run_dir = w.paths.state_dir / "run"
            group.start_soon(read, "exits", processes.observe_exits, run_dir)
            logs = {a.binding: a.log_path for a in agents.values() if a.log_path}
            group.start_soon(read, "activity", processes.observe_log_activity, logs)
            supervising = (a for a in agents.values() if a.runtime == "process")
            launchers = {a.binding: a.pid for a in supervising if a.pid is not None}
            group.start_soon(read, "supervised", processes.observe_supervised, run_dir, launchers)
        if _settling(agents, results["panes"], results["scan"][0]):
            # tmux (built with libutempter, as Debian does) can miss a SIGCHLD and never reap
            # an agent (tmux#311, #4559); a second SIGCHLD makes it collect the status.
            await self._nudge(results["panes"])
            results["panes"] = await self._panes(desired, agents)
        strangers = strays.unowned(results["panes"], agents)
        server = next((p.server_pid for p in strangers if p.server_pid), None)
        pids = [p.pid for p in strangers if p.pid]
        unrecorded = await processes.observe_unrecorded(pids, parent=server)
        return world.Observed(
            repo=str(w.paths.repo),
            root=str(w.paths.root),
            worktrees=results["worktrees"],
            root_entries=results["root"],
            branches=results["branches"],
            records=results["records"],
            panes=results["panes"],
            processes=results["scan"][0],
            launched=results["scan"][1],
            agents=agents,
            exits=results["exits"],
            log_activity=results["activity"],
            supervised=results["supervised"],
            unrecorded=unrecorded,
        )

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

    async def plan(
        self, desired: DesiredState, *, allow_empty: bool = False
    ) -> tuple[planner.Plan, world.Observed, datetime]:
        """Observe and plan, changing nothing."""
        desired = wiring.effective(self.wiring.paths, desired)
        now = self.wiring.clock.now()
        observed = await self.observe(desired)
        memories = await anyio.to_thread.run_sync(self.wiring.store.memories)
        result = planner.plan(desired, observed, memories, now, allow_empty=allow_empty)
        if self.wiring.paths.recalled:
            note = (
                f"no Workspace is declared; using the last one declared here "
                f"({self.wiring.paths.workspace}, from .lanes/{wiring.WORKSPACE_MEMORY})"
            )
            result = dataclasses.replace(result, notices=(note, *result.notices))
        return result, observed, now

    async def run_pass(
        self,
        desired: DesiredState,
        *,
        allow_empty: bool = False,
        on_outcome: apply.OnOutcome | None = None,
    ) -> PassResult:
        """One full pass: observe, plan, apply, remember."""
        desired = wiring.effective(self.wiring.paths, desired)
        correlation = uuid.uuid4().hex[:16]
        the_plan, observed, now = await self.plan(desired, allow_empty=allow_empty)
        await self._sync_policies(desired, observed)
        ctx = self.context(correlation)
        if not isinstance(observed.panes, world.Unknown):
            ctx.sessions.update({p.session_name: p.session_id for p in observed.panes})
        outcomes = await apply.apply(
            the_plan.actions,
            ctx,
            limit=desired.workspace.spec.max_parallel_lanes,
            locks=self.locks,
            on_outcome=on_outcome,
        )
        await self._remember(the_plan, outcomes, now)
        self._reap()
        result = PassResult(the_plan, observed, tuple(outcomes), correlation, now)
        return await self.wake(desired, result, ctx)

    async def wake(
        self, desired: DesiredState, result: PassResult, ctx: Context | None = None
    ) -> PassResult:
        """The wake step: enqueue what unread messages call for, then work due jobs."""
        if not desired.threads or result.blind:
            return result
        envelopes, due = await self.wake_step(desired, ctx)
        return dataclasses.replace(result, wakes=tuple(envelopes), queue_due=due)

    async def wake_step(
        self, desired: DesiredState, ctx: Context | None = None
    ) -> tuple[list[deliver.Envelope], datetime | None]:
        """Enqueue wakes due now, work due jobs; return results and the next due time."""
        ctx = ctx or self.context(uuid.uuid4().hex[:16])
        await self.waker.enqueue_wanted(ctx, desired)
        envelopes = await self.waker.work(ctx, desired)
        due = await anyio.to_thread.run_sync(jobs.next_due, self.wiring.store)
        return envelopes, due

    def _reap(self) -> None:
        """Collect process-runtime launchers that ended (the daemon outlives them)."""
        self.children[:] = [child for child in self.children if child.poll() is None]

    def context(self, correlation: str) -> Context:
        w = self.wiring
        return Context(
            runner=w.runner,
            store=w.store,
            clock=w.clock,
            repo=w.paths.repo,
            root=w.paths.root,
            state_dir=w.paths.state_dir,
            correlation_id=correlation,
            tmux=w.tmux,
            agent_env=w.agent_env,
            python=w.python,
            state_url=w.paths.state_url,
            workspace=w.paths.workspace,
            desired=w.paths.desired,
            children=self.children,
        )

    async def _sync_policies(self, desired: DesiredState, observed: world.Observed) -> None:
        """Keep each record's cleanup policy equal to what its lane last declared."""
        now = self.wiring.clock.now()
        for name, record in observed.records.items():
            lane = desired.lanes.get(name)
            if lane is not None and lane.spec.on_dirty_cleanup != record.on_dirty:
                update = functools.partial(
                    self.wiring.store.update_lane, name, now, on_dirty=lane.spec.on_dirty_cleanup
                )
                await anyio.to_thread.run_sync(update)

    async def _remember(
        self, the_plan: planner.Plan, outcomes: list[Outcome], now: datetime
    ) -> None:
        store = self.wiring.store
        before = await anyio.to_thread.run_sync(store.memories)
        after = remembered(the_plan, outcomes, before, now)
        if after != {k: v for k, v in before.items() if k in after}:
            await anyio.to_thread.run_sync(store.put_memories, after)


def remembered(
    the_plan: planner.Plan,
    outcomes: list[Outcome],
    before: Mapping[str, memory.LaneMemory],
    now: datetime,
) -> dict[str, memory.LaneMemory]:
    """The memory of every lane after this pass (lanes with nothing to do are reset)."""
    pending = {a.lane for a in the_plan.pending}
    after: dict[str, memory.LaneMemory] = {}
    for lane in set(before) | set(the_plan.lanes):
        if lane in pending:
            continue
        mine = [o for o in outcomes if o.action.lane == lane]
        failure = next((o.message for o in mine if o.failed), None)
        # Agent actions are not "no progress" when repeated: restarts have their own backoff
        # and crash-loop guard (core.lifecycle).
        applied = tuple(
            o.action.key
            for o in mine
            if o.status == "applied"
            and not isinstance(
                o.action, actions.AgentAction | actions.KillStray | actions.KillStrayProcess
            )
        )
        previous = before.get(lane, memory.LaneMemory())
        after[lane] = memory.remember(previous, applied=applied, error=failure, now=now)
    return after


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
