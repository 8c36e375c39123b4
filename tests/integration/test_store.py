"""The store on real SQLite and real PostgreSQL: same schema, same behaviour."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from controller.core import memory, world
from controller.core.phases import Phase
from controller.core.workflows import model
from controller.store import database, events, queries, reads, sqlite, tables
from controller.store import runs as runs_store

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    pg: str = request.getfixturevalue("postgres_url")
    return pg


@pytest.fixture
def store(url: str) -> Iterator[queries.Store]:
    s = queries.Store.open(url, f"ws-{uuid.uuid4().hex[:8]}")
    yield s
    s.close()


def test_lane_records_round_trip(store: queries.Store) -> None:
    cond = world.Condition("CleanupRefused", "UncommittedChanges", "2 changes")
    record = world.LaneRecord(
        name="auth",
        phase=Phase.PROVISIONING,
        path="/r/.lanes/worktrees/auth",
        branch="lane/auth",
        on_dirty="refuse",
        created_branch=True,
        conditions=(cond,),
    )
    store.put_lane(record, NOW)
    got = store.lane_records()["auth"]
    assert got.phase == Phase.PROVISIONING and got.on_dirty == "refuse" and got.created_branch
    assert got.conditions == (cond,)
    assert got.updated_at == NOW and got.updated_at.tzinfo is not None
    store.update_lane("auth", NOW + timedelta(seconds=1), phase=Phase.READY, conditions=())
    assert store.lane_records()["auth"].phase == Phase.READY
    store.delete_lane("auth")
    assert store.lane_records() == {}


def test_workspaces_are_isolated(url: str) -> None:
    a, b = queries.Store.open(url, "ws-a-" + uuid.uuid4().hex[:6]), None
    try:
        b = queries.Store.open(url, "ws-b-" + uuid.uuid4().hex[:6])
        a.put_lane(world.LaneRecord("x", Phase.READY, "/a/x", "lane/x"), NOW)
        assert "x" in a.lane_records() and b.lane_records() == {}
    finally:
        a.close()
        if b is not None:
            b.close()


def test_memory_round_trip_and_clearing(store: queries.Store) -> None:
    mem = memory.after_failure(memory.LaneMemory(), "boom", NOW)
    store.put_memories({"a": mem, "b": memory.LaneMemory(last_applied=("k",))})
    assert store.memories() == {"a": mem, "b": memory.LaneMemory(last_applied=("k",))}
    store.put_memories({"a": memory.LaneMemory()})
    assert set(store.memories()) == {"b"}


def test_events_append_redacted_and_filtered(store: queries.Store) -> None:
    store.append_events(
        [
            events.Event("LaneProvisioned", "new", NOW, "c1", lane="a", data={"path": "/x"}),
            events.Event(
                "AgentStarted",
                "start",
                NOW,
                "c1",
                lane="b",
                data={
                    "env": {"API_KEY": "s3cret"},
                    "token": "t0k",
                    "url": "postgresql://u:pw@h/db",
                },
            ),
        ]
    )
    every = store.read_events()
    assert [e.kind for e in every] == ["LaneProvisioned", "AgentStarted"]
    secret = every[1].data
    assert secret["env"] == {"API_KEY": events.REDACTED}
    assert secret["token"] == events.REDACTED
    assert "pw" not in secret["url"]
    assert [e.lane for e in store.read_events(lane="a")] == ["a"]
    assert store.read_events(after=every[0].id or 0) == [every[1]]
    assert [e.kind for e in store.read_events(limit=1)] == ["AgentStarted"]


def test_migration_is_at_head_and_matches_tables(url: str) -> None:
    engine = database.create_engine(url)
    try:
        database.migrate(engine)
        database.migrate(engine)  # idempotent
        assert database.current_revision(engine) == tables.HEAD_REVISION
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), tables.metadata)
        assert diff == [], diff
    finally:
        engine.dispose()


def test_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "s" / "state.db"
    store = queries.Store.open(f"sqlite:///{path}", "ws")
    store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_once_against_postgres(postgres_url: str, repo: object) -> None:
    from tests.conftest import Repo

    assert isinstance(repo, Repo)
    repo.lanes("auth")
    done = repo.ctl("--once", "--state", postgres_url)
    assert done.returncode == 0, done.stderr
    assert repo.worktrees() == [str(repo.root / "auth")]
    status = repo.ctl("status", "--state", postgres_url, "-o", "json")
    assert '"phase": "ready"' in status.stdout
    assert not (repo.path / ".lanes" / "state.db").exists()


# -- the reads of a pass, without SQLAlchemy (store.sqlite) -------------------------------------


def test_compiled_reads_are_current() -> None:
    # Regenerate with `python -m controller.store.reads` when a read or a table it reads changed.
    assert sqlite.STATEMENTS.read_text(encoding="utf-8") == reads.render()


def test_the_compiled_reads_check_says_when_they_are_stale(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "statements.json"
    stale.write_text(reads.render().replace(tables.HEAD_REVISION, "0001"), encoding="utf-8")
    monkeypatch.setattr(sqlite, "STATEMENTS", stale)
    assert reads.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().out
    assert reads.main([]) == 0  # regenerates
    assert reads.main(["--check"]) == 0
    assert stale.read_text(encoding="utf-8") == reads.render()


def populated(path: Path, workspace: str) -> queries.Store:
    """A SQLite store holding every kind of value the compiled reads decode."""
    store = queries.Store.open(f"sqlite:///{path}", workspace)
    cond = world.Condition("CleanupRefused", "UncommittedChanges", "2 changes")
    store.put_lane(world.LaneRecord("a", Phase.READY, "/r/a", "lane/a", conditions=(cond,)), NOW)
    later = NOW + timedelta(microseconds=1)
    record = world.LaneRecord("b", Phase.BLOCKED, "/r/b", "lane/b", "refuse", True, True)
    store.put_lane(record, later)
    agent = world.AgentRecord(
        "one",
        "a",
        "p",
        "tmux",
        world.AgentState.RUNNING,
        "h",
        pid=7,
        pid_created=1.5,
        started_at=NOW,
        deaths=(NOW, later),
        next_start_at=later,
        heartbeat_at=None,
        spec_fields={"command": "0123456789abcdef"},
    )
    store.put_agent(agent, NOW)
    store.put_agent(world.AgentRecord("two", "b", "q", "process", world.AgentState.EXITED, ""), NOW)
    store.put_memories(
        {
            "a": memory.LaneMemory(2, later, "boom", ("provision:a:/r/a",)),
            "b": memory.LaneMemory(1, None, None, ()),
        }
    )
    return store


def test_compiled_reads_return_what_sqlalchemy_returns(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    populated(path, "ws").close()
    reader = sqlite.Reader.open(f"sqlite:///{path}")
    assert reader is not None
    engine = database.create_engine(f"sqlite:///{path}")
    try:
        for workspace in ("ws", "other"):
            for name, statement in reads.statements().items():
                with engine.connect() as conn:
                    rows = conn.execute(statement, {"workspace": workspace}).mappings().all()
                expected = [typed(dict(row)) for row in rows]
                assert [typed(row) for row in reader.rows(name, {"workspace": workspace})] == (
                    expected
                ), name
    finally:
        reader.close()
        engine.dispose()


def typed(row: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """A row's columns with their Python types (and time zones) spelled out."""
    return [
        (k, type(v).__name__, (v, v.tzinfo) if isinstance(v, datetime) else v)
        for k, v in row.items()
    ]


