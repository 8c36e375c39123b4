"""The trigger queue: one queued and one running job per participant and thread at most.

A claim takes due jobs with a lease in one statement (``UPDATE ... RETURNING``; on PostgreSQL
the candidates are picked ``FOR UPDATE SKIP LOCKED``), so concurrent workers never take the same
job. A worker that dies loses its lease; the job is reclaimed when the lease expires. Settling
a job checks the lease is still ours. Attempts are appended, never changed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from controller.store import queries, tables
from controller.store.queries import Store

J = tables.trigger_jobs
A = tables.trigger_attempts


class JobState(enum.StrEnum):
    """Where a job is in the queue."""

    QUEUED = "queued"  # waiting for ``due_at``
    RUNNING = "running"  # claimed: a worker holds its lease
    DONE = "done"  # finished (delivered, refused, handed to a person)
    DEAD = "dead"  # out of attempts; only ``triggers retry`` brings it back


SETTLED = (JobState.QUEUED, JobState.DONE, JobState.DEAD)
"""States a worker settles a job into: each gives the lease back."""


class Verdict(enum.StrEnum):
    """How one attempt of a job ended, as recorded."""

    DELIVERED = "delivered"  # typed and submitted (or a fresh session spawned)
    UNCONFIRMED = "unconfirmed"  # typed, but the prompt did not leave the input line
    DEFERRED = "deferred"  # not now (collision, rate limit, pane in a mode): no attempt used
    FAILED = "failed"  # counts against the retry budget
    FALLBACK = "fallback"  # the resume command was started; the wake follows
    RECLAIMED = "reclaimed"  # another worker's lease expired and this one took the job
    REFUSED = "refused"  # not allowed (not a member, closed thread, blocked participant)
    FALLBACK_REQUIRED = "fallback_required"  # a person must take over
    DONE = "done"  # nothing (more) to do


@dataclass(frozen=True, slots=True)
class Job:
    """One trigger job."""

    id: int
    participant: str
    thread: str
    state: JobState
    due_at: datetime
    unread_seq: int
    failures: int = 0
    resumes: int = 0
    first_check_at: datetime | None = None
    screen_hash: str | None = None
    forced: bool = False
    lease_owner: str | None = None
    lease_until: datetime | None = None
    prev_owner: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One recorded attempt of a job."""

    job_id: int
    at: datetime
    verdict: Verdict
    reason: str
    detail: str


def enqueue(
    store: Store,
    participant: str,
    thread: str,
    unread_seq: int,
    now: datetime,
    *,
    forced: bool = False,
) -> Job:
    """Queue a wake, or fold newer messages into the one already queued (idempotent)."""
    values = {
        "workspace": store.workspace,
        "participant": participant,
        "thread": thread,
        "state": JobState.QUEUED.value,
        "due_at": now,
        "unread_seq": unread_seq,
        "forced": forced,
        "created_at": now,
        "updated_at": now,
    }
    update: dict[str, Any] = {"unread_seq": _larger(store, unread_seq), "updated_at": now}
    if forced:
        update |= {"forced": True, "due_at": now}
    stmt = (
        queries.dialect_insert(store.engine, J)
        .values(**values)
        .on_conflict_do_update(
            index_elements=["workspace", "participant", "thread"],
            index_where=J.c.state == JobState.QUEUED.value,
            set_=update,
        )
        .returning(*J.c)
    )
    with store.engine.begin() as conn:
        return _job(conn.execute(stmt).mappings().one())


def _larger(store: Store, unread_seq: int) -> sa.ColumnElement[int]:
    """The queued job's ``unread_seq`` or this one, whichever is larger: SQLite's two-argument
    MAX is spelled GREATEST on PostgreSQL."""
    if store.engine.dialect.name == "postgresql":
        return sa.func.greatest(J.c.unread_seq, unread_seq)
    return sa.func.max(J.c.unread_seq, unread_seq)


