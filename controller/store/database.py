"""Opening the store: engine, SQLite pragmas and file mode, migrations to the newest revision.

The common case (a store already at ``HEAD_REVISION``) is one small query; Alembic is imported
only when there is something to migrate.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url

from controller import errors
from controller.store import tables

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
        _prepare_sqlite_file(path)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        sa_event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed, pool_pre_ping=True)


def _prepare_sqlite_file(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    os.close(fd)
    path.chmod(0o600)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # The timeout first: switching to WAL needs a lock too, and waits only as long as it says.
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
            if current_revision(engine) != tables.HEAD_REVISION:
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
    fd = os.open(f"{path}.migrate-lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
