"""The store on real SQLite and real PostgreSQL: same schema, same behaviour."""

from __future__ import annotations

import stat
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
