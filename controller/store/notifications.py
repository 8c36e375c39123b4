"""Notifications of posts on PostgreSQL: ``post`` sends one in its own transaction (``NOTIFY``,
delivered only when it commits), and a daemon's ``Listener`` connection receives them
(``LISTEN``), so a message posted on another host wakes its recipient at once.

The payload names the workspace, the thread and the sequence number, never the message's
text. SQLite has no notifications: nothing here runs on it, and psycopg is imported only to
listen.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from controller.store.queries import Store

if TYPE_CHECKING:
    import psycopg

CHANNEL = "lanes_messages"
CONNECT_TIMEOUT = 10  # seconds, unless the store's URL says otherwise


def is_postgres(url: str) -> bool:
    """Whether a store URL is PostgreSQL's (read without loading SQLAlchemy's URL parser)."""
    return url.startswith(("postgresql:", "postgresql+", "postgres:"))


def send(conn: sa.Connection, workspace: str, thread: str, seq: int) -> None:
    """Notify listeners of a post, in the caller's transaction; a no-op but on PostgreSQL."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(sa.select(sa.func.pg_notify(CHANNEL, encode(workspace, thread, seq))))


def encode(workspace: str, thread: str, seq: int) -> str:
    """The payload: names and a number (names are at most 63 characters: far under the 8,000
    bytes PostgreSQL allows)."""
    return json.dumps({"seq": seq, "thread": thread, "workspace": workspace}, separators=(",", ":"))


def workspace_of(payload: str) -> str | None:
    """The workspace a payload names, or None for one this module did not write."""
    try:
        found = json.loads(payload)
    except ValueError:
        return None
    workspace = found.get("workspace") if isinstance(found, dict) else None
    return workspace if isinstance(workspace, str) else None


class Listener:
    """One autocommit connection of its own (not the engine's pool) that listens on
    ``CHANNEL``, with psycopg's async API: the daemon's event loop waits on its socket."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    @classmethod
    async def connect(cls, store: Store, *, name: str) -> Listener:
        """Connect as the store's engine does, named ``name`` (``application_name``: what
        ``pg_stat_activity`` shows), and ``LISTEN``."""
        import psycopg  # only a daemon on PostgreSQL listens

        engine = store.engine
        args, params = engine.dialect.create_connect_args(engine.url)
        # A server that does not answer must not hold the listener (the poll goes on anyway).
        params = {"connect_timeout": CONNECT_TIMEOUT, **params, "application_name": name}
        conn = await psycopg.AsyncConnection.connect(*args, autocommit=True, **params)
        try:
            await conn.execute("LISTEN lanes_messages")  # CHANNEL
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    @property
    def pid(self) -> int:
        """The server process of the connection (``pg_terminate_backend`` takes it)."""
        return int(self._conn.info.backend_pid)

    @contextlib.asynccontextmanager
    async def notices(self, *, timeout: float) -> AsyncIterator[AsyncIterator[psycopg.Notify]]:
        """The notifications that arrive within ``timeout`` seconds (reading them raises when
        the connection is lost: ``psycopg.OperationalError``), closed on leaving however that
        happens (a cancelled wait included)."""
        async with contextlib.aclosing(self._conn.notifies(timeout=timeout)) as found:
            yield found

    async def check(self) -> None:
        """One round trip: raises when the connection is gone."""
        await self._conn.execute("SELECT 1")

    async def close(self) -> None:
        """Close the connection (nothing to do when it is closed already)."""
        await self._conn.close()
