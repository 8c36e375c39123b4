"""Workflow runs in the store: the truth a run resumes from after any crash.

A run is created once with the snapshot of its resolved tasks and prices. A dispatch reserves
its task's estimated cost with one guarded ``UPDATE`` of the run's totals, in the same
transaction that marks the task running and opens its attempt: two controllers racing for the
last dollars never overshoot together, and a crash never leaves a task running without its
reservation (or the other way round). Usage increments and the parser's log offset move in one
transaction, so a resumed parse never counts a line twice. Settling an attempt releases its
reservation exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from controller.core.workflows import model as wf
from controller.store import events, tables
from controller.store.queries import Store

R = tables.runs
T = tables.run_tasks
A = tables.task_attempts
U = tables.usage_records
EPSILON = 1e-9  # an estimate exactly equal to what is left fits


@dataclass(frozen=True, slots=True)
class TaskRow:
    """A task record plus where it lives and how far its usage was parsed."""

    record: wf.TaskRecord
    lane: str
    branch: str
    outputs: Mapping[str, Any]
    log_offset: int = 0
    progress: Mapping[str, Any] | None = None
    command: tuple[str, ...] = ()
    estimate_usd: float = 0.0  # of the current (or last) attempt
    estimate_tokens: int = 0
    host: str | None = None  # with `hosts`: the host its attempts run on (NULL: single host)


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run record plus its bookkeeping."""

    record: wf.RunRecord
    source: str
    cleaned: bool


@dataclass(frozen=True, slots=True)
class Dispatch:
    """What one dispatch writes: the attempt, its reservation and the task's new state."""

    run: str
    task: str
    attempt: int
    estimate_usd: float
    estimate_tokens: int
    session_id: str
    base_commit: str | None
    command: tuple[str, ...] = ()  # the resolved argv, fixed for the attempt
    host: str | None = None  # with `hosts`: the host that runs it (this one)
    group: tuple[str, ...] = ()  # tasks that must share its host (see ``dispatch``)


def create(
    store: Store,
    record: wf.RunRecord,
    *,
    source: str,
    lanes: Mapping[str, tuple[str, str]],
    now: datetime,
    emit: Sequence[events.Event] = (),
) -> bool:
    """Create the run and its pending tasks, and append ``emit``; False (and nothing written)
    if the name exists."""
    snapshot = record.snapshot
    values = {
        "workspace": store.workspace,
        "name": record.name,
        "workflow": record.workflow,
        "phase": str(record.phase),
        "snapshot": snapshot.to_json(),
        "template_hash": snapshot.template_hash,
        "source": source,
        "max_cost_usd": snapshot.budget.max_cost_usd,
        "max_tokens": snapshot.budget.max_tokens,
        "created_at": record.created_at,
        "updated_at": now,
    }
    with store.engine.begin() as conn:
        exists = conn.execute(sa.select(R.c.name).where(*_run_key(store, record.name))).first()
        if exists is not None:
            return False
        conn.execute(sa.insert(R).values(**values))
        conn.execute(
            sa.insert(T),
            [_task_row(store, record.name, t.name, lanes, now) for t in snapshot.tasks],
        )
        store.append_events_in(conn, emit)
    return True


def _task_row(
    store: Store, run: str, task: str, lanes: Mapping[str, tuple[str, str]], now: datetime
) -> dict[str, Any]:
    lane, branch = lanes[task]
    return {
        "workspace": store.workspace,
        "run": run,
        "task": task,
        "phase": str(wf.TaskPhase.PENDING),
        "lane": lane,
        "branch": branch,
        "outputs": {},
        "usage": wf.Usage().to_json(),
        "updated_at": now,
    }


