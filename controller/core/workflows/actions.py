"""The actions of the runs step: what a pass does to runs and tasks, shown by `controller plan`.

Each is a frozen record like the lane actions (``lane`` is the task's lane, or the run's name for
run-wide actions), rendered the same way, Terraform style. The processes themselves are started
and stopped by the lanes step, from the run's expansion (``expansion.py``). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from controller.core.actions import ActionBase, Change
from controller.core.workflows.model import RunPhase, RunReason, TaskPhase, TaskReason


def money(usd: float) -> str:
    """Dollars as people read them: ``$0.12``, ``$19.40``; tiny amounts keep their digits."""
    if 0 < abs(usd) < 0.01:
        return f"${usd:.4f}"
    return f"${usd:,.2f}"


@dataclass(frozen=True, slots=True)
class RunAction(ActionBase):
    """Fields every run action has."""

    run: str = ""
    task: str = ""

    backs_off: ClassVar[bool] = False

    @property
    def key(self) -> str:
        """Stable identity: kind, run and task."""
        return f"{self.kind}:{self.run}:{self.task}"


@dataclass(frozen=True, slots=True)
class CreateRun(RunAction):
    """Create a run declared by a WorkflowRun document (once per name)."""

    workflow: str = ""
    tasks: int = 0

    kind: ClassVar[str] = "create-run"
    change: ClassVar[Change] = Change.ADD

    def describe(self) -> str:
        """One line for humans."""
        return f"create run {self.run} of workflow {self.workflow} ({self.tasks} task(s))"


@dataclass(frozen=True, slots=True)
class DispatchTask(RunAction):
    """Reserve a task's estimated cost and start its attempt (its lane and agent follow)."""

    attempt: int = 1
    model: str = ""
    estimate_usd: float = 0.0
    estimate_tokens: int = 0
    remaining_usd: float | None = None
    needs: tuple[str, ...] = ()  # dependencies whose final commits are merged into its base
    branch: str = ""
    branch_exists: bool = False  # its branch was seen already (a first attempt must not reuse it)
    base: str | None = None  # for a task without dependencies: the revision it starts from
    prompt: str = field(default="", repr=False)
    prompt_tokens: int = 0
    notes: tuple[str, ...] = ()  # what compaction did
    host: str | None = None  # with `hosts`: where it runs (this host: another's is not planned)
    group: tuple[str, ...] = ()  # the tasks that share its host (its connected part of the DAG)

    kind: ClassVar[str] = "dispatch"
    change: ClassVar[Change] = Change.ADD

    def describe(self) -> str:
        """One line for humans: model, estimate and what is left of the budget."""
        left = "" if self.remaining_usd is None else f", {money(self.remaining_usd)} left"
        again = f" (attempt {self.attempt})" if self.attempt > 1 else ""
        on = f" on host {self.host}" if self.host else ""
        return (
            f"dispatch {self.task} of run {self.run}{again}{on}: {self.model}, "
            f"est. {money(self.estimate_usd)}{left}"
        )

    def to_json(self) -> Mapping[str, Any]:
        """JSON without the prompt's text (its size is there)."""
        data = dict(ActionBase.to_json(self))
        data.pop("prompt", None)
        data.pop("group", None)
        if self.host is None:
            data.pop("host", None)
        return data


@dataclass(frozen=True, slots=True)
class FailTask(RunAction):
    """A task fails before it runs (its prompt cannot fit its model's window)."""

    reason_code: TaskReason = TaskReason.NONE
    detail: str = ""

    kind: ClassVar[str] = "fail-task"

    def describe(self) -> str:
        """One line for humans."""
        return f"fail {self.task} of run {self.run}: {self.reason_code} ({self.detail})"


@dataclass(frozen=True, slots=True)
class CompleteTask(RunAction):
    """A task's process exited: commit what it left, record its outcome, settle its budget."""

    attempt: int = 1
    phase: TaskPhase = TaskPhase.SUCCEEDED
    reason_code: TaskReason = TaskReason.NONE
    exit_code: int | None = None

    kind: ClassVar[str] = "complete-task"

    def describe(self) -> str:
        """One line for humans."""
        status = "no exit status" if self.exit_code is None else f"exit {self.exit_code}"
        why = f" ({self.reason_code})" if self.reason_code else ""
        return f"{self.task} of run {self.run} ended ({status}): {self.phase}{why}"


@dataclass(frozen=True, slots=True)
class StopTask(RunAction):
    """End a running task now (timeout, fail fast, budget, deadline, abort); the lanes step
    stops its process (TERM, then KILL)."""

    attempt: int = 1
    phase: TaskPhase = TaskPhase.ABORTED
    reason_code: TaskReason = TaskReason.NONE

    kind: ClassVar[str] = "stop-task"

    def describe(self) -> str:
        """One line for humans."""
        return f"stop {self.task} of run {self.run}: {self.phase} ({self.reason_code})"


@dataclass(frozen=True, slots=True)
class RetryTask(RunAction):
    """Put a failed task back to pending for another attempt, not before ``due_at``."""

    attempt: int = 2
    due_at: datetime | None = None

    kind: ClassVar[str] = "retry-task"

    def describe(self) -> str:
        """One line for humans."""
        when = self.due_at.isoformat(timespec="seconds") if self.due_at else "now"
        return f"retry {self.task} of run {self.run} as attempt {self.attempt} at {when}"


@dataclass(frozen=True, slots=True)
class SkipTask(RunAction):
    """A task that will not run: a dependency failed, or the run ended."""

    reason_code: TaskReason = TaskReason.UPSTREAM_FAILED

    kind: ClassVar[str] = "skip-task"

    def describe(self) -> str:
        """One line for humans."""
        return f"skip {self.task} of run {self.run} ({self.reason_code})"


@dataclass(frozen=True, slots=True)
class FinalizeTask(RunAction):
    """Commit what an ended task left uncommitted, once its process is gone."""

    kind: ClassVar[str] = "finalize-task"

    def describe(self) -> str:
        """One line for humans."""
        return f"commit what {self.task} of run {self.run} left in its worktree"


@dataclass(frozen=True, slots=True)
class FinishRun(RunAction):
    """The run ends."""

    phase: RunPhase = RunPhase.SUCCEEDED
    reason_code: RunReason = RunReason.NONE
    message: str = ""

    kind: ClassVar[str] = "finish-run"

    def describe(self) -> str:
        """One line for humans."""
        why = f" ({self.reason_code})" if self.reason_code else ""
        return f"run {self.run} {self.phase}{why}: {self.message}"


RUN_ACTIONS: tuple[type[RunAction], ...] = (
    CreateRun,
    DispatchTask,
    FailTask,
    CompleteTask,
    StopTask,
    RetryTask,
    SkipTask,
    FinalizeTask,
    FinishRun,
)
