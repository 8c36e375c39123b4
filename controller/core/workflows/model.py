"""The values workflow runs are made of: a run's immutable snapshot, task and run records,
usage, and what a pass observed of each task's process. Frozen, JSON-round-trippable. Pure.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal


class UsageFormat(enum.StrEnum):
    """How a task reports its token usage (DESIGN §7, usage capture)."""

    AUTO = "auto"
    CLAUDE_JSON = "claude-json"
    CLAUDE_STREAM = "claude-stream"
    CODEX_JSONL = "codex-jsonl"
    GEMINI_JSON = "gemini-json"
    OPENCODE_JSONL = "opencode-jsonl"
    MANUAL = "manual"


class RunPhase(enum.StrEnum):
    """Where a run is: running until it ends one of three ways."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"


class RunReason(enum.StrEnum):
    """Why a run ended (empty while it runs and when it succeeded)."""

    NONE = ""
    TASK_FAILED = "task_failed"
    BUDGET_EXCEEDED = "budget_exceeded"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    DEADLOCK = "deadlock"
    USER_ABORT = "user_abort"


class TaskPhase(enum.StrEnum):
    """Where a task is."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    SKIPPED = "skipped"
    BLOCKED = "blocked"


class TaskReason(enum.StrEnum):
    """Why a task is where it is (empty when there is nothing to say)."""

    NONE = ""
    EXIT_STATUS = "exit_status"  # the process exited non-zero
    AGENT_ERROR = "agent_error"  # exit 0, but the agent's JSON reported an error
    TIMEOUT = "timeout"
    CONTEXT_OVERFLOW = "context_overflow"
    LAUNCH_FAILED = "launch_failed"
    UPSTREAM_FAILED = "upstream_failed"
    MERGE_CONFLICT = "merge_conflict"
    FAIL_FAST = "fail_fast"  # stopped because another task failed and the run fails fast
    BUDGET_EXCEEDED = "budget_exceeded"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    USER_ABORT = "user_abort"
    LOST = "lost"  # its process vanished and no exit status was recorded


ENDED_RUN = frozenset({RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.ABORTED})
ENDED_TASK = frozenset(
    {TaskPhase.SUCCEEDED, TaskPhase.FAILED, TaskPhase.ABORTED, TaskPhase.SKIPPED}
)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and cost of one or more agent turns.

    ``input_tokens`` excludes cache reads and writes, which agents report separately; budgets
    count ``tokens`` (input plus output), cost counts all four at the model's prices.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reported_cost_usd: float | None = None  # what the agent itself said it cost, if it did

    @property
    def tokens(self) -> int:
        """Input plus output tokens: what ``budget.maxTokens`` counts."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        reported = (
            None
            if self.reported_cost_usd is None and other.reported_cost_usd is None
            else (self.reported_cost_usd or 0.0) + (other.reported_cost_usd or 0.0)
        )
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reported_cost_usd=reported,
        )

    def to_json(self) -> dict[str, Any]:
        """camelCase, as ``runs show`` prints it."""
        return {
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "cacheReadTokens": self.cache_read_tokens,
            "cacheWriteTokens": self.cache_write_tokens,
            "reportedCostUsd": self.reported_cost_usd,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Usage:
        """The inverse of ``to_json``."""
        reported = data.get("reportedCostUsd")
        return cls(
            input_tokens=int(data.get("inputTokens", 0)),
            output_tokens=int(data.get("outputTokens", 0)),
            cache_read_tokens=int(data.get("cacheReadTokens", 0)),
            cache_write_tokens=int(data.get("cacheWriteTokens", 0)),
            reported_cost_usd=None if reported is None else float(reported),
        )


@dataclass(frozen=True, slots=True)
class TaskReport:
    """What a parser extracted from a task's stdout so far."""

    format: UsageFormat | None = None  # the format recognised (None: nothing recognised)
    usage: Usage = field(default_factory=Usage)
    final_message: str | None = None
    session_id: str | None = None
    is_error: bool = False
    error: str | None = None
    model: str | None = None
    complete: bool = False  # the format's final record was seen


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model's window and prices (USD per million tokens)."""

    name: str
    context_window: int
    max_output_tokens: int
    input_per_mtok: float
    output_per_mtok: float
    aliases: tuple[str, ...] = ()
    cache_read_per_mtok: float | None = None  # None: 0.1 x the input price
    cache_write_per_mtok: float | None = None  # None: 1.25 x the input price


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task of a run, resolved from its Workflow at run creation."""

    name: str
    model: str
    command: tuple[str, ...]
    prompt: str = ""
    depends_on: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    usage: UsageFormat = UsageFormat.AUTO
    timeout: float | None = None
    retry_limit: int = 0
    retry_backoff: float = 30.0
    priority: int = 0
    base: str | None = None
    runtime: Literal["process", "tmux"] = "process"
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """A run's limits; None is unlimited."""

    max_tokens: int | None = None
    max_cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """Everything a run needs from its Workflow and the catalogs, frozen at creation."""

    workflow: str
    template_hash: str
    tasks: tuple[TaskSpec, ...]
    models: Mapping[str, ModelSpec]
    max_parallel: int = 1
    fail_fast: bool = True
    active_deadline: float | None = None
    budget: BudgetSpec = field(default_factory=BudgetSpec)
    hosts: tuple[str, ...] = ()  # the hosts its tasks may run on; empty: any declared host

    def task(self, name: str) -> TaskSpec:
        """The task called ``name`` (a KeyError for an unknown one is a bug)."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (snake_case: this is storage, not output)."""
        data = asdict(self)
        data["models"] = {name: asdict(model) for name, model in self.models.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSnapshot:
        """The inverse of ``to_json``."""
        tasks = tuple(_task(t) for t in data["tasks"])
        models = {
            name: ModelSpec(**{**m, "aliases": tuple(m.get("aliases", ()))})
            for name, m in data["models"].items()
        }
        return cls(
            workflow=data["workflow"],
            template_hash=data["template_hash"],
            tasks=tasks,
            models=models,
            max_parallel=int(data["max_parallel"]),
            fail_fast=bool(data["fail_fast"]),
            active_deadline=data.get("active_deadline"),
            budget=BudgetSpec(**data.get("budget", {})),
            hosts=tuple(data.get("hosts", ())),
        )


def _task(data: Mapping[str, Any]) -> TaskSpec:
    return TaskSpec(
        **{
            **data,
            "command": tuple(data["command"]),
            "depends_on": tuple(data.get("depends_on", ())),
            "outputs": tuple(data.get("outputs", ())),
            "usage": UsageFormat(data.get("usage", "auto")),
            "env": tuple((str(k), str(v)) for k, v in data.get("env", ())),
        }
    )


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """The store's record of one task of one run (across its attempts)."""

    name: str
    phase: TaskPhase = TaskPhase.PENDING
    reason: TaskReason = TaskReason.NONE
    detail: str = ""
    attempt: int = 0  # 0 before the first dispatch; attempts count from 1
    due_at: datetime | None = None  # a pending retry does not start before this
    started_at: datetime | None = None
    finished_at: datetime | None = None
    base_commit: str | None = None
    head_commit: str | None = None
    session_id: str | None = None
    exit_code: int | None = None
    final_message: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0  # charged so far: reported cost when given, else catalog price
    reserved_usd: float = 0.0
    reserved_tokens: int = 0

    def moved(self, **changes: Any) -> TaskRecord:
        """A copy with ``changes`` (for simulations and tests)."""
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """The store's record of one run."""

    name: str
    workflow: str
    snapshot: RunSnapshot
    created_at: datetime
    phase: RunPhase = RunPhase.RUNNING
    reason: RunReason = RunReason.NONE
    message: str = ""
    finished_at: datetime | None = None
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    spent_tokens: int = 0
    reserved_tokens: int = 0
    abort_reason: str | None = None  # set by `controller abort`: the next pass stops the run
    refused: str | None = None  # a dispatch the store refused for budget: the run fails


TaskLife = Literal["running", "exited", "unknown", "absent"]


@dataclass(frozen=True, slots=True)
class TaskObservation:
    """What a pass saw of a running task's process, and what its stdout reported so far."""

    life: TaskLife
    exit_code: int | None = None
    report: TaskReport | None = None
    started_at: datetime | None = None
