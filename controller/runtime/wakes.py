"""The wake step of a pass: turn unread messages into trigger jobs, then work the due ones.

Jobs of different participants run concurrently; jobs of one participant run one after another
(two wakes must never type into one pane at the same time). Each worker has its own lease
owner id; on shutdown it gives its leases back.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio

from controller.core import hosts, triggers
from controller.core.safeguards.decisions import Reason
from controller.executors import triggers as deliver
from controller.executors.context import Context
from controller.spec.state import DesiredState
from controller.store import jobs, messaging

LEASE_SECONDS = 120.0  # longer than any single delivery (collision waits are deferrals)
PARALLEL = 8


def new_owner() -> str:
    """A lease owner id: host, and a random part unique to this worker."""
    return f"{socket.gethostname()}:{uuid.uuid4().hex[:12]}"


@dataclass(slots=True)
class Waker:
    """Works the trigger queue for one workspace."""

    owner: str = field(default_factory=new_owner)

    async def enqueue_wanted(self, ctx: Context, desired: DesiredState) -> int:
        """Create (or coalesce) a job for every wake due now; return how many."""
        pairs = triggers.members(desired)
        unread = await ctx.db(messaging.unread, ctx.store, pairs)
        wanted = triggers.wanted(desired, unread)
        now = ctx.clock.now()
        for wake in wanted:
            await ctx.db(
                jobs.enqueue, ctx.store, wake.participant, wake.thread, wake.unread_seq, now
            )
        return len(wanted)

    async def work(
        self, ctx: Context, desired: DesiredState, *, job_id: int | None = None, limit: int = 64
    ) -> list[deliver.Envelope]:
        """Claim due jobs (or the one ``job_id``) and take each one step further."""
        now = ctx.clock.now()
        only = delivered_here(desired, ctx.wiring.paths.host)
        claimed = await ctx.db(
            jobs.claim,
            ctx.store,
            self.owner,
            now,
            lease=LEASE_SECONDS,
            limit=limit,
            job_id=job_id,
            participants=only,
        )
        by_participant: dict[str, list[jobs.Job]] = {}
        for job in claimed:
            by_participant.setdefault(job.participant, []).append(job)
        results: list[deliver.Envelope] = []
        limiter = anyio.CapacityLimiter(PARALLEL)

        async def run(group: Sequence[jobs.Job]) -> None:
            async with limiter:
                for job in group:
                    results.append(await self._one(ctx, desired, job))

        async with anyio.create_task_group() as tasks:
            for group in by_participant.values():
                tasks.start_soon(run, group)
        return results

    async def _one(self, ctx: Context, desired: DesiredState, job: jobs.Job) -> deliver.Envelope:
        try:
            return await deliver.process(job, ctx, desired, self.owner)
        except Exception as exc:  # one broken job must not stop the others: record and retry
            failed = f"{type(exc).__name__}: {exc}"
            step = triggers.Step(triggers.Kind.FAIL, Reason.SEND_FAILED, failed)
            claim = deliver.Claim.unobserved(job, self.owner)
            return await deliver.fail(ctx, desired, claim, step)

    async def release(self, ctx: Context) -> int:
        """Give back every lease this worker holds (graceful shutdown)."""
        return await ctx.db(jobs.release, ctx.store, self.owner, ctx.clock.now())


def delivered_here(desired: DesiredState, host: str) -> frozenset[str] | None:
    """With `hosts`: the participants whose lane this host owns (only it delivers their wakes;
    another host's wait for it, a lost host's until it returns). None: every participant."""
    mine = hosts.hosting(desired, host)
    if not mine.enabled:
        return None
    return frozenset(
        b.spec.participant for b in desired.bindings.values() if mine.owns(b.spec.lane)
    )
