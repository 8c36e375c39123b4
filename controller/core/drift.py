"""Drift: lane conditions that mean "this will not converge by waiting; a person must act".

`--once` and `plan --detailed-exitcode` exit 2 on drift, and their JSON lists it, so that CI
never reads 0 as converged while a lane is stuck. Conditions that wait on declared policy (a
restart backoff, `maxDeletionsPerPass`, `restart: never`, `suspend`) are not drift. Pure: no
I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.core import world


class Blocker(enum.StrEnum):
    """Condition types that need a person (or a failure that keeps recurring) to clear."""

    BRANCH_IN_USE = "BranchInUse"  # the branch is checked out in another worktree
    BRANCH_MISMATCH = "BranchMismatch"  # the worktree is on another branch than declared
    PATH_OCCUPIED = "PathOccupied"  # something the controller did not create is in the way
    CLEANUP_REFUSED = "CleanupRefused"  # onDirtyCleanup: refuse and uncommitted changes
    CLEANUP_BLOCKED = "CleanupBlocked"  # the worktree is locked
    BACKING_OFF = "BackingOff"  # an action failed and waits for its retry
    STALLED = "Stalled"  # an action failed three times or more
    CRASH_LOOP = "CrashLoop"  # an agent is blocked until `controller unblock`


BLOCKERS = frozenset(Blocker)


@dataclass(frozen=True, slots=True, order=True)
class Drift:
    """One lane condition that keeps the workspace from converging."""

    lane: str
    type: str
    reason: str
    message: str

    def to_json(self) -> dict[str, str]:
        """The entry of ``drift`` in ``plan`` and ``--once`` JSON."""
        return {
            "lane": self.lane,
            "type": self.type,
            "reason": self.reason,
            "message": self.message,
        }


def find_drift(*sources: Mapping[str, Iterable[world.Condition]]) -> tuple[Drift, ...]:
    """The blocking conditions among every lane's conditions, from any number of sources.

    A plan's conditions and the inventory's (a refused cleanup is recorded on the lane) are
    both sources; a condition found in two of them is listed once. Sorted by lane, then type.
    """
    found = {
        Drift(lane, c.type, c.reason, c.message)
        for conditions in sources
        for lane, cs in conditions.items()
        for c in cs
        if c.type in BLOCKERS
    }
    return tuple(sorted(found))
