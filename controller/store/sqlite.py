"""Reading the embedded (SQLite) store without SQLAlchemy.

Most passes only read the store (the inventory, agent records, backoff memory, whether there
are runs), and importing SQLAlchemy cost such a pass more than all its other work together
(decision 92). These reads are SQLAlchemy statements (``store.reads``), compiled for SQLite
ahead of time into ``statements.json`` (generated; a test fails while it is out of date). Here
they run through the standard library's sqlite3, and each column is decoded as its SQLAlchemy
type decodes it: aware UTC times, JSON, booleans. A test runs every read both ways and
compares the rows. Writes, every other read and PostgreSQL go through SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from controller import errors

STATEMENTS = Path(__file__).with_name("statements.json")
REVISION = "SELECT version_num FROM alembic_version"
BUSY_TIMEOUT = 30.0  # seconds a read waits for a writer's lock, as SQLAlchemy's engine does
_PLAIN = re.compile(r"sqlite:///(?P<path>[^?#%]+)")


class Decode(StrEnum):
    """How a column's stored value becomes what SQLAlchemy's type for it returns."""

    PLAIN = "plain"  # text and numbers: sqlite3 returns them as SQLAlchemy does
    UTC = "utc"  # tables.UTCDateTime: "YYYY-MM-DD HH:MM:SS.ffffff", naive UTC, made aware
    JSON = "json"
    BOOL = "bool"


@dataclass(frozen=True, slots=True)
class Compiled:
    """One read: its SQL (positional ``?`` parameters), their names, its result columns."""

    sql: str
    params: tuple[str, ...]
    columns: tuple[tuple[str, Decode], ...]


def file_of(url: str) -> Path | None:
    """The database file of a plain SQLite URL (``sqlite:///PATH``), else None.

    Any other URL (a driver name, query parameters, escapes, in-memory, another backend) is
    left to SQLAlchemy to understand.
    """
    match = _PLAIN.fullmatch(url)
    if match is None or match["path"] == ":memory:":
        return None
    return Path(match["path"])


def prepare_file(path: Path) -> None:
    """Create the database file 0600 in a 0700 folder, in WAL mode, or make it 0600 again.

    The file is created and switched to WAL under ``file_lock`` (the migration lock): two
    processes switching a new file at once fail with "database is locked" (SQLite does not wait
    for that lock). An existing file is never opened outside SQLite: closing any descriptor of
    a database file drops every POSIX lock the process holds on it, those of SQLite's open
    connections included, and a connection that lost its lock can see the write-ahead log
    reset under it ("disk I/O error", lost commits).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with file_lock(path):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            pass
        else:
            os.close(fd)
        if path.stat().st_size == 0:  # new, or created by a process that stopped right after
            connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
            finally:
                connection.close()
    path.chmod(0o600)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on a file beside the database (never on the database file itself),
    held while a new store is created, switched to WAL or migrated."""
    fd = os.open(f"{path}.migrate-lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@cache
def statements() -> tuple[str, Mapping[str, Compiled]]:
    """The schema revision the compiled reads are for, and the reads by name."""
    data = json.loads(STATEMENTS.read_text(encoding="utf-8"))
    reads = {
        name: Compiled(
            read["sql"],
            tuple(read["params"]),
            tuple((column, Decode(how)) for column, how in read["columns"].items()),
        )
        for name, read in data["reads"].items()
    }
    return data["revision"], reads


class Reader:
    """The compiled reads of one store, on one connection (worker threads take turns)."""

    def __init__(self, connection: sqlite3.Connection, reads: Mapping[str, Compiled]) -> None:
        self._connection = connection
        self._reads = reads
        self._lock = threading.Lock()

    @classmethod
    def open(cls, url: str) -> Reader | None:
        """A reader of the store at ``url``, or None unless it is a SQLite file at the schema
        revision the reads were compiled for (a store to create or migrate is SQLAlchemy's)."""
        path = file_of(url)
        if path is None or not path.is_file():
            return None
        prepare_file(path)
        revision, reads = statements()
        try:
            connection = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise errors.StoreError(f"cannot open the store {path}: {exc}") from exc
        try:
            found = connection.execute(REVISION).fetchall()
        except sqlite3.Error:
            found = []  # no alembic_version table: a store never created
        if found != [(revision,)]:
            connection.close()
            return None
        return cls(connection, reads)

    def rows(self, name: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The rows of the read called ``name``, each column decoded."""
        read = self._reads[name]
        values = [params[p] for p in read.params]
        try:
            with self._lock:
                fetched = self._connection.execute(read.sql, values).fetchall()
        except sqlite3.Error as exc:
            raise errors.StoreError(f"the store failed: {exc}") from exc
        return [
            {
                column: _decode(how, value)
                for (column, how), value in zip(read.columns, row, strict=True)
            }
            for row in fetched
        ]

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()


def _decode(how: Decode, value: Any) -> Any:
    if value is None or how == Decode.PLAIN:
        return value
    if how == Decode.JSON:
        return json.loads(value)
    if how == Decode.BOOL:
        return bool(value)
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
