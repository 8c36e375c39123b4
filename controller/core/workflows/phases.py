"""Run and task phases as transition tables: the tables are the specification.

``transition_run`` and ``transition_task`` return the target or raise ``InvalidTransition``:
an invalid move is a bug in the controller, never an expected outcome. Staying put is always
allowed so that re-applying a decision is idempotent. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller import errors
from controller.core.workflows.model import RunPhase, TaskPhase

_R = RunPhase
_T = TaskPhase

RUN_ALLOWED: Mapping[RunPhase, frozenset[RunPhase]] = {
    # A run ends exactly one of three ways.
    _R.RUNNING: frozenset({_R.SUCCEEDED, _R.FAILED, _R.ABORTED}),
    # Success is final: there is nothing left to retry.
    _R.SUCCEEDED: frozenset(),
    # `controller runs retry` puts failed, aborted and skipped tasks back and the run resumes.
    _R.FAILED: frozenset({_R.RUNNING}),
    _R.ABORTED: frozenset({_R.RUNNING}),
}

TASK_ALLOWED: Mapping[TaskPhase, frozenset[TaskPhase]] = {
    # Dispatched; skipped (upstream failed, or the run ended); aborted; blocked when the merge
    # of its dependencies' commits conflicts while its dispatch is applied; failed when its
    # composed prompt cannot fit its model's window (context_overflow), before it ever runs.
    _T.PENDING: frozenset({_T.RUNNING, _T.SKIPPED, _T.ABORTED, _T.BLOCKED, _T.FAILED}),
    # Its process exits or is stopped. Never straight back to pending: a retry records the
    # failed attempt first (running -> failed -> pending).
    _T.RUNNING: frozenset({_T.SUCCEEDED, _T.FAILED, _T.ABORTED}),
    # Its commit is what dependents branch from: final.
    _T.SUCCEEDED: frozenset(),
    # An automatic retry, or `runs retry`.
    _T.FAILED: frozenset({_T.PENDING}),
    # `runs retry`.
    _T.ABORTED: frozenset({_T.PENDING}),
    _T.SKIPPED: frozenset({_T.PENDING}),
    # `runs resolve` unblocks it; the run ending skips or aborts it.
    _T.BLOCKED: frozenset({_T.PENDING, _T.SKIPPED, _T.ABORTED}),
}


def can_transition_run(current: RunPhase, target: RunPhase) -> bool:
    """Whether the run table allows ``current`` -> ``target`` (staying put is allowed)."""
    return current == target or target in RUN_ALLOWED[current]


def can_transition_task(current: TaskPhase, target: TaskPhase) -> bool:
    """Whether the task table allows ``current`` -> ``target`` (staying put is allowed)."""
    return current == target or target in TASK_ALLOWED[current]


def transition_run(current: RunPhase, target: RunPhase) -> RunPhase:
    """Return ``target`` if the run may move there, else raise ``InvalidTransition``."""
    if not can_transition_run(current, target):
        raise errors.InvalidTransition(f"run phase {current} cannot move to {target}")
    return target


def transition_task(current: TaskPhase, target: TaskPhase) -> TaskPhase:
    """Return ``target`` if the task may move there, else raise ``InvalidTransition``."""
    if not can_transition_task(current, target):
        raise errors.InvalidTransition(f"task phase {current} cannot move to {target}")
    return target
