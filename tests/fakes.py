"""Fakes of our own Protocols, for unit tests of code around the seams (never mock.patch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import anyio.lowlevel

from controller import errors
from controller.system import proc


@dataclass
class ScriptedRunner:
    """Answers argv prefixes with scripted results, like httpx's MockTransport."""

    script: list[tuple[tuple[str, ...], proc.Completed | Exception]] = field(default_factory=list)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    once: list[tuple[tuple[str, ...], proc.Completed]] = field(default_factory=list)

    def on(self, *prefix: str, rc: int = 0, stdout: str = "", stderr: str = "") -> None:
        self.script.append((prefix, proc.Completed(prefix, rc, stdout, stderr)))

    def first(self, *prefix: str, rc: int = 0, stdout: str = "", stderr: str = "") -> None:
        """Answer the next matching call this way, once, before the ``on`` answers."""
        self.once.append((prefix, proc.Completed(prefix, rc, stdout, stderr)))

    def fail(self, *prefix: str, exc: Exception) -> None:
        self.script.append((prefix, exc))

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = proc.DEFAULT_TIMEOUT,
        stdout_errors: str = "replace",
    ) -> proc.Completed:
        args = tuple(argv)
        self.calls.append(args)
        for index, (prefix, scripted) in enumerate(self.once):
            if _matches(args, prefix):
                del self.once[index]
                return proc.Completed(args, scripted.rc, scripted.stdout, scripted.stderr)
        for prefix, answer in self.script:
            if _matches(args, prefix):
                if isinstance(answer, Exception):
                    raise answer
                return proc.Completed(args, answer.rc, answer.stdout, answer.stderr)
        raise errors.CommandFailed(args, 127, "no scripted answer")


def _matches(args: tuple[str, ...], prefix: tuple[str, ...]) -> bool:
    """A prefix matches when its words appear in order (so `-C <dir>` can be skipped)."""
    it = iter(args)
    return all(any(word == a for a in it) for word in prefix)


@dataclass
class FakeClock:
    """A clock whose ``sleep`` advances time instantly (kopf's looptime idea)."""

    current: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    slept: list[float] = field(default_factory=list)

    def now(self) -> datetime:
        return self.current

    def monotonic(self) -> float:
        return self.current.timestamp()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.current += timedelta(seconds=seconds)
        await anyio.lowlevel.checkpoint()
