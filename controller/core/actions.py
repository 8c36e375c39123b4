"""The actions a plan is made of: frozen records, each with a lane, a key and a human reason.

The same tuple of actions is rendered by ``controller plan``, serialised by ``--output json``
and executed by the executors; ``key`` is stable across passes so that an action applied and
planned again can be recognised (and backed off).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeAlias

from controller.core.lifecycle import ExitDecision, FieldChange


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _jsonable(value: Any) -> Any:
    """camelCase keys and ISO 8601 times, all the way down."""
    if isinstance(value, Mapping):
        return {_camel(str(k)): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class Change(enum.StrEnum):
    """How an action shows in the plan summary, Terraform style."""

    ADD = "add"
    CHANGE = "change"
    DESTROY = "destroy"


@dataclass(frozen=True, slots=True)
class ActionBase:
    """Fields every action has."""

    lane: str
    path: str
    reason: str

    kind: ClassVar[str] = "action"
    change: ClassVar[Change] = Change.CHANGE
    backs_off: ClassVar[bool] = True
    """Applied and planned again means no progress: the lane backs off (``core.memory``)."""

    @property
    def key(self) -> str:
        """Stable identity across passes: same kind, lane and path."""
        return f"{self.kind}:{self.lane}:{self.path}"

    @property
    def due_at(self) -> datetime | None:
        """When something this action sets up falls due (a restart), if anything does."""
        return None

    def describe(self) -> str:
        """One line for humans, without the reason."""
        return f"{self.kind} {self.path}"

    def to_json(self) -> Mapping[str, Any]:
        """A stable JSON object: kind, change, key, then the fields (camelCase, ISO times)."""
        fields = _jsonable(asdict(self))
        return {"kind": self.kind, "change": str(self.change), "key": self.key, **fields}


@dataclass(frozen=True, slots=True)
class ProvisionLane(ActionBase):
    """Add the lane's worktree, creating its branch from ``base`` or reusing it as it is."""

    branch: str = ""
    base: str = "HEAD"
    reuse_branch: bool = False
    on_dirty: Literal["preserve", "refuse"] = "preserve"

    kind: ClassVar[str] = "provision"
    change: ClassVar[Change] = Change.ADD

    def describe(self) -> str:
        """One line for humans."""
        source = (
            f"existing branch {self.branch}"
            if self.reuse_branch
            else (f"new branch {self.branch} from {self.base}")
        )
        return f"create worktree {self.path} on {source}"


@dataclass(frozen=True, slots=True)
class AdoptWorktree(ActionBase):
    """Record a complete worktree already on the lane's branch at the lane's path."""

    branch: str = ""

    kind: ClassVar[str] = "adopt"

    def describe(self) -> str:
        """One line for humans."""
        return f"record existing worktree {self.path} on {self.branch}"


@dataclass(frozen=True, slots=True)
class RemoveLane(ActionBase):
    """Stop the lane and remove its worktree, saving any work first; the branch is kept."""

    branch: str = ""
    on_dirty: Literal["preserve", "refuse"] = "preserve"

    kind: ClassVar[str] = "remove"
    change: ClassVar[Change] = Change.DESTROY

    def describe(self) -> str:
        """One line for humans."""
        rule = (
            "saving uncommitted work to refs/lanes/rescue/"
            if self.on_dirty == "preserve"
            else "refusing if it has uncommitted work"
        )
        return f"remove worktree {self.path} ({rule}; branch {self.branch} kept)"


@dataclass(frozen=True, slots=True)
class PruneRecord(ActionBase):
    """Drop git's record of a worktree whose directory is gone (nothing on disk to lose)."""

    kind: ClassVar[str] = "prune"

    def describe(self) -> str:
        """One line for humans."""
        return f"prune git's record of missing worktree {self.path}"


@dataclass(frozen=True, slots=True)
class RepairWorktree(ActionBase):
    """Point git's record of a worktree back at its directory (``git worktree repair``)."""

    recorded: str = ""  # the path git's record names instead

    kind: ClassVar[str] = "repair"

    def describe(self) -> str:
        """One line for humans."""
        return f"repair git's record of worktree {self.path} (it names {self.recorded})"


