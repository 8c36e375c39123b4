"""Snapshots of the observed world, as plain frozen values.

Observers build these; the planner reads them. A source that could not be read is ``Unknown``
(with the reason), never an empty tuple: nothing is created or removed on the strength of an
unknown observation.
"""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class Observed:
    """Everything one pass saw, read once per source."""

    repo: str
    root: str
    worktrees: tuple[GitWorktree, ...] | Unknown
    root_entries: tuple[RootEntry, ...] | Unknown
    branches: Mapping[str, str] | Unknown  # short branch name -> commit
    records: Mapping[str, LaneRecord] = field(default_factory=dict)

    def worktree_at(self, path: str) -> GitWorktree | None:
        """The git worktree registered at ``path``, if git reports one (and can be read)."""
        if isinstance(self.worktrees, Unknown):
            return None
        return next((w for w in self.worktrees if w.path == path), None)