def test_a_store_reads_the_same_with_or_without_sqlalchemy(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    fast = populated(path, "ws")
    slow = queries.Store(f"sqlite:///{path}", "ws")  # no reader: every read through SQLAlchemy
    try:
        assert fast._reader is not None  # the compiled reads, for this store's revision
        assert fast.lane_records() == slow.lane_records()
        assert fast.agent_records() == slow.agent_records()
        assert fast.memories() == slow.memories()
        assert len(fast.lane_records()) == len(fast.agent_records()) == len(fast.memories()) == 2
        assert fast.has_runs() is slow.has_runs() is False
        task = model.TaskSpec("t", "m", ("x",))
        snapshot = model.RunSnapshot("w", "h", (task,), {})
        run = model.RunRecord("r", "w", snapshot, created_at=NOW)
        lanes = {"t": ("r-t", "runs/r/t")}
        assert runs_store.create(fast, run, source="submit", lanes=lanes, now=NOW)
        assert fast.has_runs() is slow.has_runs() is True
    finally:
        fast.close()
        slow.close()


def shape(path: Path) -> dict[str, Any]:
    """Every table of a SQLite file: columns, indexes (with their SQL), foreign keys, rows of
    alembic_version."""
    conn = sqlite3.connect(path)
    try:
        found: dict[str, Any] = {}
        names = (
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
        )
        for name, _ in conn.execute(names).fetchall():
            indexes = []
            for row in conn.execute(f"PRAGMA index_list({name})").fetchall():
                columns = conn.execute(f"PRAGMA index_xinfo({row[1]})").fetchall()
                sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (row[1],))
                indexes.append((row[1:], columns, sql.fetchone()))
            found[name] = (
                conn.execute(f"PRAGMA table_xinfo({name})").fetchall(),
                sorted(indexes),
                conn.execute(f"PRAGMA foreign_key_list({name})").fetchall(),
            )
        found["versions"] = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        return found
    finally:
        conn.close()


def test_a_new_sqlite_store_is_what_the_migrations_build(tmp_path: Path) -> None:
    # A new store is created from the tables directly, without Alembic; migrating an empty
    # database from the first revision must build exactly the same, or later migrations would
    # meet a schema they were not written for.
    created, migrated = tmp_path / "created.db", tmp_path / "migrated.db"
    for path in (created, migrated):
        engine = database.create_engine(f"sqlite:///{path}")
        try:
            if path == created:
                database.migrate(engine)
            else:
                database._run_alembic(engine)
        finally:
            engine.dispose()
    assert shape(created) == shape(migrated)
    assert shape(created)["versions"] == [(tables.HEAD_REVISION,)]


