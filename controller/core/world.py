"""Snapshots of the observed world, as plain frozen values.

Observers build these; the planner reads them. A source that could not be read is ``Unknown``
(with the reason), never an empty tuple: nothing is created or removed on the strength of an
unknown observation.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from controller.core.phases import Phase


@dataclass(frozen=True, slots=True)
class Unknown:
    """A source that could not be read this pass, and why."""

    reason: str


@dataclass(frozen=True, slots=True)
class GitWorktree:
    """One record of ``git worktree list --porcelain``."""

    path: str
    head: str | None = None
    branch: str | None = None  # short name (``lane/x``); None when detached or bare
    bare: bool = False
    detached: bool = False
    locked: str | None = None  # the lock reason ("" when locked without one); None if unlocked
    prunable: str | None = None  # why git considers it prunable (its directory is gone)


@dataclass(frozen=True, slots=True)
class RootEntry:
    """One entry directly under the worktree root."""

    name: str
    is_dir: bool
    is_symlink: bool
    # A worktree whose admin record (``.git/worktrees/<id>/gitdir``) names another path: that
    # path, as ``git worktree list`` shows it. None for anything else.
    misrecorded: str | None = None


@dataclass(frozen=True, slots=True)
class Condition:
    """A fact about a lane worth showing a user: ``type`` is stable, ``reason`` is CamelCase."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class LaneRecord:
    """The store's inventory entry for a lane the controller created or adopted."""

    name: str
    phase: Phase
    path: str
    branch: str
    on_dirty: Literal["preserve", "refuse"] = "preserve"
    created_branch: bool = False
    adopted: bool = False
    conditions: tuple[Condition, ...] = ()
    updated_at: datetime | None = None
    host: str | None = None  # the host whose disk it is on; None: written by a single host


class AgentState(enum.StrEnum):
    """What the controller last recorded about an agent."""

    STARTING = "starting"  # recorded before its launch: a crash may have come before or after
    RUNNING = "running"  # started; alive when last seen
    EXITED = "exited"  # ended; waiting for its restart (or never restarted, by policy)
    BLOCKED = "blocked"  # crash-looping; not restarted until `controller unblock`
    STOPPED = "stopped"  # stopped on purpose (stale, changed binding, suspended lane)


@dataclass(frozen=True, slots=True)
class Pane:
    """One pane of the controller's tmux server, from one ``list-panes -a``."""

    session_id: str
    window_id: str
    pane_id: str
    pid: int | None
    dead: bool = False
    dead_status: int | None = None
    activity: datetime | None = None  # the window's last activity
    in_mode: bool = False  # copy mode or another mode: typing would not reach the program
    server_pid: int | None = None
    session_name: str = ""
    window_name: str = ""
    binding: str = ""  # the binding whose launcher the controller started here ("": not ours)


@dataclass(frozen=True, slots=True)
class Proc:
    """A live process: identity is the PID *and* its create time (PIDs are reused)."""

    pid: int
    created: float
    zombie: bool = False
    argv: tuple[str, ...] = ()  # read only for processes that may be adopted
    cwd: str = ""  # its working directory ("" when it could not be read)
    cwd_deleted: bool = False  # that directory was deleted under it (a new one may be there)

    def stranded_in(self, path: str) -> bool:
        """Whether it still works in ``path`` as it was before it was deleted."""
        return self.cwd_deleted and self.cwd == path


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """The store's inventory entry for the agent of one binding."""

    binding: str
    lane: str
    participant: str
    runtime: str
    state: AgentState
    spec_hash: str
    pid: int | None = None
    pid_created: float | None = None
    session_id: str | None = None
    window_id: str | None = None
    pane_id: str | None = None
    log_path: str | None = None
    started_at: datetime | None = None
    restarts: int = 0
    consecutive: int = 0  # deaths since the agent last stayed up long enough
    deaths: tuple[datetime, ...] = ()
    last_exit: int | None = None
    next_start_at: datetime | None = None
    blocked: str | None = None
    heartbeat_at: datetime | None = None
    stop_grace: float = 10.0  # the binding's stopGraceSeconds, kept for when it is removed
    # A digest per field the process was started from (lifecycle.spec_fields): a restart for
    # a changed binding names the fields. Empty in records written before revision 0005.
    spec_fields: Mapping[str, str] = field(default_factory=dict)
    host: str | None = None  # the host whose process it is; None: written by a single host


class HostState(enum.StrEnum):
    """A host as its lease says: renewed in time, expired without a goodbye, or released."""

    LIVE = "live"
    LOST = "lost"  # the lease expired: the controller died, or its machine, or the network
    STOPPED = "stopped"  # released on purpose (the daemon stopped, a --once ended)


