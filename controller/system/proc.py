"""Running external programs: argv lists only, always with a timeout, never a shell.

``Runner`` is the seam: the real one wraps ``anyio.open_process``; tests of pure parsing use a
fake that answers scripted argv prefixes. Every call is counted, so a benchmark can show that a
pass makes a constant number of calls however many lanes there are. Each program runs in its own
session, so that a timeout (or a cancelled pass) ends everything it started, not only itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio
import anyio.abc

from controller import errors
from controller.system import launch

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Completed:
    """The result of one finished program."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """Whether the program exited 0."""
        return self.rc == 0

    def check(self) -> Completed:
        """Return self, or raise ``CommandFailed`` if the program exited non-zero."""
        if self.rc != 0:
            raise errors.CommandFailed(self.argv, self.rc, self.stderr)
        return self


class Runner(Protocol):
    """Runs one program to completion and returns what it printed."""

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        stdout_errors: str = "replace",
    ) -> Completed:
        """Run ``argv``; raise ``CommandFailed`` with ``rc=None`` if it outlives ``timeout``.

        ``stdout_errors="surrogateescape"`` keeps bytes that are not UTF-8 (file names) in
        ``stdout``, so that ``os.fsencode`` and argv give the exact bytes back.
        """
        ...


@dataclass(slots=True)
class SubprocessRunner:
    """The real runner: one program in its own session, with a base environment and a deadline."""

    base_env: Mapping[str, str]
    calls: int = 0
    history: list[tuple[str, ...]] = field(default_factory=list)
    keep_history: bool = False

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        stdout_errors: str = "replace",
    ) -> Completed:
        """Run ``argv`` to completion, killing it past ``timeout``."""
        args = tuple(argv)
        self.calls += 1
        if self.keep_history:
            self.history.append(args)
        merged = {**self.base_env, **(env or {})}
        # A controller run by an agent must not pass the agent's id on: a tmux server it starts
        # would otherwise count as one of that agent's helpers, and be stopped with it.
        merged.pop(launch.AGENT_ID, None)
        try:
            rc, out, err = await _run_in_session(args, cwd=cwd, env=merged, timeout=timeout)
        except TimeoutError as exc:
            raise errors.CommandFailed(args, None, f"no answer within {timeout:g}s") from exc
        except OSError as exc:
            raise errors.CommandFailed(args, 127, str(exc)) from exc
        return Completed(
            args, rc, out.decode("utf-8", stdout_errors), err.decode("utf-8", "replace")
        )


async def _run_in_session(
    args: tuple[str, ...], *, cwd: str | Path | None, env: Mapping[str, str], timeout: float
) -> tuple[int, bytes, bytes]:
    """Run ``args`` as the leader of a new session; past ``timeout`` kill its whole group.

    ``anyio.run_process`` kills only its direct child on timeout: a hung wrapper's children
    (and whatever holds its pipes) would live on.
    """
    process = await anyio.open_process(
        args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, start_new_session=True
    )
    try:
        with anyio.fail_after(timeout):
            out, err = await _communicate(process)
    except BaseException:
        # Timed out or cancelled: the group is the program and everything it started that
        # stayed in it (daemons such as the tmux server leave it on purpose, by setsid).
        kill_group(process.pid)
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await process.aclose()  # reaps the leader
    assert process.returncode is not None
    return process.returncode, out, err


async def _communicate(process: anyio.abc.Process) -> tuple[bytes, bytes]:
    """Read both pipes to their end and wait for the program to exit."""
    chunks: dict[int, list[bytes]] = {1: [], 2: []}

    async def drain(stream: anyio.abc.ByteReceiveStream | None, fd: int) -> None:
        if stream is not None:
            async for chunk in stream:
                chunks[fd].append(chunk)

    async with anyio.create_task_group() as group:
        group.start_soon(drain, process.stdout, 1)
        group.start_soon(drain, process.stderr, 2)
        await process.wait()
    return b"".join(chunks[1]), b"".join(chunks[2])


def kill_group(pgid: int) -> None:
    """SIGKILL every process of the group ``pgid`` (already gone: nothing to do)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