OPENERS = """
import os, sys, traceback
from controller.store import queries
count, failures = int(sys.argv[1]), 0
for path in sys.argv[2:]:
    children = []
    for _ in range(count):  # forked from a warm interpreter: they reach the file at once
        pid = os.fork()
        if pid == 0:
            try:
                queries.Store.open(f"sqlite:///{path}", "ws").lane_records()
            except Exception:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        children.append(pid)
    failures += sum(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0 for pid in children)
sys.exit(failures)
"""


@pytest.mark.usefixtures("cpu_load")
def test_processes_opening_a_new_sqlite_store_at_once_all_succeed(tmp_path: Path) -> None:
    # A new file switched to WAL by two processes at once failed one of them with "database
    # is locked": `controller wait` started beside `controller --once` on a fresh checkout
    # exited 1.
    paths = [str(tmp_path / f"s{i}" / "state.db") for i in range(12)]
    done = subprocess.run(
        (sys.executable, "-c", OPENERS, "5", *paths), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for path in paths:
        with sqlite3.connect(path) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def other_process_reads(path: Path) -> list[list[str]]:
    """The lanes as another process sees them; it closes the database when done."""
    script = (
        "import json, sqlite3, sys; "
        "print(json.dumps(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchall()))"
    )
    query = "SELECT name, phase FROM lanes ORDER BY name"
    done = subprocess.run(
        (sys.executable, "-c", script, str(path), query), capture_output=True, text=True, check=True
    )
    found: list[list[str]] = json.loads(done.stdout)
    return found


def test_commits_survive_another_process_closing_the_database(tmp_path: Path) -> None:
    # Opening a second engine on the file used to open and close the database file outside
    # SQLite, which drops every POSIX lock the process holds on it: another process closing
    # the database then took itself for the last user and reset the write-ahead log under
    # ours ("disk I/O error" in the daemon, and its commits lost).
    path = tmp_path / "state.db"
    first = queries.Store.open(f"sqlite:///{path}", "ws")
    try:
        assert first.lane_records() == {}
        second = queries.Store.open(f"sqlite:///{path}", "ws")
        second.close()
        for name in ("a", "b", "c"):
            first.put_lane(world.LaneRecord(name, Phase.READY, f"/r/{name}", "x"), NOW)
            assert other_process_reads(path)[-1] == [name, "ready"]
        first.update_lane("a", NOW, phase=Phase.RUNNING)
        assert other_process_reads(path)[0] == ["a", "running"]
        assert sorted(first.lane_records()) == ["a", "b", "c"]
    finally:
        first.close()


def test_agent_records_keep_their_field_digests(store: queries.Store) -> None:
    from controller.core import lifecycle

    fields = {"command": "0123456789abcdef", "env.API_KEY": "fedcba9876543210"}
    record = world.AgentRecord(
        "b", "a", "p", "tmux", world.AgentState.RUNNING, "h", spec_fields=fields
    )
    store.put_agent(record, NOW)
    assert store.agent_records()["b"].spec_fields == fields
    store.put_agent(replace(record, binding="old", spec_fields={}), NOW)
    assert store.agent_records()["old"].spec_fields == {}  # as rows written before 0005
    assert lifecycle.changed_fields({}, fields) == (lifecycle.FieldChange("binding"),)


def test_agents_recorded_before_revision_0005_read_without_digests(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = database.create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(database.MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0004")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO agents (workspace, binding, lane, participant, runtime, state, "
            "spec_hash, deaths, updated_at) VALUES ('ws', 'b', 'a', 'p', 'tmux', 'running', "
            "'h', '[]', '2026-11-21 12:00:00')"
        )
    engine.dispose()
    store = queries.Store.open(url, "ws")  # migrates to the head revision
    try:
        assert store.agent_records()["b"].spec_fields == {}
    finally:
        store.close()


def test_commits_survive_reads_without_sqlalchemy(tmp_path: Path) -> None:
    # Opening the engine after the sqlite3 reader used to open and close the database file,
    # which drops every POSIX lock the process holds on it: another process closing the
    # database then took itself for the last user and reset the write-ahead log under ours
    # ("disk I/O error" in the daemon, and its commits lost).
    path = tmp_path / "state.db"
    queries.Store.open(f"sqlite:///{path}", "ws").close()
    store = queries.Store.open(f"sqlite:///{path}", "ws")
    try:
        assert store.lane_records() == {}  # through the reader
        for name in ("a", "b", "c"):
            store.put_lane(world.LaneRecord(name, Phase.READY, f"/r/{name}", "x"), NOW)
            assert other_process_reads(path)[-1] == [name, "ready"]
        store.update_lane("a", NOW, phase=Phase.RUNNING)
        assert other_process_reads(path)[0] == ["a", "running"]
        assert sorted(store.lane_records()) == ["a", "b", "c"]
    finally:
        store.close()
