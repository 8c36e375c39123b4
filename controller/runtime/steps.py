"""A pass is an ordered list of steps over one observation: each plans from the pass's state,
applies, and reports its outcomes, its failures and when it next falls due.

The pass observes the world once (``Pass``); a step may leave something for the steps after it
(the runs step leaves the desired state expanded with the runs' lanes and agents). ``plan``
never changes anything: ``controller plan`` and ``status`` call only that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from controller.core import hosts, memory, planner, world
from controller.executors.context import Context, Outcome
from controller.runtime import apply
from controller.spec.state import DesiredState

if TYPE_CHECKING:
    from controller.executors import triggers as deliver
    from controller.runtime import wakes


@dataclass(slots=True)
class Pass:
    """What one pass knows: desired state (and its expansion), the observation, the clock."""

    desired: DesiredState
    observed: world.Observed
    now: datetime
    memories: Mapping[str, memory.LaneMemory]
    ctx: Context
    allow_empty: bool = False
    expanded: DesiredState | None = None  # desired plus the runs' lanes and agents
    released: frozenset[str] = frozenset()  # lanes of cleaned runs: removed, never guarded
    notices: list[str] = field(default_factory=list)
    on_outcome: apply.OnOutcome | None = None
    selection: frozenset[str] | None = None  # --lane: the lanes this pass may act on
    hosting: hosts.Hosting = field(default_factory=lambda: hosts.Hosting(me=""))

    @property
    def effective(self) -> DesiredState:
        """What the lanes step reconciles: the expansion when there is one."""
        return self.expanded if self.expanded is not None else self.desired

    @property
    def blind(self) -> bool:
        """Whether some source could not be read (so nothing is done)."""
        o = self.observed
        sources = (o.worktrees, o.root_entries, o.branches, o.panes, o.processes)
        return any(isinstance(v, world.Unknown) for v in sources)


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one step did."""

    outcomes: tuple[Outcome, ...] = ()
    next_due: datetime | None = None
    wakes: tuple[deliver.Envelope, ...] = ()

    @property
    def failed(self) -> tuple[Outcome, ...]:
        """Outcomes that failed."""
        return tuple(o for o in self.outcomes if o.failed)


class Step(Protocol):
    """One step of a pass."""

    name: str

    async def plan(self, p: Pass) -> Any:
        """What the step would do now; changes nothing."""
        ...

    async def apply(self, p: Pass, plan: Any) -> StepResult:
        """Do it."""
        ...


@dataclass(slots=True)
class LanesStep:
    """Lanes and agents: the planner over the (expanded) desired state, then the executors."""

    locks: apply.LaneLocks = field(default_factory=apply.LaneLocks)
    name: str = "lanes"

    async def plan(self, p: Pass) -> planner.Plan:
        """The lane and agent actions (and, with many hosts, the conditions of the lanes this
        host leaves alone: `Unscheduled`, `HostLost`)."""
        the_plan = planner.plan(
            p.effective,
            p.observed,
            p.memories,
            p.now,
            allow_empty=p.allow_empty,
            released=p.released,
            selection=p.selection,
        )
        others = hosts.conditions(p.hosting, p.observed.foreign, p.observed.leases)
        if not others:
            return the_plan
        merged = {**the_plan.conditions}
        for lane, found in others.items():
            merged[lane] = (*merged.get(lane, ()), *found)
        return dataclasses.replace(the_plan, conditions=merged)

    async def apply(self, p: Pass, plan: planner.Plan) -> StepResult:
        """Apply per lane (lanes in parallel), then remember failures for backoff."""
        outcomes = await apply.apply(
            plan.actions,
            p.ctx,
            limit=p.effective.workspace.spec.max_parallel_lanes,
            locks=self.locks,
            on_outcome=p.on_outcome,
        )
        store = p.ctx.store
        before = await anyio.to_thread.run_sync(store.memories)
        if p.hosting.enabled:  # another host's lanes keep their memory as that host left it
            ours = {*p.observed.records, *p.effective.lanes}
            before = {name: m for name, m in before.items() if name in ours}
        after = remembered(plan, outcomes, before, p.now)
        if after != {k: v for k, v in before.items() if k in after}:
            await anyio.to_thread.run_sync(store.put_memories, after)
        due = [a.due_at for a in plan.actions if a.due_at is not None]
        due += [m.next_attempt_at for m in after.values() if m.next_attempt_at]
        due += [r.next_start_at for r in p.observed.agents.values() if r.next_start_at]
        return StepResult(tuple(outcomes), _earliest(due, after=p.now))


