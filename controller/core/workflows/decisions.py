"""What the run scheduler decides: one frozen value per decision kind, and the plan of a pass.

Each decision names its task, a reason code and a human ``message``; ``applied`` says how it
moves the task's record. Pure values: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from controller.core.workflows import phases
from controller.core.workflows.model import (
    RunPhase,
    RunReason,
    TaskPhase,
    TaskReason,
    TaskRecord,
    TaskReport,
)


@dataclass(frozen=True, slots=True)
class Complete:
    """A running task's process exited: record how."""

    task: str
    phase: TaskPhase  # succeeded or failed
    reason: TaskReason  # exit_status, agent_error, lost, or none
    exit_code: int | None
    report: TaskReport | None
    message: str


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop a running task's process now and record it failed (timeout) or aborted."""

    task: str
    phase: TaskPhase
    reason: TaskReason
    message: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Put a failed task back to pending as its next attempt, not to start before ``due_at``."""

    task: str
    reason: TaskReason  # why the previous attempt failed
    attempt: int
    due_at: datetime
    message: str


@dataclass(frozen=True, slots=True)
class Skip:
    """Skip a pending or blocked task: an upstream task failed, or the run ended."""

    task: str
    reason: TaskReason
    message: str


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Start a task's attempt, reserving ``estimate_usd`` and ``estimate_tokens`` first."""

    task: str
    attempt: int
    estimate_usd: float
    estimate_tokens: int
    remaining_usd: float | None  # USD left before this reservation (None: no cost limit)
    message: str
    reason: TaskReason = TaskReason.NONE


@dataclass(frozen=True, slots=True)
class Finish:
    """The run ends."""

    phase: RunPhase
    reason: RunReason
    message: str


@dataclass(frozen=True, slots=True)
class StuckTask:
    """A pending task that can never start, and the dependencies it waits for in vain."""

    task: str
    unmet: tuple[str, ...]


Decision: TypeAlias = Complete | Stop | Retry | Skip | Dispatch


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What one pass does with one run."""

    decisions: tuple[Decision, ...] = ()
    finish: Finish | None = None
    next_due: datetime | None = None
    stuck: tuple[StuckTask, ...] = ()


def applied(record: TaskRecord, decision: Decision, now: datetime) -> TaskRecord:
    """``record`` as it is once ``decision`` is applied; the phase move is validated.

    The scheduler plans each rule on the records as the earlier decisions left them; the store
    records the same fields (a dispatch starts the attempt's clock and holds its reservation).
    """
    if isinstance(decision, Retry):
        target = TaskPhase.PENDING
    elif isinstance(decision, Skip):
        target = TaskPhase.SKIPPED
    elif isinstance(decision, Dispatch):
        target = TaskPhase.RUNNING
    else:
        target = decision.phase
    moved = record.moved(phase=phases.transition_task(record.phase, target))
    if isinstance(decision, Retry):
        return moved.moved(attempt=decision.attempt, due_at=decision.due_at)
    if isinstance(decision, Dispatch):
        return moved.moved(
            reason=TaskReason.NONE,
            attempt=decision.attempt,
            due_at=None,
            started_at=now,
            finished_at=None,
            reserved_usd=decision.estimate_usd,
            reserved_tokens=decision.estimate_tokens,
        )
    if isinstance(decision, Complete):
        return moved.moved(reason=decision.reason, exit_code=decision.exit_code, finished_at=now)
    return moved.moved(reason=decision.reason, finished_at=now)
