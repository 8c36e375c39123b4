"""The daemon's listener on PostgreSQL: a post anywhere (another host, or an agent's command
that wrote to the store itself) nudges the wake loop at once, instead of at its next poll.

One connection of its own ``LISTEN``s (``store.notifications``). A lost connection is logged
and opened again with backoff; after every (re)connection the wake loop is nudged once, since a
post made meanwhile sent its notification to nobody (the heads comparison finds it). The poll
stays the safety net: this only makes wakes sooner. On SQLite it never connects.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import anyio

from controller.runtime.daemon import Level, Log
from controller.store import notifications, queries

NAME = "lanes-listen"  # application_name, followed by the daemon's pid
CHECK_EVERY = 10.0  # seconds without a notification after which the connection is checked
CHECK_TIMEOUT = 10.0  # a check that takes longer counts as a lost connection
LOOK_EVERY = 1.0  # while the daemon has no PostgreSQL store: how often to look again
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0


def backoff(failures: int) -> float:
    """Seconds before the next attempt after ``failures`` failed ones in a row (doubling)."""
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, failures - 1)))


class Listening:
    """Runs in the daemon's task group until cancelled (the daemon stopping)."""

    def __init__(
        self, current: Callable[[], queries.Store | None], nudge: Callable[[], None], log: Log
    ) -> None:
        self._current = current  # the daemon's store now (None before its first pass)
        self._nudge = nudge
        self._log = log
        self._name = f"{NAME} {os.getpid()}"
        self._connected = False  # once: later connections are logged as "again"

    async def run(self) -> None:
        """Listen while the daemon's store is PostgreSQL; reconnect after a loss."""
        failures = 0
        while True:
            store = self._store()
            if store is None:
                await anyio.sleep(LOOK_EVERY)
                continue
            try:
                listener = await notifications.Listener.connect(store, name=self._name)
            except Exception as exc:  # the server down or refusing: the poll still works
                failures += 1
                self._warn("cannot listen for posts; polling until then", exc, failures)
                await anyio.sleep(backoff(failures))
                continue
            failures = 0
            self._listening(listener)
            try:
                await self._follow(listener, store)
            except Exception as exc:  # the connection lost (terminated, network, timeout)
                failures = 1
                self._warn("listening connection lost; reconnecting", exc, failures)
            finally:
                with anyio.CancelScope(shield=True):
                    await _close(listener)
            if failures:
                await anyio.sleep(backoff(failures))

    def _store(self) -> queries.Store | None:
        store = self._current()
        return store if store is not None and notifications.is_postgres(store.url) else None

    def _listening(self, listener: notifications.Listener) -> None:
        again = self._connected
        self._connected = True
        event = "listening for posts again" if again else "listening for posts"
        self._log(event, channel=notifications.CHANNEL, backend=listener.pid)
        self._nudge()  # a post while nobody listened notified nobody

    async def _follow(self, listener: notifications.Listener, store: queries.Store) -> None:
        """Nudge for each post of this workspace until the daemon's store changes."""
        while self._current() is store:
            async with listener.notices(timeout=CHECK_EVERY) as notices:
                async for notice in notices:
                    if notifications.workspace_of(notice.payload) == store.workspace:
                        self._nudge()
            with anyio.fail_after(CHECK_TIMEOUT):
                await listener.check()

    def _warn(self, event: str, exc: Exception, failures: int) -> None:
        error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self._log(
            event, level=Level.WARNING, error=error, attempt=failures, retry_in=backoff(failures)
        )


async def _close(listener: notifications.Listener) -> None:
    with contextlib.suppress(Exception):  # a connection already lost: nothing left to release
        await listener.close()
