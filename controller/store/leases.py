"""Host leases (table ``hosts``): one controller per host name, on the database's clock.

Taking and renewing a lease is one statement: an insert that, on conflict, takes the row over
only if it is ours already (a renewal) or expired or released. Every time in it is the
database's (``now()`` on PostgreSQL, ``CURRENT_TIMESTAMP``'s equivalent on SQLite), so the
hosts' clocks never matter. A released lease (a stopped daemon, a finished ``--once``) is
taken again at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controller.core import hosts
from controller.store import deferred, queries

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