@dataclass(frozen=True, slots=True)
class DiscardInterrupted(ActionBase):
    """Remove a worktree whose ``git worktree add`` was interrupted before checkout finished."""

    kind: ClassVar[str] = "discard-interrupted"

    def describe(self) -> str:
        """One line for humans."""
        return f"discard half-created worktree {self.path}"


@dataclass(frozen=True, slots=True)
class QuarantineDir(ActionBase):
    """Move a directory git no longer knows out of the worktree root, keeping its content."""

    kind: ClassVar[str] = "quarantine"

    def describe(self) -> str:
        """One line for humans."""
        return f"move orphaned directory {self.path} to .lanes/quarantine/"


@dataclass(frozen=True, slots=True)
class ForgetLane(ActionBase):
    """Drop the store's record of a lane that is neither desired nor on disk."""

    kind: ClassVar[str] = "forget"
    change: ClassVar[Change] = Change.DESTROY

    def describe(self) -> str:
        """One line for humans."""
        return "forget lane record (nothing left on disk)"


@dataclass(frozen=True, slots=True)
class AgentAction(ActionBase):
    """Fields every agent action has; ``path`` is the lane's worktree."""

    binding: str = ""
    participant: str = ""
    runtime: str = "tmux"

    backs_off: ClassVar[bool] = False  # restarts have their own backoff and crash-loop guard

    @property
    def key(self) -> str:
        """Stable identity across passes: kind, lane and binding."""
        return f"{self.kind}:{self.lane}:{self.binding}"


@dataclass(frozen=True, slots=True)
class StartAgent(AgentAction):
    """Start the binding's agent in the lane's worktree (a tmux window, or a process)."""

    command: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    spec_hash: str = ""
    spec_fields: tuple[tuple[str, str], ...] = ()  # recorded; not in JSON (see to_json)
    session_id: str | None = None
    grace: float = 10.0
    split_stderr: bool = False  # a run task: stdout alone is parsed for usage
    # The lane where this binding's (or participant's) previous agent is stopped in the same
    # pass: the start waits until that lane's stops are done (runtime.apply).
    moved_from: str | None = None

    kind: ClassVar[str] = "start-agent"
    change: ClassVar[Change] = Change.ADD

    def describe(self) -> str:
        """One line for humans (the command, never the environment's values)."""
        shown = " ".join(self.command)
        return f"start {self.participant} ({self.runtime}): {shown[:120]}"

    def to_json(self) -> Mapping[str, Any]:
        """JSON with environment values redacted (and no per-field digests: they are made
        from the values)."""
        data = dict(ActionBase.to_json(self))
        data["env"] = {k: "<redacted>" for k, _ in self.env}
        data.pop("specFields", None)
        return data


@dataclass(frozen=True, slots=True)
class StopAgent(AgentAction):
    """Stop the agent: SIGTERM to its process group, SIGKILL after the grace, close its window.

    ``exit`` is what to record afterwards (its death, and the restart decision) when the stop
    is a stale kill; otherwise the agent is recorded as stopped on purpose.
    """

    pid: int | None = None
    pid_created: float | None = None
    window_id: str | None = None
    grace: float = 10.0
    exit: ExitDecision | None = None
    pane_id: str | None = None  # closed rather than the window: a person may have split it
    changes: tuple[FieldChange, ...] = ()  # a restart for a changed binding: what changed

    kind: ClassVar[str] = "stop-agent"

    def describe(self) -> str:
        """One line for humans (a restart names the changed fields, never env values)."""
        if self.changes:
            changed = ", ".join(str(c) for c in self.changes)
            return f"restart {self.participant}: {changed} changed"
        return (
            f"stop {self.participant} (pid {self.pid or '-'}, TERM then KILL after {self.grace:g}s)"
        )