def _run_key(store: Store, run: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (R.c.workspace == store.workspace, R.c.name == run)


def _task_key(store: Store, run: str, task: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (T.c.workspace == store.workspace, T.c.run == run, T.c.task == task)


def runs(store: Store, *, names: tuple[str, ...] | None = None) -> list[RunRow]:
    """Every run of the workspace (or those named), oldest first."""
    query = sa.select(R).where(R.c.workspace == store.workspace)
    if names is not None:
        query = query.where(R.c.name.in_(names))
    with store.engine.connect() as conn:
        rows = conn.execute(query.order_by(R.c.created_at, R.c.name)).mappings().all()
    return [_run(row) for row in rows]


def get(store: Store, name: str) -> RunRow | None:
    """One run, or None."""
    found = runs(store, names=(name,))
    return found[0] if found else None


def tasks(store: Store, *, run: str | None = None) -> dict[tuple[str, str], TaskRow]:
    """Task rows by (run, task): of one run, or of every run."""
    query = sa.select(T).where(T.c.workspace == store.workspace)
    if run is not None:
        query = query.where(T.c.run == run)
    with store.engine.connect() as conn:
        rows = conn.execute(query.order_by(T.c.run, T.c.task)).mappings().all()
    return {(row["run"], row["task"]): _task(row) for row in rows}


def dispatch(
    store: Store, d: Dispatch, now: datetime, *, emit: Sequence[events.Event] = ()
) -> bool:
    """Reserve the estimate, mark the task running and append ``emit``, atomically; False
    (and nothing written) when it does not fit.

    The guard is one ``UPDATE`` of the run row whose ``WHERE`` compares the row's own totals:
    PostgreSQL re-evaluates it on the latest row version after waiting for a concurrent
    update, and SQLite serialises writers, so concurrent dispatches never overshoot together.

    Raises ``Taken`` (and writes nothing) when the task is no longer pending, or, with a
    ``host``, when a task of its ``group`` already runs on another host: the task's own
    ``UPDATE`` comes after the run row's, so a concurrent dispatch of the same run has
    committed by then and this statement sees it (a new snapshot per statement on PostgreSQL).
    """
    fits = sa.and_(
        sa.or_(
            R.c.max_cost_usd.is_(None),
            R.c.spent_usd + R.c.reserved_usd + d.estimate_usd <= R.c.max_cost_usd + EPSILON,
        ),
        sa.or_(
            R.c.max_tokens.is_(None),
            R.c.spent_tokens + R.c.reserved_tokens + d.estimate_tokens <= R.c.max_tokens,
        ),
    )
    reserve = (
        sa.update(R)
        .where(*_run_key(store, d.run), R.c.phase == str(wf.RunPhase.RUNNING), fits)
        .values(
            reserved_usd=R.c.reserved_usd + d.estimate_usd,
            reserved_tokens=R.c.reserved_tokens + d.estimate_tokens,
            updated_at=now,
        )
    )
    with store.engine.begin() as conn:
        if conn.execute(reserve).rowcount != 1:
            return False
        _open_attempt(conn, store, d, now)
        store.append_events_in(conn, emit)
    return True


class Taken(Exception):
    """The task was dispatched meanwhile, or its group was placed on another host."""


def _open_attempt(conn: sa.Connection, store: Store, d: Dispatch, now: datetime) -> None:
    guard = [*_task_key(store, d.run, d.task), T.c.phase == str(wf.TaskPhase.PENDING)]
    if d.host is not None and d.group:
        other = T.alias("other")
        elsewhere = sa.exists().where(
            other.c.workspace == store.workspace,
            other.c.run == d.run,
            other.c.task.in_(d.group),
            other.c.host.is_not(None),
            sa.func.lower(other.c.host) != d.host.lower(),
        )
        guard.append(~elsewhere)
    opened = conn.execute(
        sa.update(T)
        .where(*guard)
        .values(
            phase=str(wf.TaskPhase.RUNNING),
            reason="",
            detail="",
            attempt=d.attempt,
            due_at=None,
            started_at=now,
            finished_at=None,
            exit_code=None,
            session_id=d.session_id,
            base_commit=d.base_commit,
            command=list(d.command),
            reserved_usd=d.estimate_usd,
            reserved_tokens=d.estimate_tokens,
            estimate_usd=d.estimate_usd,
            estimate_tokens=d.estimate_tokens,
            log_offset=0,
            progress=None,
            updated_at=now,
            host=d.host,
        )
    )
    if opened.rowcount != 1:
        raise Taken(f"task {d.task} of run {d.run} was dispatched or placed elsewhere meanwhile")
    conn.execute(
        sa.insert(A).values(
            workspace=store.workspace,
            run=d.run,
            task=d.task,
            attempt=d.attempt,
            phase=str(wf.TaskPhase.RUNNING),
            session_id=d.session_id,
            estimate_usd=d.estimate_usd,
            estimate_tokens=d.estimate_tokens,
            reservation="held",
            usage=wf.Usage().to_json(),
            started_at=now,
        )
    )


@dataclass(frozen=True, slots=True)
class Increment:
    """New usage of one attempt, and where its parser got to."""

    run: str
    task: str
    attempt: int
    model: str
    usage: wf.Usage  # the increment, not the total
    cost_usd: float  # charged for the increment
    catalog_cost_usd: float
    source: str = "agent"
    from_offset: int | None = None  # the stored offset this increment was parsed from
    log_offset: int | None = None  # the offset after it
    progress: Mapping[str, Any] | None = None


def add_usage(store: Store, inc: Increment, now: datetime) -> bool:
    """Record a usage increment, the run's and task's totals, and the parser's offset, at once.

    The attempt's reservation shrinks to what its estimate has left (never below zero), so the
    run's ``spent + reserved`` counts each running attempt at the larger of its estimate and
    its usage: what the dispatch guard needs to compare in one statement.

    With ``from_offset`` set, nothing is written unless the stored offset is still the one the
    increment was parsed from: a second writer of the same increment (a rerun after a crash)
    finds the offset moved on. Returns whether anything was written.
    """
    with store.engine.begin() as conn:
        row = conn.execute(sa.select(T).where(*_task_key(store, inc.run, inc.task))).first()
        if row is None or row.attempt != inc.attempt:
            return False
        if inc.from_offset is not None and row.log_offset != inc.from_offset:
            return False
        _insert_usage(conn, store, inc, now)
        spent = _add_attempt_usage(conn, store, inc)
        running = row.phase == str(wf.TaskPhase.RUNNING)
        headroom = _headroom(row, spent) if running else (row.reserved_usd, row.reserved_tokens)
        total = wf.Usage.from_json(row.usage) + inc.usage
        changes: dict[str, Any] = {
            "usage": total.to_json(),
            "cost_usd": row.cost_usd + inc.cost_usd,
            "reserved_usd": headroom[0],
            "reserved_tokens": headroom[1],
            "updated_at": now,
        }
        if inc.log_offset is not None:
            changes |= {"log_offset": inc.log_offset, "progress": dict(inc.progress or {})}
        conn.execute(sa.update(T).where(*_task_key(store, inc.run, inc.task)).values(**changes))
        conn.execute(
            sa.update(R)
            .where(*_run_key(store, inc.run))
            .values(
                spent_usd=R.c.spent_usd + inc.cost_usd,
                spent_tokens=R.c.spent_tokens + inc.usage.tokens,
                reserved_usd=R.c.reserved_usd + (headroom[0] - row.reserved_usd),
                reserved_tokens=R.c.reserved_tokens + (headroom[1] - row.reserved_tokens),
                updated_at=now,
            )
        )
    return True


def _headroom(row: sa.Row[Any], spent: tuple[float, int]) -> tuple[float, int]:
    """What the attempt's estimate has left once ``spent`` is used."""
    return max(0.0, row.estimate_usd - spent[0]), max(0, row.estimate_tokens - spent[1])


def _insert_usage(conn: sa.Connection, store: Store, inc: Increment, now: datetime) -> None:
    u = inc.usage
    conn.execute(
        sa.insert(U).values(
            workspace=store.workspace,
            run=inc.run,
            task=inc.task,
            attempt=inc.attempt,
            model=inc.model,
            source=inc.source,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens,
            cost_usd=inc.cost_usd,
            catalog_cost_usd=inc.catalog_cost_usd,
            reported_cost_usd=u.reported_cost_usd,
            at=now,
        )
    )


def _add_attempt_usage(conn: sa.Connection, store: Store, inc: Increment) -> tuple[float, int]:
    """Add the increment to its attempt; return the attempt's cost and tokens after it."""
    key = (
        A.c.workspace == store.workspace,
        A.c.run == inc.run,
        A.c.task == inc.task,
        A.c.attempt == inc.attempt,
    )
    row = conn.execute(sa.select(A.c.usage, A.c.cost_usd).where(*key)).first()
    if row is None:
        return inc.cost_usd, inc.usage.tokens
    total = wf.Usage.from_json(row.usage) + inc.usage
    cost = row.cost_usd + inc.cost_usd
    conn.execute(sa.update(A).where(*key).values(usage=total.to_json(), cost_usd=cost))
    return cost, total.tokens


def set_progress(
    store: Store,
    run: str,
    task: str,
    *,
    attempt: int,
    offset: int,
    progress: Mapping[str, Any],
    now: datetime,
) -> None:
    """Remember how far the parser got when it found no new usage."""
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(T)
            .where(*_task_key(store, run, task), T.c.attempt == attempt)
            .values(log_offset=offset, progress=dict(progress), updated_at=now)
        )


@dataclass(frozen=True, slots=True)
class Ending:
    """How an attempt ended (or a task moved without running)."""

    run: str
    task: str
    phase: wf.TaskPhase
    reason: wf.TaskReason = wf.TaskReason.NONE
    detail: str = ""
    exit_code: int | None = None
    head_commit: str | None = None
    final_message: str | None = None
    outputs: Mapping[str, Any] | None = None
    due_at: datetime | None = None  # a retry: back to pending, not before this
    attempt: int | None = None  # for a retry: the next attempt number


def end_attempt(
    store: Store, e: Ending, now: datetime, *, emit: Sequence[events.Event] = ()
) -> bool:
    """Close the running attempt: release its reservation (once), record how it ended, and
    append ``emit`` in the same transaction.

    Idempotent: a second call finds the attempt settled and writes nothing. Returns whether
    this call settled it.
    """
    with store.engine.begin() as conn:
        row = conn.execute(
            sa.select(T.c.attempt, T.c.reserved_usd, T.c.reserved_tokens).where(
                *_task_key(store, e.run, e.task), T.c.phase == str(wf.TaskPhase.RUNNING)
            )
        ).first()
        if row is None:
            return False
        _settle_attempt(conn, store, e, row.attempt, now)
        conn.execute(
            sa.update(R)
            .where(*_run_key(store, e.run))
            .values(
                reserved_usd=R.c.reserved_usd - row.reserved_usd,
                reserved_tokens=R.c.reserved_tokens - row.reserved_tokens,
                updated_at=now,
            )
        )
        conn.execute(sa.update(T).where(*_task_key(store, e.run, e.task)).values(**_ended(e, now)))
        store.append_events_in(conn, emit)
    return True


def _settle_attempt(
    conn: sa.Connection, store: Store, e: Ending, attempt: int, now: datetime
) -> None:
    conn.execute(
        sa.update(A)
        .where(
            A.c.workspace == store.workspace,
            A.c.run == e.run,
            A.c.task == e.task,
            A.c.attempt == attempt,
        )
        .values(
            phase=str(e.phase),
            reason=str(e.reason),
            detail=e.detail,
            exit_code=e.exit_code,
            reservation="settled",
            finished_at=now,
        )
    )


def _ended(e: Ending, now: datetime) -> dict[str, Any]:
    changes: dict[str, Any] = {
        "phase": str(e.phase),
        "reason": str(e.reason),
        "detail": e.detail,
        "exit_code": e.exit_code,
        "finished_at": now,
        "reserved_usd": 0.0,
        "reserved_tokens": 0,
        "updated_at": now,
    }
    if e.head_commit is not None:
        changes["head_commit"] = e.head_commit
    if e.final_message is not None:
        changes["final_message"] = e.final_message
    if e.outputs is not None:
        changes["outputs"] = dict(e.outputs)
    return changes


def move_task(
    store: Store,
    run: str,
    task: str,
    now: datetime,
    *,
    expect: tuple[wf.TaskPhase, ...],
    **changes: Any,
) -> bool:
    """Change a task that is not running (skip, block, retry, resolve); False if it moved."""
    values = {
        k: (str(v) if isinstance(v, wf.TaskPhase | wf.TaskReason) else v)
        for k, v in changes.items()
    }
    with store.engine.begin() as conn:
        done = conn.execute(
            sa.update(T)
            .where(*_task_key(store, run, task), T.c.phase.in_([str(p) for p in expect]))
            .values(updated_at=now, **values)
        )
    return bool(done.rowcount == 1)


def finish(
    store: Store,
    run: str,
    phase: wf.RunPhase,
    reason: wf.RunReason,
    message: str,
    now: datetime,
) -> bool:
    """End a running run; False if it had already ended."""
    with store.engine.begin() as conn:
        done = conn.execute(
            sa.update(R)
            .where(*_run_key(store, run), R.c.phase == str(wf.RunPhase.RUNNING))
            .values(
                phase=str(phase),
                reason=str(reason),
                message=message,
                finished_at=now,
                updated_at=now,
            )
        )
    return bool(done.rowcount == 1)


def request_abort(store: Store, run: str, reason: str, now: datetime) -> bool:
    """Ask the next pass to abort a running run; False if it is unknown or already ended."""
    with store.engine.begin() as conn:
        done = conn.execute(
            sa.update(R)
            .where(*_run_key(store, run), R.c.phase == str(wf.RunPhase.RUNNING))
            .values(abort_reason=reason, updated_at=now)
        )
    return bool(done.rowcount == 1)


def refuse(store: Store, run: str, message: str, now: datetime) -> None:
    """A dispatch did not fit the budget after all: the next plan ends the run."""
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(R)
            .where(*_run_key(store, run), R.c.phase == str(wf.RunPhase.RUNNING))
            .values(refused=message, updated_at=now)
        )


