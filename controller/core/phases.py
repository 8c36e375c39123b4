"""Lane phases as a transition table: the table is the specification.

``transition(current, target)`` returns the target or raises ``InvalidTransition``: an invalid
move is a bug in the controller, never an expected outcome.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from controller import errors


class Phase(enum.StrEnum):
    """Where a lane is in its life, from declared to removed."""

    NEW = "new"
    PROVISIONING = "provisioning"
    READY = "ready"
    RUNNING = "running"
    BLOCKED = "blocked"
    SHARED = "shared"
    CLEANING = "cleaning"
    CLOSED = "closed"


_P = Phase

ALLOWED: Mapping[Phase, frozenset[Phase]] = {
    # Declared, nothing on disk yet.
    _P.NEW: frozenset({_P.PROVISIONING, _P.CLEANING, _P.CLOSED}),
    # A worktree is being added; it may fail back to NEW or be abandoned for cleanup.
    _P.PROVISIONING: frozenset({_P.READY, _P.NEW, _P.BLOCKED, _P.CLEANING}),
    # The worktree exists; agents start (running/shared) or the lane goes away.
    _P.READY: frozenset({_P.RUNNING, _P.SHARED, _P.BLOCKED, _P.CLEANING, _P.PROVISIONING}),
    _P.RUNNING: frozenset({_P.READY, _P.SHARED, _P.BLOCKED, _P.CLEANING, _P.PROVISIONING}),
    _P.SHARED: frozenset({_P.READY, _P.RUNNING, _P.BLOCKED, _P.CLEANING, _P.PROVISIONING}),
    # Blocked: a refused cleanup or a crash loop; lifted by the user or by desired state.
    _P.BLOCKED: frozenset({_P.READY, _P.RUNNING, _P.SHARED, _P.CLEANING, _P.PROVISIONING, _P.NEW}),
    # Cleaning can be refused (blocked), finish (closed), or be undone by re-declaring the lane.
    _P.CLEANING: frozenset({_P.CLOSED, _P.BLOCKED, _P.READY, _P.PROVISIONING}),
    # A closed lane declared again starts over.
    _P.CLOSED: frozenset({_P.NEW}),
}

ACTIVE: frozenset[Phase] = frozenset({_P.READY, _P.RUNNING, _P.SHARED})
"""Phases in which the lane's worktree exists and is usable."""


def can_transition(current: Phase, target: Phase) -> bool:
    """Whether the table allows moving from ``current`` to ``target`` (staying put is allowed)."""
    return current == target or target in ALLOWED[current]


def transition(current: Phase, target: Phase) -> Phase:
    """Return ``target`` if the move is allowed, else raise ``InvalidTransition``.

    Staying in the same phase is always allowed, so that re-applying an action is idempotent.
    """
    if not can_transition(current, target):
        raise errors.InvalidTransition(f"lane phase {current} cannot move to {target}")
    return target
