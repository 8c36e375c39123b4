"""The Workspace kind: where worktrees, state and the tmux server live, and which host owns what.

At most one Workspace is declared; without one, every field takes its default. Relative paths
are relative to the repository; resolving them is the shell's job. Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from controller.spec import meta

if TYPE_CHECKING:
    from controller.spec.lane import Lane
    from controller.spec.state import DesiredState

DEFAULT_STATE_URL = "sqlite:///.lanes/state.db"
STATE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
_SOCKET_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,251}[A-Za-z0-9])?$")
# A revision git can resolve (a branch, tag, remote-tracking branch, `HEAD`, a commit id,
# `main~1`), but never an option (a leading `-`) nor a `REV:path` (a `:`), and no white space.
_REF_RE = re.compile(r"^[^-\s:\x00-\x1f\x7f][^\s:\x00-\x1f\x7f]{0,254}$")


def check_ref(value: str, *, what: str = "desiredRef") -> str:
    """Return `value` if it can name a git revision (not an option, no `:`), else raise."""
    if not _REF_RE.fullmatch(value):
        raise ValueError(
            f"{what} must be a git revision such as main or origin/main, without white space, "
            f"':' or a leading '-' (got {value!r})"
        )
    return value


def check_hostname(value: str) -> str:
    """A host name as `--host` takes it (letters in either case, digits, `-` and `.`)."""
    if not _HOSTNAME_RE.fullmatch(value):
        raise ValueError(
            f"must be a host name such as build-1 or build-1.example.com (got {value!r})"
        )
    return value


class HostSelector(meta.SpecModel):
    """The lanes one host owns: those it names, plus those whose labels match."""

    name: Annotated[str, AfterValidator(check_hostname)]
    """Host name, compared case-insensitively with the controller's host name."""
    lanes: meta.UniqueNames = ()
    """Lanes this host owns by name."""
    match_labels: meta.Labels = Field(default_factory=dict)
    """Lanes whose labels include all of these; empty selects no lane by label."""

    def selects(self, lane: Lane) -> bool:
        """Whether this selector picks `lane`."""
        if lane.name in self.lanes:
            return True
        labels = lane.metadata.labels
        wanted = self.match_labels.items()
        return bool(wanted) and all(labels.get(key) == value for key, value in wanted)


class WorkspaceSpec(meta.SpecModel):
    """Settings of the one workspace."""

    repo: str | None = None
    """Repository path; default the git top level of the desired folder."""
    worktree_root: str = ".lanes/worktrees"
    """Folder that holds the lanes' worktrees, relative to the repository."""
    state_url: str | None = None
    """Store URL; default `sqlite:///.lanes/state.db` relative to the repository."""
    tmux_socket: str | None = None
    """The `tmux -L` socket name; default derived from the repository path."""
    allow_empty: bool = False
    """Allow a pass to remove every lane (an empty desired state)."""
    max_deletions_per_pass: int | None = Field(default=None, ge=1)
    """At most this many lane removals per pass; the rest wait. Default: no limit."""
    max_parallel_lanes: int = Field(default=8, ge=1, le=64)
    """Lanes reconciled concurrently."""
    resync_seconds: meta.PositiveDuration = 30.0
    """The daemon's periodic full pass, on top of reacting to file changes."""
    hosts: tuple[HostSelector, ...] = ()
    """Multi-host ownership. Empty: this host owns every lane."""
    desired_ref: Annotated[str, AfterValidator(check_ref)] | None = None
    """Read the desired folder as committed at this git revision, not from the working tree."""

    @field_validator("repo")
    @classmethod
    def _check_repo(cls, value: str | None) -> str | None:
        if value is not None and (not value or "\x00" in value):
            raise ValueError("repo must be a non-empty path")
        return value

    @field_validator("worktree_root")
    @classmethod
    def _check_root(cls, value: str) -> str:
        meta.check_relative_path(value, what="worktreeRoot")
        if value.strip("/") in {".", ""}:
            raise ValueError("worktreeRoot must be a folder below the repository, not '.'")
        return value

    @field_validator("state_url")
    @classmethod
    def _check_state_url(cls, value: str | None) -> str | None:
        if value is not None and value.partition("://")[0] not in STATE_SCHEMES:
            raise ValueError(
                f"stateUrl must start with sqlite://, postgresql:// or postgresql+psycopg:// "
                f"(got {value!r})"
            )
        return value

    @field_validator("tmux_socket")
    @classmethod
    def _check_socket(cls, value: str | None) -> str | None:
        if value is not None and not _SOCKET_RE.fullmatch(value):
            raise ValueError(f"tmuxSocket must be 1-64 of A-Z a-z 0-9 _ . - (got {value!r})")
        return value

    @field_validator("hosts")
    @classmethod
    def _unique_hosts(cls, hosts: tuple[HostSelector, ...]) -> tuple[HostSelector, ...]:
        meta.check_unique(tuple(host.name.lower() for host in hosts), what="host")
        return hosts


class Workspace(meta.Document):
    """The workspace: repository, worktree root, store, tmux server and host ownership."""

    kind: Literal["Workspace"] = "Workspace"
    """Always `Workspace`."""
    spec: WorkspaceSpec = WorkspaceSpec()
    """The workspace's settings; every field has a default."""


def owners(workspace: Workspace, lane: Lane) -> tuple[str, ...]:
    """Names of the hosts whose selectors pick `lane`, in declaration order."""
    return tuple(host.name for host in workspace.spec.hosts if host.selects(lane))


def owned_lane_names(desired: DesiredState, hostname: str) -> frozenset[str]:
    """Lanes this host reconciles: all of them without `hosts`, else those its selector picks."""
    hosts = desired.workspace.spec.hosts
    if not hosts:
        return frozenset(desired.lanes)
    mine = [host for host in hosts if host.name.lower() == hostname.lower()]
    return frozenset(
        name for name, lane in desired.lanes.items() if any(host.selects(lane) for host in mine)
    )