def reopen(store: Store, run: str, now: datetime) -> None:
    """Put an ended run back to running (``runs retry``); its totals are kept."""
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(R)
            .where(*_run_key(store, run))
            .values(
                phase=str(wf.RunPhase.RUNNING),
                reason="",
                message="",
                finished_at=None,
                abort_reason=None,
                refused=None,
                updated_at=now,
            )
        )


def mark_cleaned(store: Store, run: str, now: datetime) -> None:
    """The run's lanes may go (``runs clean``): they leave the expanded desired state."""
    with store.engine.begin() as conn:
        conn.execute(sa.update(R).where(*_run_key(store, run)).values(cleaned=True, updated_at=now))


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One usage record."""

    run: str
    task: str
    attempt: int
    model: str
    source: str
    usage: wf.Usage
    cost_usd: float
    catalog_cost_usd: float
    at: datetime


def usage(store: Store, *, run: str | None = None) -> list[UsageRow]:
    """Usage records of one run or of every run, oldest first."""
    query = sa.select(U).where(U.c.workspace == store.workspace)
    if run is not None:
        query = query.where(U.c.run == run)
    with store.engine.connect() as conn:
        rows = conn.execute(query.order_by(U.c.id)).mappings().all()
    return [_usage_row(row) for row in rows]


def usage_by_model(store: Store) -> dict[str, tuple[wf.Usage, float]]:
    """Every usage record summed by model as recorded (tokens, and the cost charged in USD),
    in one statement."""
    sums = [
        sa.func.sum(U.c[column])
        for column in (
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "cost_usd",
        )
    ]
    query = sa.select(U.c.model, *sums).where(U.c.workspace == store.workspace).group_by(U.c.model)
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return {
        str(model): (
            wf.Usage(
                input_tokens=int(i or 0),
                output_tokens=int(o or 0),
                cache_read_tokens=int(r or 0),
                cache_write_tokens=int(w or 0),
            ),
            float(cost or 0.0),
        )
        for model, i, o, r, w, cost in rows
    }


def _usage_row(row: sa.RowMapping) -> UsageRow:
    return UsageRow(
        run=row["run"],
        task=row["task"],
        attempt=row["attempt"],
        model=row["model"],
        source=row["source"],
        usage=wf.Usage(
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            cache_read_tokens=row["cache_read_tokens"],
            cache_write_tokens=row["cache_write_tokens"],
            reported_cost_usd=row["reported_cost_usd"],
        ),
        cost_usd=row["cost_usd"],
        catalog_cost_usd=row["catalog_cost_usd"],
        at=row["at"],
    )


def _run(row: sa.RowMapping) -> RunRow:
    record = wf.RunRecord(
        name=row["name"],
        workflow=row["workflow"],
        snapshot=wf.RunSnapshot.from_json(row["snapshot"]),
        created_at=row["created_at"],
        phase=wf.RunPhase(row["phase"]),
        reason=wf.RunReason(row["reason"]),
        message=row["message"],
        finished_at=row["finished_at"],
        spent_usd=row["spent_usd"],
        reserved_usd=row["reserved_usd"],
        spent_tokens=row["spent_tokens"],
        reserved_tokens=row["reserved_tokens"],
        abort_reason=row["abort_reason"],
        refused=row["refused"],
    )
    return RunRow(record=record, source=row["source"], cleaned=bool(row["cleaned"]))


def _task(row: sa.RowMapping) -> TaskRow:
    record = wf.TaskRecord(
        name=row["task"],
        phase=wf.TaskPhase(row["phase"]),
        reason=wf.TaskReason(row["reason"]),
        detail=row["detail"],
        attempt=row["attempt"],
        due_at=row["due_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        base_commit=row["base_commit"],
        head_commit=row["head_commit"],
        session_id=row["session_id"],
        exit_code=row["exit_code"],
        final_message=row["final_message"],
        usage=wf.Usage.from_json(row["usage"] or {}),
        cost_usd=row["cost_usd"],
        reserved_usd=row["reserved_usd"],
        reserved_tokens=row["reserved_tokens"],
    )
    return TaskRow(
        record=record,
        lane=row["lane"],
        branch=row["branch"],
        outputs=row["outputs"] or {},
        log_offset=row["log_offset"],
        progress=row["progress"],
        command=tuple(row["command"] or ()),
        estimate_usd=row["estimate_usd"],
        estimate_tokens=row["estimate_tokens"],
        host=row["host"],
    )


def signature(store: Store, run_dir: Path) -> tuple[object, ...]:
    """What changes when a run needs a pass: its rows, or a task's exit file appearing.

    One small query and one folder listing: cheap enough to poll a few times a second.
    """
    query = sa.select(sa.func.count(), sa.func.max(R.c.updated_at)).where(
        R.c.workspace == store.workspace
    )
    with store.engine.connect() as conn:
        count, newest = conn.execute(query).one()
    try:
        exits = tuple(sorted(p.name for p in run_dir.iterdir() if p.suffix == ".exit"))
    except OSError:
        exits = ()
    return (count, newest, exits)
