"""The workspace lock: one pass at a time per workspace, across processes.

An ``flock`` on ``.lanes/controller.lock``: released by the kernel when the holder dies, even by
SIGKILL, so a crashed controller never leaves the workspace locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from controller import errors

POLL_SECONDS = 0.1


@contextlib.asynccontextmanager
async def workspace_lock(path: Path, *, wait: float, on_wait: object = None) -> AsyncIterator[None]:
    """Hold the lock at ``path`` for the duration; wait up to ``wait`` seconds for it.

    ``on_wait`` is called once, with the holder's pid (or None), when the lock is busy.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        await _acquire(fd, path, wait=wait, on_wait=on_wait)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


async def _acquire(fd: int, path: Path, *, wait: float, on_wait: object) -> None:
    told = False
    with anyio.move_on_after(wait) as scope:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if not told and callable(on_wait):
                    on_wait(holder(path))
                    told = True
                await anyio.sleep(POLL_SECONDS)
    if scope.cancelled_caught:
        who = holder(path)
        raise errors.WorkspaceBusy(
            f"another controller pass (pid {who or 'unknown'}) holds {path}; waited {wait:g}s. "
            "Try again when it finishes, or pass --lock-timeout to wait longer."
        )


def holder(path: Path) -> int | None:
    """The pid written by the lock's current holder, if readable."""
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None