@dataclass(frozen=True, slots=True)
class Lease:
    """One host's lease row; times are the database's."""

    name: str
    pid: int
    machine: str
    instance: str
    version: str
    started_at: datetime
    renewed_at: datetime
    expires_at: datetime
    released: bool = False
    repo: str = ""  # the holder's clone on its machine

    def state(self, now: datetime) -> HostState:
        """The host's state at the database's ``now``."""
        if self.released:
            return HostState.STOPPED
        return HostState.LIVE if self.expires_at > now else HostState.LOST


@dataclass(frozen=True, slots=True)
class Leases:
    """Every lease of the workspace, read with the database's time ``now``."""

    now: datetime
    items: tuple[Lease, ...] = ()

    def of(self, host: str) -> Lease | None:
        """The lease of ``host`` (names compare case-insensitively), if it ever held one."""
        return next((x for x in self.items if x.name.lower() == host.lower()), None)

    def state(self, host: str) -> HostState | None:
        """The host's state, or None when it never held a lease."""
        lease = self.of(host)
        return None if lease is None else lease.state(self.now)


@dataclass(frozen=True, slots=True)
class Observed:
    """Everything one pass saw, read once per source."""

    repo: str
    root: str
    worktrees: tuple[GitWorktree, ...] | Unknown
    root_entries: tuple[RootEntry, ...] | Unknown
    branches: Mapping[str, str] | Unknown  # short branch name -> commit
    records: Mapping[str, LaneRecord] = field(default_factory=dict)
    panes: tuple[Pane, ...] | Unknown = ()
    processes: Mapping[int, Proc] | Unknown = field(default_factory=dict)
    agents: Mapping[str, AgentRecord] = field(default_factory=dict)
    exits: Mapping[str, int] = field(default_factory=dict)  # process runtime: binding -> status
    launched: Mapping[int, Proc] = field(default_factory=dict)  # live process-runtime launchers
    # process runtime: binding -> the agent its (recorded, live) launcher runs
    supervised: Mapping[str, Proc] = field(default_factory=dict)
    log_activity: Mapping[str, datetime] = field(default_factory=dict)  # binding -> log mtime
    # Processes of panes the controller started that no record owns (a crash before the
    # record was written, or a lost store), with their argv: candidates for adoption.
    unrecorded: Mapping[int, Proc] = field(default_factory=dict)
    # Many hosts: the inventory rows of lanes and agents that are other hosts' (never acted
    # on, only shown), and every host's lease. Empty and None with a single host.
    foreign: Mapping[str, LaneRecord] = field(default_factory=dict)
    foreign_agents: Mapping[str, AgentRecord] = field(default_factory=dict)
    leases: Leases | None = None
    # Indexes of the lists above, built once: the planner looks several things up per lane,
    # and a scan per look-up made planning quadratic in the number of lanes.
    _trees: Mapping[str, GitWorktree] = field(init=False, repr=False, compare=False)
    _holders: Mapping[str, tuple[GitWorktree, ...]] = field(init=False, repr=False, compare=False)
    _entries: Mapping[str, RootEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        trees = () if isinstance(self.worktrees, Unknown) else self.worktrees
        entries = () if isinstance(self.root_entries, Unknown) else self.root_entries
        by_path: dict[str, GitWorktree] = {}
        holders: dict[str, tuple[GitWorktree, ...]] = {}
        for tree in trees:
            by_path.setdefault(tree.path, tree)  # the first, as a scan would find it
            if tree.branch is not None:
                holders[tree.branch] = (*holders.get(tree.branch, ()), tree)
        named: dict[str, RootEntry] = {}
        for entry in entries:
            named.setdefault(entry.name, entry)
        object.__setattr__(self, "_trees", by_path)
        object.__setattr__(self, "_holders", holders)
        object.__setattr__(self, "_entries", named)

    def worktree_at(self, path: str) -> GitWorktree | None:
        """The git worktree registered at ``path``, if git reports one (and can be read)."""
        return self._trees.get(path)

    def branch_holder(self, branch: str, *, other_than: str) -> GitWorktree | None:
        """The first worktree git lists with ``branch`` checked out, other than at a path."""
        return next((t for t in self._holders.get(branch, ()) if t.path != other_than), None)

    def root_entry(self, name: str) -> RootEntry | None:
        """The entry called ``name`` directly under the worktree root, if there is one."""
        return self._entries.get(name)


@dataclass(frozen=True, slots=True)
class UnreadCount:
    """What one participant has not read in one thread (its own messages excluded)."""

    participant: str
    thread: str
    count: int
    last_seq: int  # the newest unread message's sequence number
    sender: str  # who wrote it
    woken: int = 0  # the newest sequence number a delivered wake already covered
    last_at: datetime | None = None  # when the newest unread message was posted (committed)
