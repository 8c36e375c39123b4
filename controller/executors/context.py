"""What every handler receives: the seams (runner, store, clock) and where things live."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio

from controller import errors
from controller.core import actions
from controller.store import events, queries
from controller.system import clock, proc, tmuxserver
from controller.system import git as gitseam

T = TypeVar("T")

Status = Literal["applied", "unchanged", "refused", "failed"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one action."""

    action: actions.ActionBase
    status: Status
    message: str

    @property
    def failed(self) -> bool:
        """Whether the action failed (and the lane should back off)."""
        return self.status == "failed"


@dataclass(slots=True)
class Context:
    """The seams and locations handlers work with, for one pass."""

    runner: proc.Runner
    store: queries.Store
    clock: clock.Clock
    repo: Path
    root: Path
    state_dir: Path
    correlation_id: str
    git_env: Mapping[str, str] = field(default_factory=dict)
    tmux: tmuxserver.TmuxServer | None = None
    agent_env: Mapping[str, str] = field(default_factory=dict)
    python: str = "python3"
    state_url: str = ""
    workspace: str = ""
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sessions: dict[str, str] = field(default_factory=dict)  # lane -> tmux session id, this pass
    desired: Path | None = None  # the desired folder (agents get it as CONTROLLER_DESIRED)

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call in a worker thread."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    async def emit(
        self,
        kind: str,
        reason: str,
        *,
        lane: str | None = None,
        participant: str | None = None,
        **data: Any,
    ) -> None:
        """Append one event to the log now (not at the end of the pass: a crash keeps it)."""
        event = events.Event(
            kind=kind,
            reason=reason,
            at=self.clock.now(),
            correlation_id=self.correlation_id,
            lane=lane,
            participant=participant,
            data=data,
        )
        await self.db(self.store.append_events, [event])

    @property
    def git(self) -> gitseam.Git:
        """git on the workspace's repository, through this pass's runner and clock."""
        return gitseam.Git(self.runner, self.repo, clock=self.clock)

    @property
    def quarantine(self) -> Path:
        """Where directories git no longer knows are moved, content intact."""
        return self.state_dir / "quarantine"

    def root_of(self, recorded: str) -> Path:
        """The worktree root a lane path lives in: today's, or the one it was created under.

        ``worktreeRoot`` may change while lanes exist; their records keep the old paths, and a
        record proves the path is the controller's. Anything outside the repository is refused.
        """
        path = Path(recorded)
        if path.is_relative_to(self.root):
            return self.root
        parent = path.parent
        if parent != self.repo and parent.is_relative_to(self.repo):
            return parent
        raise errors.OutsideRoot(f"{recorded} is outside {self.repo}; not touching it")

    @property
    def run_dir(self) -> Path:
        """Launch files (environment hand-over) and exit statuses of process-runtime agents."""
        return self.state_dir / "run"

    @property
    def logs(self) -> Path:
        """Logs of process-runtime agents: ``logs/<lane>/<participant>.log``."""
        return self.state_dir / "logs"

    @property
    def scratch(self) -> Path:
        """Private temporary files (rescue indexes)."""
        return self.state_dir / "tmp"
