"""Stopping processes safely: identity checked (PID *and* create time) before every signal,
SIGTERM to the whole process group, SIGKILL after the grace period.
"""

from __future__ import annotations

import enum
import os
import signal

import anyio
import psutil

from controller.core import lifecycle
from controller.system import clock

POLL = 0.1
KILL_WAIT = 5.0


class Ended(enum.StrEnum):
    """How a stop went."""

    NOT_RUNNING = "not-running"  # already gone, or the PID now belongs to another process
    TERMINATED = "terminated"  # ended within the grace period after SIGTERM
    KILLED = "killed"  # needed SIGKILL
    SURVIVED = "survived"  # still there after SIGKILL (e.g. stuck in the kernel)


def matches(pid: int, created: float | None) -> bool:
    """Whether ``pid`` is alive and is the process that was recorded (not a reused PID)."""
    if created is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(proc.create_time() - created) <= lifecycle.CREATE_TIME_TOLERANCE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def create_time(pid: int) -> float | None:
    """The create time of ``pid``, or None if it is already gone."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _send(pid: int, created: float | None, sig: signal.Signals) -> bool:
    """Signal the process group led by ``pid`` (or just ``pid``) after checking identity."""
    if not matches(pid, created):
        return False
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


async def _gone_within(pid: int, created: float | None, seconds: float, clk: clock.Clock) -> bool:
    waited = 0.0
    while waited < seconds:
        if not await anyio.to_thread.run_sync(matches, pid, created):
            return True
        await clk.sleep(POLL)
        waited += POLL
    return not await anyio.to_thread.run_sync(matches, pid, created)


async def terminate(
    pid: int | None, created: float | None, *, grace: float, clk: clock.Clock
) -> Ended:
    """SIGTERM the group, wait up to ``grace``, then SIGKILL it."""
    if pid is None or not await anyio.to_thread.run_sync(_send, pid, created, signal.SIGTERM):
        return Ended.NOT_RUNNING
    if await _gone_within(pid, created, grace, clk):
        return Ended.TERMINATED
    await anyio.to_thread.run_sync(_send, pid, created, signal.SIGKILL)
    if await _gone_within(pid, created, KILL_WAIT, clk):
        return Ended.KILLED
    return Ended.SURVIVED
