"""One reconcile pass: observe every source once, plan, apply, remember.

Level-triggered: a pass recomputes everything from the desired state and what it sees now;
nothing depends on having seen an earlier event.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import anyio

from controller.core import memory, planner, world
from controller.executors.context import Context, Outcome
from controller.observers import git
from controller.runtime import apply
from controller.runtime.wiring import Wiring
from controller.spec.state import DesiredState


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one pass saw, planned and did."""

    plan: planner.Plan
    observed: world.Observed
    outcomes: tuple[Outcome, ...] = ()
    correlation_id: str = ""
    started: datetime | None = None

    @property
    def failed(self) -> tuple[Outcome, ...]:
        """Outcomes that failed."""
        return tuple(o for o in self.outcomes if o.failed)

    @property
    def blind(self) -> bool:
        """Whether some source could not be read (so nothing was done)."""
        return any(
            isinstance(v, world.Unknown)
            for v in (self.observed.worktrees, self.observed.root_entries, self.observed.branches)
        )


@dataclass(slots=True)
class Reconciler:
    """Runs passes for one workspace; the daemon keeps one for its whole life."""

    wiring: Wiring
    locks: apply.LaneLocks = field(default_factory=apply.LaneLocks)

    async def observe(self) -> world.Observed:
        """Read every source once, concurrently."""
        w = self.wiring
        results: dict[str, object] = {}

        async def read(name: str, fn: object, *args: object) -> None:
            results[name] = await fn(*args)  # type: ignore[operator]

        async with anyio.create_task_group() as group:
            group.start_soon(read, "worktrees", git.observe_worktrees, w.runner, w.paths.repo)
            group.start_soon(read, "branches", git.observe_branches, w.runner, w.paths.repo)
            group.start_soon(read, "root", git.observe_root, w.paths.root)
            group.start_soon(read, "records", _records, w)
        return world.Observed(
            repo=str(w.paths.repo),
            root=str(w.paths.root),
            worktrees=results["worktrees"],  # type: ignore[arg-type]
            root_entries=results["root"],  # type: ignore[arg-type]
            branches=results["branches"],  # type: ignore[arg-type]
            records=results["records"],  # type: ignore[arg-type]
        )

    async def plan(
        self, desired: DesiredState, *, allow_empty: bool = False
    ) -> tuple[planner.Plan, world.Observed, datetime]:
        """Observe and plan, changing nothing."""
        now = self.wiring.clock.now()
        observed = await self.observe()
        memories = await anyio.to_thread.run_sync(self.wiring.store.memories)
        result = planner.plan(desired, observed, memories, now, allow_empty=allow_empty)
        return result, observed, now

    async def run_pass(
        self,
        desired: DesiredState,
        *,
        allow_empty: bool = False,
        on_outcome: apply.OnOutcome | None = None,
    ) -> PassResult:
        """One full pass: observe, plan, apply, remember."""
        correlation = uuid.uuid4().hex[:16]
        the_plan, observed, now = await self.plan(desired, allow_empty=allow_empty)
        await self._sync_policies(desired, observed)
        ctx = self._context(correlation)
        outcomes = await apply.apply(
            the_plan.actions,
            ctx,
            limit=desired.workspace.spec.max_parallel_lanes,
            locks=self.locks,
            on_outcome=on_outcome,
        )
        await self._remember(the_plan, outcomes, now)
        return PassResult(the_plan, observed, tuple(outcomes), correlation, now)

    def _context(self, correlation: str) -> Context:
        w = self.wiring
        return Context(
            runner=w.runner,
            store=w.store,
            clock=w.clock,
            repo=w.paths.repo,
            root=w.paths.root,
            state_dir=w.paths.state_dir,
            correlation_id=correlation,
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
        applied = tuple(o.action.key for o in mine if o.status == "applied")
        previous = before.get(lane, memory.LaneMemory())
        after[lane] = memory.remember(previous, applied=applied, error=failure, now=now)
    return after


async def _records(w: Wiring) -> Mapping[str, world.LaneRecord]:
    return await anyio.to_thread.run_sync(w.store.lane_records)
