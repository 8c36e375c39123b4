"""What the audited overrides do: a forced (or asked-for) wake, lifting a block, re-queueing a
dead trigger job.

Each takes the workspace lock (a pass never sees half of one, and a wake never types into a
pane a pass is restarting), reads the time from the clock it is given, and records an event
with who asked and why. The commands in ``cli/`` only parse, call one of these, and print.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import anyio

from controller.core import world
from controller.core.safeguards.decisions import Reason
from controller.executors import triggers as deliver
from controller.runtime import reconcile, wiring
from controller.spec.state import DesiredState
from controller.store import events, jobs, messaging, participants, queries
from controller.system import clock, locks

OnWait = Callable[[int | None], None]
"""Called once, with the holder's pid, when the command waits for the workspace lock."""


@dataclass(frozen=True, slots=True)
class Target:
    """What a store-only override works on.

    ``lock`` is None when the command runs inside a lane with only the store's address (the
    agent's environment): the workspace's files may not be there, and each change is one
    transaction of its own.
    """

    store: queries.Store
    clock: clock.Clock
    lock: Path | None
    lock_timeout: float
    on_wait: OnWait | None = None


@contextlib.asynccontextmanager
async def _locked(target: Target) -> AsyncIterator[None]:
    if target.lock is None:
        yield
        return
    wait, on_wait = target.lock_timeout, target.on_wait
    async with locks.workspace_lock(target.lock, wait=wait, on_wait=on_wait):
        yield


# -- trigger ------------------------------------------------------------------------------------


async def trigger(
    rec: reconcile.Reconciler,
    desired: DesiredState,
    participant: str,
    thread: str,
    *,
    force: bool,
    reason: str | None,
    caller: str | None,
    lock_timeout: float,
    on_wait: OnWait | None = None,
) -> deliver.Envelope:
    """Queue a wake of ``participant`` about ``thread`` now and take it one step further.

    Under the workspace lock: the wake may resume or spawn the participant's agent, which a pass
    must not be starting or stopping at the same time.
    """
    async with locks.workspace_lock(rec.wiring.paths.lock, wait=lock_timeout, on_wait=on_wait):
        ctx = rec.context(uuid.uuid4().hex[:16])
        seq = await ctx.db(_newest, ctx.store, participant, thread)
        now = ctx.clock.now()
        job = await ctx.db(jobs.enqueue, ctx.store, participant, thread, seq, now, forced=force)
        if force:
            by = caller or wiring.who()
            why = str(reason)
            await ctx.emit(
                "TriggerForced", why, participant=participant, thread=thread, job=job.id, by=by
            )
        done = await rec.waker.work(ctx, desired, job_id=job.id)
    if done:
        return done[0]
    busy = "another worker holds this participant's wake; it will follow"
    return deliver.Envelope(deliver.Result.QUEUED, "queued", participant, thread, job.id, busy)


def _newest(store: queries.Store, participant: str, thread: str) -> int:
    """The sequence number a wake of ``participant`` covers: its newest unread, else the head."""
    unread = messaging.unread(store, [(participant, thread)])
    return unread[0].last_seq if unread else messaging.heads(store).get(thread, 0)


# -- unblock ------------------------------------------------------------------------------------


async def unblock(target: Target, participant: str, *, reason: str) -> list[str]:
    """Lift the participant's crash-loop blocks (its bindings) and its wake block; audited.

    Returns what was lifted: the bindings' names, and ``wakes`` for the wake block.
    """
    store = target.store
    async with _locked(target):
        now = target.clock.now()
        lifted = await anyio.to_thread.run_sync(_unblock_agents, store, participant, reason, now)
        if await anyio.to_thread.run_sync(_unblock_wakes, store, participant, reason, now):
            lifted.append("wakes")
    return lifted


def _unblock_agents(
    store: queries.Store, participant: str, reason: str, now: datetime
) -> list[str]:
    records = [a for a in store.agent_records().values() if a.participant == participant]
    lifted = [a.binding for a in records if a.state == world.AgentState.BLOCKED]
    for name in lifted:
        store.update_agents(
            now,
            where={"binding": name},
            state=world.AgentState.EXITED,
            blocked=None,
            deaths=(),
            consecutive=0,
            next_start_at=now,
        )
    if lifted:
        data = {"by": wiring.who(), "bindings": lifted}
        store.append_events([_event("ParticipantUnblocked", reason, now, participant, data)])
    return lifted


def _unblock_wakes(store: queries.Store, participant: str, reason: str, now: datetime) -> bool:
    """Lift a loop-safeguard block (counters reset); True if there was one."""
    state = participants.get(store, participant)
    if state.blocked is None:
        return False
    participants.put(store, participant, participants.State(), now)  # a fresh start
    data = {"by": wiring.who(), "was": state.blocked}
    store.append_events([_event("ParticipantUnblocked", reason, now, participant, data)])
    return True


# -- triggers retry -----------------------------------------------------------------------------


async def retry_job(target: Target, job: int, *, reason: str) -> jobs.Job | None:
    """Re-queue a dead trigger job; audited. None if there is no such dead job."""
    async with _locked(target):
        now = target.clock.now()
        return await anyio.to_thread.run_sync(_retry_job, target.store, job, reason, now)


def _retry_job(store: queries.Store, job: int, reason: str, now: datetime) -> jobs.Job | None:
    again = jobs.retry(store, job, now)
    if again is not None:
        data = {
            "job": job,
            "requeuedAs": again.id,
            "by": wiring.who(),
            "code": str(Reason.RETRIED_BY_OPERATOR),
        }
        store.append_events([_event("TriggerRetried", reason, now, again.participant, data)])
    return again


def _event(
    kind: str, reason: str, now: datetime, participant: str, data: Mapping[str, object]
) -> events.Event:
    correlation = uuid.uuid4().hex[:16]
    return events.Event(kind, reason, now, correlation, participant=participant, data=data)