def claim(
    store: Store,
    owner: str,
    now: datetime,
    *,
    lease: float,
    limit: int = 16,
    job_id: int | None = None,
    participants: frozenset[str] | None = None,
) -> list[Job]:
    """Take up to ``limit`` due jobs (or the one ``job_id``) with a lease, in one statement;
    with ``participants`` (many hosts: those of this host's lanes), only theirs."""
    pick = sa.select(J.c.id).where(J.c.workspace == store.workspace, _due(now))
    if job_id is not None:
        pick = pick.where(J.c.id == job_id)
    if participants is not None:
        pick = pick.where(J.c.participant.in_(sorted(participants)))
    pick = pick.order_by(J.c.due_at, J.c.id).limit(limit)
    if store.engine.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    stmt = (
        sa.update(J)
        .where(J.c.id.in_(pick.scalar_subquery()))
        .values(
            state=JobState.RUNNING.value,
            prev_owner=J.c.lease_owner,
            lease_owner=owner,
            lease_until=now + timedelta(seconds=lease),
            updated_at=now,
        )
        .returning(*J.c)
    )
    with store.engine.begin() as conn:
        return sorted((_job(row) for row in conn.execute(stmt).mappings()), key=lambda j: j.id)


def _due(now: datetime) -> sa.ColumnElement[bool]:
    """A job that may be claimed now: queued and due (and its participant's first, with none of
    its jobs running), or running on an expired lease."""
    r = J.alias("r")
    # One running wake per participant, whatever the thread: two must never type into one pane.
    busy = sa.exists().where(
        r.c.workspace == J.c.workspace,
        r.c.participant == J.c.participant,
        r.c.state == JobState.RUNNING.value,
    )
    q = J.alias("q")
    earlier = sa.exists().where(  # the participant's earliest due job goes first, alone
        q.c.workspace == J.c.workspace,
        q.c.participant == J.c.participant,
        q.c.state == JobState.QUEUED.value,
        q.c.due_at <= now,
        sa.or_(q.c.due_at < J.c.due_at, sa.and_(q.c.due_at == J.c.due_at, q.c.id < J.c.id)),
    )
    return sa.or_(
        sa.and_(J.c.state == JobState.QUEUED.value, J.c.due_at <= now, ~busy, ~earlier),
        sa.and_(J.c.state == JobState.RUNNING.value, J.c.lease_until < now),
    )


def settle(
    store: Store, job: Job, owner: str, now: datetime, *, state: JobState, **changes: Any
) -> bool:
    """Move a job we hold the lease of to ``state`` (and change ``changes``); False if the lease
    was lost (someone reclaimed it)."""
    state = JobState(state)  # a plain value too: bench's worker script passes "done"
    if state in SETTLED:
        changes |= {"lease_owner": None, "lease_until": None}
    stmt = (
        sa.update(J)
        .where(J.c.id == job.id, J.c.lease_owner == owner, J.c.state == JobState.RUNNING.value)
        .values(updated_at=now, state=state.value, **changes)
    )
    with store.engine.begin() as conn:
        return bool(conn.execute(stmt).rowcount)


def record(
    store: Store, job: Job, now: datetime, *, verdict: Verdict, reason: str, detail: str
) -> None:
    """Append one attempt."""
    values = {
        "workspace": store.workspace,
        "job_id": job.id,
        "participant": job.participant,
        "thread": job.thread,
        "at": now,
        "verdict": Verdict(verdict).value,  # a plain value too, as for ``settle``
        "reason": reason,
        "detail": detail[:2000],
    }
    with store.engine.begin() as conn:
        conn.execute(sa.insert(A).values(**values))


def release(store: Store, owner: str, now: datetime) -> int:
    """Give back every lease ``owner`` holds (graceful shutdown): those jobs are queued again."""
    stmt = (
        sa.update(J)
        .where(
            J.c.workspace == store.workspace,
            J.c.lease_owner == owner,
            J.c.state == JobState.RUNNING.value,
        )
        .values(state=JobState.QUEUED.value, lease_owner=None, lease_until=None, updated_at=now)
    )
    with store.engine.begin() as conn:
        return int(conn.execute(stmt).rowcount)