@dataclass(slots=True)
class WakesStep:
    """Unread messages become trigger jobs, and due jobs are worked (never on a blind pass, and
    never on a ``--lane`` pass: a wake types into a participant's window, whatever its lane).

    The wake machinery (the trigger queue, delivery, SQLAlchemy) loads with the first wake
    worked: a workspace without threads never loads it.
    """

    loaded: wakes.Waker | None = None
    name: str = "wakes"

    @property
    def waker(self) -> wakes.Waker:
        """The trigger queue's worker, created on first use."""
        if self.loaded is None:
            from controller.runtime import wakes  # the trigger queue and delivery: on first use

            self.loaded = wakes.Waker()
        return self.loaded

    async def plan(self, p: Pass) -> None:
        """Wakes are decided job by job when they are worked; nothing to show ahead."""
        return None

    async def apply(self, p: Pass, plan: None) -> StepResult:
        """Enqueue wanted wakes and work the due jobs."""
        if not p.desired.threads or p.blind or p.selection is not None:
            return StepResult()
        envelopes, due = await self.work(p.ctx, p.desired)
        return StepResult(wakes=tuple(envelopes), next_due=due)

    async def work(
        self, ctx: Context, desired: DesiredState
    ) -> tuple[list[deliver.Envelope], datetime | None]:
        """Enqueue wakes due now, work due jobs; return results and the next due time."""
        from controller.runtime import wakes  # the trigger queue: only with threads declared
        from controller.store import jobs

        await self.waker.enqueue_wanted(ctx, desired)
        envelopes = await self.waker.work(ctx, desired)
        mine = wakes.delivered_here(desired, ctx.wiring.paths.host)
        due = await anyio.to_thread.run_sync(jobs.next_due, ctx.store, mine)
        return envelopes, due


def remembered(
    the_plan: planner.Plan,
    outcomes: list[Outcome],
    before: Mapping[str, memory.LaneMemory],
    now: datetime,
) -> dict[str, memory.LaneMemory]:
    """The memory of every lane after this pass (lanes with nothing to do are reset).

    Only actions that back off (``backs_off``) count as "applied and planned again": agent
    restarts have their own backoff and crash-loop guard (core.lifecycle). Lanes held back
    (pending, or outside a ``--lane`` selection) keep their memory as it is.
    """
    pending = {a.lane for a in (*the_plan.pending, *the_plan.unselected)}
    after: dict[str, memory.LaneMemory] = {}
    for lane in set(before) | set(the_plan.lanes):
        if lane in pending:
            continue
        mine = [o for o in outcomes if o.action.lane == lane]
        failure = next((o.message for o in mine if o.failed), None)
        applied = tuple(o.action.key for o in mine if o.status == "applied" and o.action.backs_off)
        previous = before.get(lane, memory.LaneMemory())
        after[lane] = memory.remember(previous, applied=applied, error=failure, now=now)
    return after


def _earliest(times: list[datetime], *, after: datetime) -> datetime | None:
    return min((t for t in times if t > after), default=None)


def with_agents(p: Pass, agents: Mapping[str, world.AgentRecord]) -> None:
    """Refresh the agent inventory a later step plans from (an earlier step changed it):
    this host's records only, as ``Reconciler.observe`` split them."""
    mine, _ = hosts.split(p.hosting, agents)
    p.observed = dataclasses.replace(p.observed, agents=mine)
