"""Host leases (table ``hosts``): one controller per host name, on the database's clock.

Taking and renewing a lease is one statement: an insert that, on conflict, takes the row over
only if it is ours already (a renewal) or expired or released. Every time in it is the
database's (``now()`` on PostgreSQL, ``CURRENT_TIMESTAMP``'s equivalent on SQLite), so the
hosts' clocks never matter. A released lease (a stopped daemon, a finished ``--once``) is
taken again at once. ``forget`` deletes the row of a host gone for good (decision 125), and
with ``drop_lanes`` the lane and agent records it held (decision 127).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controller.core import hosts
from controller.store import deferred, events, queries

if TYPE_CHECKING:
    import sqlalchemy as sa

    from controller.store import tables
else:
    sa = deferred.module("sqlalchemy")
    tables = deferred.module("controller.store.tables")


@dataclass(frozen=True, slots=True)
class Holder:
    """Who asks for a host's lease."""

    name: str  # the host name (`--host`)
    instance: str  # unique per controller process
    pid: int
    machine: str  # the machine's own host name, for the refusal message
    version: str
    labels: Mapping[str, str]
    repo: str = ""  # the clone it works in (a command in the holder's clone may share it)


def _now(dialect: str) -> sa.ColumnElement[Any]:
    if dialect == "postgresql":
        return sa.func.now()
    # SQLAlchemy's SQLite format for DateTime (microseconds; UTC as the store keeps it).
    return sa.func.strftime("%Y-%m-%d %H:%M:%f000", "now")


def _later(dialect: str, seconds: float) -> sa.ColumnElement[Any]:
    if dialect == "postgresql":
        return sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, seconds)
    return sa.func.strftime("%Y-%m-%d %H:%M:%f000", "now", f"+{seconds:.3f} seconds")


def acquire(
    store: queries.Store, holder: Holder, *, seconds: float
) -> tuple[hosts.Lease, datetime]:
    """Take or renew ``holder.name``'s lease for ``seconds``; return the lease row as it is
    now (ours when its ``instance`` is ``holder.instance``, else the live holder's: refused)
    and the database's time."""
    t = tables.hosts
    dialect = store.engine.dialect.name
    now, later = _now(dialect), _later(dialect, seconds)
    values = {
        "workspace": store.workspace,
        "name": holder.name,
        "pid": holder.pid,
        "machine": holder.machine,
        "repo": holder.repo,
        "instance": holder.instance,
        "version": holder.version,
        "labels": dict(holder.labels),
        "started_at": now,
        "renewed_at": now,
        "expires_at": later,
        "released_at": None,
    }
    insert = queries.dialect_insert(store.engine, t).values(**values)
    ours = t.c.instance == insert.excluded.instance
    takeable = sa.or_(ours, t.c.expires_at <= now, t.c.released_at.is_not(None))
    keep_start = sa.case((ours, t.c.started_at), else_=insert.excluded.started_at)
    updates = {k: insert.excluded[k] for k in values if k not in ("workspace", "name")}
    query = insert.on_conflict_do_update(
        index_elements=["workspace", "name"],
        set_={**updates, "started_at": keep_start, "renewed_at": now, "expires_at": later},
        where=takeable,
    )
    with store.engine.begin() as conn:
        conn.execute(query)
        row = conn.execute(_select(store, now).where(t.c.name == holder.name)).mappings().one()
    return _lease(row), _utc(row["db_now"])


def release(store: queries.Store, holder: Holder) -> None:
    """Give the lease up (if still ours): another controller may take the host at once."""
    t = tables.hosts
    now = _now(store.engine.dialect.name)
    query = (
        sa.update(t)
        .where(t.c.workspace == store.workspace, t.c.name == holder.name)
        .where(t.c.instance == holder.instance)
        .values(released_at=now, expires_at=now)
    )
    with store.engine.begin() as conn:
        conn.execute(query)


def read(store: queries.Store) -> hosts.Leases:
    """Every lease of the workspace, with the database's time now."""
    now = _now(store.engine.dialect.name)
    with store.engine.connect() as conn:
        rows = conn.execute(_select(store, now).order_by(tables.hosts.c.name)).mappings().all()
        # One round trip per pass: the time comes with the rows (alone only without any).
        db_now = rows[0]["db_now"] if rows else conn.execute(sa.select(now)).scalar_one()
    return hosts.Leases(now=_utc(db_now), items=tuple(_lease(row) for row in rows))


def _select(store: queries.Store, now: sa.ColumnElement[Any]) -> sa.Select[Any]:
    t = tables.hosts
    return sa.select(t, now.label("db_now")).where(t.c.workspace == store.workspace)