def retry(store: Store, job_id: int, now: datetime) -> Job | None:
    """Re-queue a dead job (due now, attempts reset); None if there is no such dead job."""
    with store.engine.begin() as conn:
        row = (
            conn.execute(
                sa.select(J).where(
                    J.c.workspace == store.workspace,
                    J.c.id == job_id,
                    J.c.state == JobState.DEAD.value,
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        conn.execute(
            sa.update(J).where(J.c.id == job_id).values(state=JobState.DONE.value, updated_at=now)
        )
    return enqueue(store, row["participant"], row["thread"], row["unread_seq"], now)


def jobs(store: Store, *, states: Iterable[JobState] | None = None, limit: int = 500) -> list[Job]:
    """Jobs, newest first."""
    query = sa.select(J).where(J.c.workspace == store.workspace)
    if states is not None:
        query = query.where(J.c.state.in_([JobState(s).value for s in states]))
    with store.engine.connect() as conn:
        rows = conn.execute(query.order_by(J.c.id.desc()).limit(limit)).mappings().all()
    return [_job(r) for r in rows]


def attempts(store: Store, job_ids: Sequence[int]) -> dict[int, list[Attempt]]:
    """Attempts of the given jobs, oldest first."""
    found: dict[int, list[Attempt]] = {i: [] for i in job_ids}
    if not job_ids:
        return found
    query = sa.select(A).where(A.c.job_id.in_(list(job_ids))).order_by(A.c.id)
    with store.engine.connect() as conn:
        for row in conn.execute(query).mappings():
            found[row["job_id"]].append(
                Attempt(
                    row["job_id"], row["at"], Verdict(row["verdict"]), row["reason"], row["detail"]
                )
            )
    return found


def counts(store: Store) -> dict[str, int]:
    """Number of jobs in each state."""
    query = (
        sa.select(J.c.state, sa.func.count())
        .where(J.c.workspace == store.workspace)
        .group_by(J.c.state)
    )
    with store.engine.connect() as conn:
        return {str(state): int(n) for state, n in conn.execute(query)}


def queue(store: Store) -> dict[str, tuple[int, datetime | None]]:
    """Per job state: how many jobs, and when the oldest of them was created (one statement)."""
    query = (
        sa.select(J.c.state, sa.func.count(), sa.func.min(J.c.created_at))
        .where(J.c.workspace == store.workspace)
        .group_by(J.c.state)
    )
    with store.engine.connect() as conn:
        return {str(state): (int(n), oldest) for state, n, oldest in conn.execute(query)}


def deliveries(
    store: Store, *, since: datetime, participant: str | None = None, thread: str | None = None
) -> list[datetime]:
    """When wakes were delivered (for rate limits), newest window only."""
    query = sa.select(A.c.at).where(
        A.c.workspace == store.workspace, A.c.verdict == Verdict.DELIVERED.value, A.c.at >= since
    )
    if participant is not None:
        query = query.where(A.c.participant == participant)
    if thread is not None:
        query = query.where(A.c.thread == thread)
    with store.engine.connect() as conn:
        return [row[0] for row in conn.execute(query)]


def _job(row: sa.RowMapping) -> Job:
    return Job(
        id=row["id"],
        participant=row["participant"],
        thread=row["thread"],
        state=JobState(row["state"]),
        due_at=row["due_at"],
        unread_seq=row["unread_seq"],
        failures=row["failures"],
        resumes=row["resumes"],
        first_check_at=row["first_check_at"],
        screen_hash=row["screen_hash"],
        forced=bool(row["forced"]),
        lease_owner=row["lease_owner"],
        lease_until=row["lease_until"],
        prev_owner=row["prev_owner"],
        created_at=row["created_at"],
    )


def next_due(store: Store, participants: frozenset[str] | None = None) -> datetime | None:
    """When the earliest queued job falls due, if any; with ``participants`` (many hosts: those
    of this host's lanes), the earliest of theirs: another host's job is not this host's work."""
    query = sa.select(sa.func.min(J.c.due_at)).where(
        J.c.workspace == store.workspace, J.c.state == JobState.QUEUED.value
    )
    if participants is not None:
        query = query.where(J.c.participant.in_(sorted(participants)))
    with store.engine.connect() as conn:
        value = conn.execute(query).scalar()
    return tables.UTCDateTime().process_result_value(value, store.engine.dialect)