@dataclass(frozen=True, slots=True)
class RemoveAgent(StopAgent):
    """Stop the agent (if alive) and drop it from the inventory: its binding is gone."""

    kind: ClassVar[str] = "remove-agent"
    change: ClassVar[Change] = Change.DESTROY

    def describe(self) -> str:
        """One line for humans."""
        return f"stop and forget {self.participant} (pid {self.pid or '-'})"


@dataclass(frozen=True, slots=True)
class RecordExit(AgentAction):
    """Record that the agent ended (status, death time) and when it may start again."""

    exit: ExitDecision | None = None

    kind: ClassVar[str] = "record-exit"

    @property
    def due_at(self) -> datetime | None:
        """When the agent may start again."""
        return self.exit.next_start_at if self.exit is not None else None

    def describe(self) -> str:
        """One line for humans."""
        known = self.exit is not None and self.exit.last_exit is not None
        status = f"status {self.exit.last_exit}" if known and self.exit else "unknown status"
        return f"record that {self.participant} exited ({status})"


@dataclass(frozen=True, slots=True)
class AdoptAgent(AgentAction):
    """Record a live agent the controller started but has no record of (lost store, crash).

    Its pane carries the binding's launcher and its process runs the binding's command, so it
    is taken into the inventory as it is instead of being killed and started again.
    """

    pid: int = 0
    pid_created: float = 0.0
    session_id: str = ""
    window_id: str = ""
    pane_id: str = ""
    spec_hash: str = ""
    spec_fields: tuple[tuple[str, str], ...] = ()  # recorded; not in JSON (see to_json)
    grace: float = 10.0
    started_at: datetime | None = None

    kind: ClassVar[str] = "adopt-agent"

    def to_json(self) -> Mapping[str, Any]:
        """JSON without the per-field digests (they are made from env values)."""
        data = dict(ActionBase.to_json(self))
        data.pop("specFields", None)
        return data

    def describe(self) -> str:
        """One line for humans."""
        where = f", pane {self.pane_id}" if self.pane_id else ""
        return f"adopt running {self.participant} ({self.runtime}, pid {self.pid}{where})"


@dataclass(frozen=True, slots=True)
class KillStray(ActionBase):
    """Close a pane the controller started that no agent record owns, stopping its process.

    Only panes whose start command is the controller's launcher qualify: windows and panes
    people open (``controller attach``, then ``Ctrl-b c``) are never touched.
    """

    window_id: str = ""
    pane_id: str = ""
    pid: int | None = None
    created: float | None = None  # the observed create time: a reused PID is never signalled

    kind: ClassVar[str] = "kill-stray"
    change: ClassVar[Change] = Change.DESTROY
    backs_off: ClassVar[bool] = False

    @property
    def key(self) -> str:
        """Stable identity: the pane."""
        return f"{self.kind}:{self.lane}:{self.pane_id}"

    def describe(self) -> str:
        """One line for humans."""
        return f"close pane {self.pane_id} in window {self.window_id} (pid {self.pid or '-'})"


@dataclass(frozen=True, slots=True)
class KillStrayProcess(ActionBase):
    """Stop a process-runtime agent no record owns (its start was not recorded: a crash)."""

    pid: int = 0
    created: float = 0.0

    kind: ClassVar[str] = "kill-stray-process"
    change: ClassVar[Change] = Change.DESTROY
    backs_off: ClassVar[bool] = False

    @property
    def key(self) -> str:
        """Stable identity: the process."""
        return f"{self.kind}:{self.pid}"

    def describe(self) -> str:
        """One line for humans."""
        return f"stop unrecorded agent process {self.pid}"


Action: TypeAlias = (
    ProvisionLane
    | AdoptWorktree
    | RemoveLane
    | PruneRecord
    | RepairWorktree
    | DiscardInterrupted
    | QuarantineDir
    | ForgetLane
    | StartAgent
    | StopAgent
    | RemoveAgent
    | RecordExit
    | AdoptAgent
    | KillStray
    | KillStrayProcess
)

REMOVALS: tuple[type[ActionBase], ...] = (RemoveLane, ForgetLane)
"""Actions counted against ``maxDeletionsPerPass`` and the empty-desired guard."""
