"""Reads and writes of the store, for one workspace. Synchronous: async callers go through
``anyio.to_thread``; every method is one short transaction.

SQLAlchemy is imported when a statement first needs it, not with this module: the reads every
pass makes (``store.reads``) run on a SQLite store through ``store.sqlite`` instead, so a pass
that changes nothing never loads it (decision 92).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from controller.core import memory, world
from controller.core.phases import Phase
from controller.store import deferred, events, sqlite

if TYPE_CHECKING:
    import sqlalchemy as sa

    from controller.store import tables
else:
    sa = deferred.module("sqlalchemy")
    tables = deferred.module("controller.store.tables")


class Store:
    """The store of one workspace."""

    def __init__(
        self,
        url: str,
        workspace: str,
        *,
        reader: sqlite.Reader | None = None,
        engine: sa.Engine | None = None,
    ) -> None:
        self.url = url
        self.workspace = workspace
        self.host: str | None = None  # with `hosts`: this host's name, written on its records
        self._reader = reader
        self._engine = engine
        self._lock = threading.Lock()

    @classmethod
    def open(cls, url: str, workspace: str) -> Store:
        """Open the store at ``url``, creating or migrating it (with SQLAlchemy) if need be."""
        reader = sqlite.Reader.open(url)
        if reader is not None:
            return cls(url, workspace, reader=reader)
        from controller.store import database  # SQLAlchemy: to create, migrate or connect

        engine = database.create_engine(url)
        try:
            database.migrate(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(url, workspace, reader=sqlite.Reader.open(url), engine=engine)

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine, created on first use (a store opened by ``open`` is at the
        newest revision already)."""
        with self._lock:
            if self._engine is None:
                from controller.store import database  # SQLAlchemy: first write, or no reader

                self._engine = database.create_engine(self.url)
            return self._engine

    def close(self) -> None:
        """Release connections."""
        if self._reader is not None:
            self._reader.close()
        if self._engine is not None:
            self._engine.dispose()

    def _read(self, name: str) -> list[Mapping[Any, Any]]:
        """The rows of one of ``store.reads``: through sqlite3 when the store is a SQLite file,
        else through SQLAlchemy (the same statement)."""
        if self._reader is not None:
            return list(self._reader.rows(name, {"workspace": self.workspace}))
        from controller.store import reads  # the statements, for SQLAlchemy to run

        with self.engine.connect() as conn:
            found = conn.execute(reads.statements()[name], {"workspace": self.workspace})
            return list(found.mappings().all())

    # -- lanes (the inventory) ------------------------------------------------------------

    def lane_records(self) -> dict[str, world.LaneRecord]:
        """Every lane the controller created or adopted in this workspace, by name."""
        return {row["name"]: _record(row) for row in self._read("lanes")}

    def put_lane(self, record: world.LaneRecord, now: datetime) -> None:
        """Insert or replace the inventory record of a lane."""
        values = {
            "workspace": self.workspace,
            "name": record.name,
            "phase": str(record.phase),
            "path": record.path,
            "branch": record.branch,
            "on_dirty": record.on_dirty,
            "created_branch": record.created_branch,
            "adopted": record.adopted,
            "conditions": [_condition_json(c) for c in record.conditions],
            "created_at": now,
            "updated_at": now,
            "host": self.host,
        }
        keep = ("created_at",)
        self._upsert(tables.lanes, values, keys=("workspace", "name"), keep=keep, mine=True)

    def update_lane(
        self, name: str, now: datetime, *, emit: Sequence[events.Event] = (), **changes: Any
    ) -> None:
        """Change some fields of a lane record (phase, conditions, ...), and append the events
        ``emit`` saying so in the same transaction."""
        if "phase" in changes:
            changes["phase"] = str(changes["phase"])
        if "conditions" in changes:
            changes["conditions"] = [_condition_json(c) for c in changes["conditions"]]
        query = (
            sa.update(tables.lanes)
            .where(tables.lanes.c.workspace == self.workspace, tables.lanes.c.name == name)
            .values(updated_at=now, **changes)
        )
        with self.engine.begin() as conn:
            conn.execute(query)
            if emit:
                conn.execute(sa.insert(tables.events), self._event_rows(emit))

    def delete_lane(self, name: str, *, keep_memory: bool = False) -> None:
        """Drop a lane from the inventory (its worktree is gone), and its memory unless kept."""
        doomed = (tables.lanes,) if keep_memory else (tables.lanes, tables.lane_memory)
        with self.engine.begin() as conn:
            for table in doomed:
                conn.execute(
                    sa.delete(table).where(
                        table.c.workspace == self.workspace, table.c.name == name
                    )
                )

    # -- agents (the process and pane inventory) -------------------------------------------

    def agent_records(self) -> dict[str, world.AgentRecord]:
        """Every agent the controller started in this workspace, by binding."""
        return {row["binding"]: _agent(row) for row in self._read("agents")}

    def agent_record(self, binding: str) -> world.AgentRecord | None:
        """One agent record, by binding."""
        t = tables.agents
        query = sa.select(t).where(t.c.workspace == self.workspace, t.c.binding == binding)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return _agent(row) if row is not None else None

    def running_agents(self, lane: str) -> int:
        """How many agents of ``lane`` are recorded as running."""
        t = tables.agents
        query = sa.select(sa.func.count()).where(
            t.c.workspace == self.workspace, t.c.lane == lane, t.c.state == "running"
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def lane_record(self, name: str) -> world.LaneRecord | None:
        """One lane record, by name."""
        t = tables.lanes
        query = sa.select(t).where(t.c.workspace == self.workspace, t.c.name == name)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return _record(row) if row is not None else None

    def put_agent(self, record: world.AgentRecord, now: datetime) -> None:
        """Insert or replace an agent record."""
        values = {
            "workspace": self.workspace,
            "binding": record.binding,
            "lane": record.lane,
            "participant": record.participant,
            "runtime": record.runtime,
            "state": str(record.state),
            "spec_hash": record.spec_hash,
            "pid": record.pid,
            "pid_created": record.pid_created,
            "session_id": record.session_id,
            "window_id": record.window_id,
            "pane_id": record.pane_id,
            "log_path": record.log_path,
            "started_at": record.started_at,
            "restarts": record.restarts,
            "consecutive": record.consecutive,
            "deaths": [d.isoformat() for d in record.deaths],
            "last_exit": record.last_exit,
            "next_start_at": record.next_start_at,
            "blocked": record.blocked,
            "heartbeat_at": record.heartbeat_at,
            "stop_grace": record.stop_grace,
            "spec_fields": dict(record.spec_fields),
            "updated_at": now,
            "host": self.host,
        }
        self._upsert(tables.agents, values, keys=("workspace", "binding"), mine=True)

    def update_agents(self, now: datetime, *, where: Mapping[str, Any], **changes: Any) -> int:
        """Change fields of the agent records matching ``where``; return how many matched."""
        t = tables.agents
        if "state" in changes:
            changes["state"] = str(changes["state"])
        if "deaths" in changes:
            changes["deaths"] = [d.isoformat() for d in changes["deaths"]]
        query = sa.update(t).where(t.c.workspace == self.workspace)
        for column, value in where.items():
            query = query.where(t.c[column] == value)
        with self.engine.begin() as conn:
            return conn.execute(query.values(updated_at=now, **changes)).rowcount

    def delete_agent(self, binding: str) -> None:
        """Drop an agent from the inventory (it is stopped and its binding gone)."""
        t = tables.agents
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(t).where(t.c.workspace == self.workspace, t.c.binding == binding)
            )

    # -- memory (backoff) -----------------------------------------------------------------

    def memories(self) -> dict[str, memory.LaneMemory]:
        """Backoff bookkeeping of every lane that has any."""
        return {row["name"]: _memory(row) for row in self._read("memories")}

    def has_runs(self) -> bool:
        """Whether the workspace has any workflow run (running, ended or cleaned)."""
        return bool(self._read("has_runs")[0]["found"])

    def put_memories(self, items: Mapping[str, memory.LaneMemory]) -> None:
        """Write the memory of several lanes; a default (clean) memory deletes the row."""
        table = tables.lane_memory
        with self.engine.begin() as conn:
            for name, mem in items.items():
                conn.execute(
                    sa.delete(table).where(
                        table.c.workspace == self.workspace, table.c.name == name
                    )
                )
                if mem != memory.LaneMemory():
                    conn.execute(sa.insert(table).values(**self._memory_row(name, mem)))

    def _memory_row(self, name: str, mem: memory.LaneMemory) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "name": name,
            "failures": mem.failures,
            "next_attempt_at": mem.next_attempt_at,
            "last_error": mem.last_error,
            "last_applied": list(mem.last_applied),
        }

    # -- events -----------------------------------------------------------------------------

    def append_events(self, items: Sequence[events.Event]) -> None:
        """Append events to the log (redacted here, whatever the caller passed)."""
        if not items:
            return
        with self.engine.begin() as conn:
            conn.execute(sa.insert(tables.events), self._event_rows(items))

    def append_events_in(self, conn: sa.Connection, items: Sequence[events.Event]) -> None:
        """Append events within the caller's transaction: they commit with the change they
        record, or not at all (a crash between two transactions lost the event)."""
        if items:
            conn.execute(sa.insert(tables.events), self._event_rows(items))

    def _event_rows(self, items: Sequence[events.Event]) -> list[dict[str, Any]]:
        """The rows of ``items``, redacted: every event is written through here."""
        return [
            {
                "workspace": self.workspace,
                "at": e.at,
                "correlation_id": e.correlation_id,
                "lane": e.lane,
                "participant": e.participant,
                "kind": e.kind,
                "reason": events.redact(e.reason),
                "data": events.redact(dict(e.data)),
            }
            for e in items
        ]

    def read_events(
        self,
        *,
        lane: str | None = None,
        after: int = 0,
        limit: int | None = None,
        kinds: Iterable[str] = (),
        since: datetime | None = None,
    ) -> list[events.Event]:
        """Events after id ``after``, oldest first (the newest ``limit`` if given), of
        ``lane``, of one of ``kinds`` and at or after ``since`` when given."""
        t = tables.events
        query = sa.select(t).where(t.c.workspace == self.workspace, t.c.id > after)
        if lane is not None:
            query = query.where(t.c.lane == lane)
        if kinds := sorted(set(kinds)):
            query = query.where(t.c.kind.in_(kinds))
        if since is not None:
            query = query.where(t.c.at >= since)
        if limit is not None:
            query = query.order_by(t.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return sorted((_event(r) for r in rows), key=lambda e: e.id or 0)

    def latest_event_id(self) -> int:
        """The id of the newest event (0 when there is none)."""
        t = tables.events
        query = sa.select(sa.func.max(t.c.id)).where(t.c.workspace == self.workspace)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    # -- helpers ----------------------------------------------------------------------------

    def _upsert(
        self,
        table: sa.Table,
        values: Mapping[str, Any],
        *,
        keys: Iterable[str],
        keep: Iterable[str] = (),
        mine: bool = False,
    ) -> None:
        """Insert or update ``values``; with ``mine`` (and a host name), never a row that
        another host owns: its record stays as that host wrote it."""
        insert = dialect_insert(self.engine, table).values(**values)
        updates = {k: insert.excluded[k] for k in values if k not in set(keys) | set(keep)}
        guard = None
        if mine and self.host is not None:
            guard = sa.or_(table.c.host.is_(None), table.c.host == self.host)
        query = insert.on_conflict_do_update(index_elements=list(keys), set_=updates, where=guard)
        with self.engine.begin() as conn:
            conn.execute(query)


def _condition_json(condition: world.Condition) -> dict[str, str]:
    return {"type": condition.type, "reason": condition.reason, "message": condition.message}


def _record(row: Mapping[Any, Any]) -> world.LaneRecord:
    return world.LaneRecord(
        name=row["name"],
        phase=Phase(row["phase"]),
        path=row["path"],
        branch=row["branch"],
        on_dirty="refuse" if row["on_dirty"] == "refuse" else "preserve",
        created_branch=bool(row["created_branch"]),
        adopted=bool(row["adopted"]),
        conditions=tuple(world.Condition(**c) for c in row["conditions"] or ()),
        updated_at=row["updated_at"],
        host=row.get("host"),
    )


def _memory(row: Mapping[Any, Any]) -> memory.LaneMemory:
    return memory.LaneMemory(
        failures=row["failures"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        last_applied=tuple(row["last_applied"] or ()),
    )


def _event(row: sa.RowMapping) -> events.Event:
    return events.Event(
        id=row["id"],
        kind=row["kind"],
        reason=row["reason"],
        at=row["at"],
        correlation_id=row["correlation_id"],
        lane=row["lane"],
        participant=row["participant"],
        data=row["data"] or {},
    )


def _agent(row: Mapping[Any, Any]) -> world.AgentRecord:
    return world.AgentRecord(
        binding=row["binding"],
        lane=row["lane"],
        participant=row["participant"],
        runtime=row["runtime"],
        state=world.AgentState(row["state"]),
        spec_hash=row["spec_hash"],
        pid=row["pid"],
        pid_created=row["pid_created"],
        session_id=row["session_id"],
        window_id=row["window_id"],
        pane_id=row["pane_id"],
        log_path=row["log_path"],
        started_at=row["started_at"],
        restarts=row["restarts"],
        consecutive=row["consecutive"],
        deaths=tuple(datetime.fromisoformat(d) for d in row["deaths"] or ()),
        last_exit=row["last_exit"],
        next_start_at=row["next_start_at"],
        blocked=row["blocked"],
        heartbeat_at=row["heartbeat_at"],
        stop_grace=row["stop_grace"],
        spec_fields=dict(row["spec_fields"] or {}),
        host=row.get("host"),
    )


def dialect_insert(engine: sa.Engine, table: sa.Table) -> Any:
    """An INSERT with ON CONFLICT support for the engine's backend.

    The dialect module is imported here, not at the top: loading the PostgreSQL dialect costs
    ~50 ms, which a SQLite store never needs.
    """
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)