def _utc(value: Any) -> datetime:
    """The database's now as an aware UTC datetime (SQLite answers with text)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _lease(row: Mapping[Any, Any]) -> hosts.Lease:
    return hosts.Lease(
        name=row["name"],
        pid=row["pid"],
        machine=row["machine"],
        repo=row["repo"],
        instance=row["instance"],
        version=row["version"],
        started_at=row["started_at"],
        renewed_at=row["renewed_at"],
        expires_at=row["expires_at"],
        released=row["released_at"] is not None,
    )


def refusal(lease: hosts.Lease, now: datetime) -> str:
    """What a refused controller is told."""
    seconds_left = max(0.0, (lease.expires_at - now).total_seconds())
    return (
        f"host {lease.name} is held by pid {lease.pid} on {lease.machine} since "
        f"{lease.started_at.isoformat(timespec='seconds')} (expires in {seconds_left:.0f} s); "
        f"stop it or use another --host"
    )


@dataclass(frozen=True, slots=True)
class Forgotten:
    """A host whose lease row was deleted, and the records dropped with it (``drop_lanes``)."""

    host: str
    lanes: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()  # bindings


LANE_DROPPED = "LaneForgotten"  # the event of each lane record dropped with its host


def forget(
    store: queries.Store, name: str, *, event: events.Event, drop_lanes: bool = False
) -> Forgotten | None:
    """Delete host ``name``'s lease row, and record ``event`` with it; None when nothing was.

    One statement decides: the row goes only while its lease is expired or released and no lane
    or agent record carries the host's name (their worktrees and panes are on its disk), so a
    host that returns, or records a lane, between the caller's checks and this delete is kept.
    Nothing else is deleted: the lane and agent rows of other hosts are never touched.

    With ``drop_lanes`` (its disk is gone for good, decision 127) the host's own lane and agent
    records are deleted in the same transaction instead of blocking the delete, each lane with
    a ``LaneForgotten`` event (reason ``host_forgotten``), so other hosts may create those lanes
    anew. Only records go: no host touches a file, a branch or a process.
    """
    t, now = tables.hosts, _now(store.engine.dialect.name)
    query = (
        sa.delete(t)
        .where(t.c.workspace == store.workspace, t.c.name == name)
        .where(sa.or_(t.c.expires_at <= now, t.c.released_at.is_not(None)))
    )
    if not drop_lanes:
        query = query.where(
            ~_carried(store, tables.lanes, name), ~_carried(store, tables.agents, name)
        )
    with store.engine.begin() as conn:
        if conn.execute(query).rowcount == 0:
            return None
        if not drop_lanes:
            store.append_events_in(conn, [event])
            return Forgotten(name)
        lanes, agents = _drop_records(conn, store, name)
        gone = Forgotten(name, tuple(r.name for r in lanes), tuple(a.binding for a in agents))
        data = {**event.data, "lanes": list(gone.lanes), "agents": list(gone.agents)}
        written = [replace(event, data=data)]
        written += [
            events.Event(
                LANE_DROPPED,
                "host_forgotten",
                event.at,
                event.correlation_id,
                lane=row.name,
                data={
                    "host": name,
                    "path": row.path,
                    "branch": row.branch,
                    "agents": [a.participant for a in agents if a.lane == row.name],
                },
            )
            for row in lanes
        ]
        store.append_events_in(conn, written)
    return gone


def _drop_records(
    conn: sa.Connection, store: queries.Store, name: str
) -> tuple[list[Any], list[Any]]:
    """Delete host ``name``'s lane records (with their memory, as ``Store.delete_lane`` does)
    and agent records; return the deleted rows, sorted by name."""
    lane_t, agent_t, memory = tables.lanes, tables.agents, tables.lane_memory
    lanes = conn.execute(
        sa.delete(lane_t)
        .where(_on(store, lane_t, name))
        .returning(lane_t.c.name, lane_t.c.path, lane_t.c.branch)
    ).all()
    if lanes:
        names = [row.name for row in lanes]
        conn.execute(
            sa.delete(memory).where(memory.c.workspace == store.workspace, memory.c.name.in_(names))
        )
    agents = conn.execute(
        sa.delete(agent_t)
        .where(_on(store, agent_t, name))
        .returning(agent_t.c.binding, agent_t.c.lane, agent_t.c.participant)
    ).all()
    return sorted(lanes, key=lambda r: r.name), sorted(agents, key=lambda a: a.binding)


def _on(store: queries.Store, table: sa.Table, name: str) -> sa.ColumnElement[bool]:
    """Rows of ``table`` (``lanes`` or ``agents``) that name host ``name``."""
    return sa.and_(
        table.c.workspace == store.workspace, sa.func.lower(table.c.host) == name.lower()
    )


def _carried(store: queries.Store, table: sa.Table, name: str) -> sa.Exists:
    """Whether a row of ``table`` (``lanes`` or ``agents``) names host ``name``."""
    return sa.exists().where(_on(store, table, name))


def forget_refusal(
    name: str,
    lease: hosts.Lease | None,
    now: datetime,
    *,
    declared_at: str | None,
    records: Sequence[str],
    drop_lanes: bool = False,
) -> str | None:
    """Why host ``name`` may not be forgotten (None: it may). ``declared_at`` is where desired
    state still declares it, ``records`` the lanes and agents still recorded on it, which only
    ``drop_lanes`` (the user's word that its disk is gone) lets go."""
    if lease is None:
        return f"host {name} holds no lease row: nothing to forget (see `controller hosts`)"
    if declared_at is not None:
        return (
            f"host {name} is still declared in the Workspace's hosts ({declared_at}); "
            "remove it from desired/ first"
        )
    if lease.state(now) == hosts.HostState.LIVE:
        seconds_left = max(0.0, (lease.expires_at - now).total_seconds())
        return (
            f"host {name} is live (pid {lease.pid} on {lease.machine}, lease expires in "
            f"{seconds_left:.0f} s); stop its controller first"
        )
    if records and not drop_lanes:
        return (
            f"host {name} still holds {', '.join(records)}: their worktrees and agents are on "
            "its disk, and no other host may touch them; bring it back and let it remove them "
            "(move or delete its lanes in desired/) first, or, if its disk is gone for good, "
            "add --drop-lanes to forget their records too"
        )
    return None
