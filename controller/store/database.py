"""Opening the store: engine, SQLite pragmas and file mode, migrations to the newest revision.

The common case (a store already at ``HEAD_REVISION``) is one small query; Alembic is imported
only when there is something to migrate. A new SQLite store is created from the tables at the
newest revision directly (what the migrations build, as a test checks), without Alembic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url

from controller import errors
from controller.store import sqlite, tables

MIGRATIONS = Path(__file__).parent / "migrations"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for other backends and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def create_engine(url: str) -> sa.Engine:
    """An engine for ``url``; a SQLite file is created 0600 in a 0700 folder, in WAL mode."""
    path = sqlite_path(url)
    if path is not None:
        sqlite.prepare_file(path)
        engine = sa.create_engine(
            url, connect_args={"timeout": sqlite.BUSY_TIMEOUT, "check_same_thread": False}
        )
        sa_event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # The timeout first. The file is in WAL mode already (see sqlite.prepare_file): a no-op.
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def current_revision(engine: sa.Engine) -> str | None:
    """The Alembic revision the database is at, or None if it was never migrated."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision (a no-op when it is there already)."""
    try:
        current = current_revision(engine)
        if current == tables.HEAD_REVISION:
            return
        if current is not None and current > tables.HEAD_REVISION:
            raise errors.StoreError(
                f"the store {engine.url.render_as_string()} is at schema revision {current}, "
                f"newer than this controller knows ({tables.HEAD_REVISION}); upgrade the "
                "controller, or point --state at another store"
            )
        with _migration_lock(engine):
            current = current_revision(engine)
            if current is None and _empty_sqlite(engine):
                _create_sqlite(engine)
            elif current != tables.HEAD_REVISION:
                _run_alembic(engine)
    except sa.exc.SQLAlchemyError as exc:
        raise errors.StoreError(f"cannot open or migrate the store: {exc}") from exc


@contextlib.contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[None]:
    """Serialise first-time migrations of one SQLite file across processes."""
    path = sqlite_path(str(engine.url))
    if path is None:
        yield  # PostgreSQL takes an advisory lock inside the migration transaction
        return
    with sqlite.file_lock(path):
        yield


def _empty_sqlite(engine: sa.Engine) -> bool:
    """A SQLite database without a single table: a store to create, not one to migrate."""
    if engine.dialect.name != "sqlite":
        return False
    with engine.connect() as conn:
        return not sa.inspect(conn).get_table_names()


VERSIONS = sa.Table(
    "alembic_version",
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)
"""Alembic's own table, as Alembic creates it, so that later migrations find their start."""


def _create_sqlite(engine: sa.Engine) -> None:
    """Create every table at the newest revision, in one transaction, and record it.

    Importing Alembic and replaying each migration cost the first pass of a repository about
    0.2 s; the schema this builds is the migrations' (tests compare the two).
    """
    with engine.begin() as conn:
        tables.metadata.create_all(conn)
        VERSIONS.create(conn)
        conn.execute(VERSIONS.insert().values(version_num=tables.HEAD_REVISION))


def _run_alembic(engine: sa.Engine) -> None:
    from alembic import command  # imported only when a migration is due
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Two controllers starting at once must not both create the tables.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7243001)"))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
