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

import pytest
import sqlalchemy as sa

from controller.core import memory, world
from controller.core.phases import Phase
from controller.store import database, events, queries, tables

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
    paths = [str(tmp_path / f"s{i}" / "state.db") for i in range(30)]
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
