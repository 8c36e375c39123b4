"""Running external programs: argv lists only, always with a timeout, never a shell.

``Runner`` is the seam: the real one wraps ``anyio.run_process``; tests of pure parsing use a
fake that answers scripted argv prefixes. Every call is counted, so a benchmark can show that a
pass makes a constant number of calls however many lanes there are.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio

from controller import errors

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
    """The real runner: ``anyio.run_process`` with a base environment and a deadline."""

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
        try:
            with anyio.fail_after(timeout):
                done = await anyio.run_process(
                    args, cwd=cwd, env=merged, check=False, stdin=subprocess.DEVNULL
                )
        except TimeoutError as exc:
            raise errors.CommandFailed(args, None, f"no answer within {timeout:g}s") from exc
        except OSError as exc:
            raise errors.CommandFailed(args, 127, str(exc)) from exc
        return Completed(
            args,
            done.returncode,
            done.stdout.decode("utf-8", stdout_errors),
            done.stderr.decode("utf-8", "replace"),
        )
