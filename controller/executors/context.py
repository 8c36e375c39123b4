"""What every handler receives: the wiring (seams and places), the pass's correlation id, and
the state the handlers of one pass share.

The runtime builds the wiring once and owns the per-pass state; the Protocols below say what
handlers read of them (``runtime.wiring.Wiring`` and ``runtime.reconcile.PassState``), so the
executors do not import the runtime.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

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


class Places(Protocol):
    """Where the workspace lives (``runtime.wiring.Paths``)."""

    @property
    def repo(self) -> Path: ...
    @property
    def root(self) -> Path: ...
    @property
    def state_dir(self) -> Path: ...
    @property
    def state_url(self) -> str: ...
    @property
    def workspace(self) -> str: ...
    @property
    def desired(self) -> Path: ...
    @property
    def host(self) -> str: ...


class Seams(Protocol):
    """The seams built once for the workspace (``runtime.wiring.Wiring``)."""

    @property
    def paths(self) -> Places: ...
    @property
    def runner(self) -> proc.Runner: ...
    @property
    def store(self) -> queries.Store: ...
    @property
    def clock(self) -> clock.Clock: ...
    @property
    def tmux(self) -> tmuxserver.TmuxServer | None: ...
    @property
    def agent_env(self) -> Mapping[str, str]: ...
    @property
    def python(self) -> str: ...


class PassState(Protocol):
    """What the handlers of one pass share (``runtime.reconcile.PassState``)."""

    @property
    def children(self) -> list[subprocess.Popen[bytes]]:
        """Launchers of process-runtime agents, for the runtime to reap."""
        ...

    @property
    def sessions(self) -> dict[str, str]:
        """Lane to its tmux session id, as observed or created in this pass."""
        ...


@dataclass(frozen=True, slots=True)
class Context:
    """The wiring, the pass's correlation id and its shared state: what a handler works with."""

    wiring: Seams
    correlation_id: str
    pass_state: PassState

    @property
    def runner(self) -> proc.Runner:
        """Runs external programs (argv, timeouts)."""
        return self.wiring.runner

    @property
    def store(self) -> queries.Store:
        """The store (call it through ``db``)."""
        return self.wiring.store

    @property
    def clock(self) -> clock.Clock:
        """The pass's clock."""
        return self.wiring.clock

    @property
    def tmux(self) -> tmuxserver.TmuxServer | None:
        """The workspace's tmux server, if tmux is available."""
        return self.wiring.tmux

    @property
    def agent_env(self) -> Mapping[str, str]:
        """Variables every agent gets."""
        return self.wiring.agent_env

    @property
    def python(self) -> str:
        """The interpreter that runs the agent launcher."""
        return self.wiring.python

    @property
    def repo(self) -> Path:
        """The main checkout."""
        return self.wiring.paths.repo

    @property
    def root(self) -> Path:
        """Today's worktree root."""
        return self.wiring.paths.root

    @property
    def state_dir(self) -> Path:
        """``.lanes/`` of the main checkout."""
        return self.wiring.paths.state_dir

    @property
    def state_url(self) -> str:
        """The store's URL (agents get it)."""
        return self.wiring.paths.state_url

    @property
    def workspace(self) -> str:
        """The workspace's name."""
        return self.wiring.paths.workspace

    @property
    def desired(self) -> Path:
        """The desired folder (agents get it as CONTROLLER_DESIRED)."""
        return self.wiring.paths.desired

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
        event = self.event(kind, reason, lane=lane, participant=participant, **data)
        await self.db(self.store.append_events, [event])

    def event(
        self,
        kind: str,
        reason: str,
        *,
        lane: str | None = None,
        participant: str | None = None,
        **data: Any,
    ) -> events.Event:
        """An event of this pass, at the current time, to append with a change it records."""
        return events.Event(
            kind=kind,
            reason=reason,
            at=self.clock.now(),
            correlation_id=self.correlation_id,
            lane=lane,
            participant=participant,
            data=data,
        )

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
