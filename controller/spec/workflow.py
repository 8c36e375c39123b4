"""The Workflow kind: a DAG of agent tasks with a parallelism limit, a deadline and a budget.

Task names are unique here; unknown dependencies, cycles and unknown models are cross-reference
problems found by `references`. Placeholders in a task's command are checked here, so a typo in
`{promptFile}` is a validation problem, not a task that fails later. Pure: no I/O, never
schedules anything.
"""

from __future__ import annotations

import string
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from controller.spec import meta
from controller.spec.binding import check_env
from controller.spec.lane import check_base
from controller.spec.workspace import check_hostname

PLACEHOLDERS = ("prompt", "promptFile", "sessionId", "taskBudgetUsd")
"""What a task's command may contain in braces; `{{` and `}}` are literal braces."""
USAGE_FORMATS = (
    "auto",
    "claude-json",
    "claude-stream",
    "codex-jsonl",
    "gemini-json",
    "opencode-jsonl",
    "manual",
)
RESERVED_TASK_ENV = frozenset({"CONTROLLER_RUN", "CONTROLLER_TASK"})


def _check_outputs(outputs: tuple[str, ...]) -> tuple[str, ...]:
    for output in outputs:
        meta.check_relative_path(output, what="output")
    return meta.check_unique(outputs, what="output")


def placeholders(argv: tuple[str, ...]) -> tuple[str, ...]:
    """The placeholder names used in ``argv``, in order; raises `ValueError` on bad braces."""
    found: list[str] = []
    for index, item in enumerate(argv):
        try:
            parsed = list(string.Formatter().parse(item))
        except ValueError as error:
            raise ValueError(
                f"command item {index} ({item!r}): {error}; write {{{{ and }}}} for literal braces"
            ) from None
        found.extend(name for _, name, _, _ in parsed if name is not None)
    return tuple(found)


def _check_command(argv: tuple[str, ...]) -> tuple[str, ...]:
    for name in placeholders(argv):
        if name not in PLACEHOLDERS:
            allowed = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {{{name}}} in command; allowed: {allowed}")
    return argv


class Retries(meta.SpecModel):
    """How often a failed task is started again, and how long to wait first."""

    limit: int = Field(default=0, ge=0, le=100)
    """Retries after the first attempt; 0: a failure is final."""
    backoff: meta.Duration = 30.0
    """Wait before the first retry; doubles for each later one (at most 1 h)."""


class Budget(meta.SpecModel):
    """Limits on a whole run; exceeding one ends the run."""

    max_tokens: int | None = Field(default=None, gt=0)
    """Input plus output tokens across all tasks."""
    max_cost_usd: float | None = Field(default=None, gt=0)
    """Cost in USD across all tasks: what agents report, else the ModelCatalog's prices."""


class Task(meta.SpecModel):
    """One agent task; it runs in its own lane."""

    name: meta.Name
    """Unique within the workflow."""
    model: str = Field(min_length=1)
    """A model (or an alias) declared by a ModelCatalog."""
    command: Annotated[meta.Argv, AfterValidator(_check_command)]
    """Program and arguments; `{prompt}`, `{promptFile}`, `{sessionId}` and `{taskBudgetUsd}`
    are filled in."""
    prompt: str = ""
    """The task's prompt; final messages and outputs of its dependencies are appended."""
    depends_on: meta.UniqueNames = ()
    """Tasks that must succeed first."""
    outputs: Annotated[tuple[str, ...], AfterValidator(_check_outputs)] = ()
    """Files the task writes, relative to its worktree, routed to dependents."""
    priority: int = 0
    """Among ready tasks, higher starts first."""
    usage: Literal[
        "auto",
        "claude-json",
        "claude-stream",
        "codex-jsonl",
        "gemini-json",
        "opencode-jsonl",
        "manual",
    ] = "auto"
    """How the task's stdout reports tokens and cost; `manual`: `controller usage add`."""
    timeout: meta.PositiveDuration | None = None
    """The task fails (timeout) and is stopped after running this long. Default: no limit."""
    retries: Retries = Retries()
    """Retries after a failure."""
    base: Annotated[str, AfterValidator(check_base)] | None = None
    """Revision a task without dependencies branches from; default the repository's HEAD."""
    runtime: Literal["process", "tmux"] = "process"
    """`process`: detached, stdout and stderr to files; `tmux`: a window you can attach to."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment. Values are redacted in logs and events."""

    @field_validator("env")
    @classmethod
    def _check_env(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if key in RESERVED_TASK_ENV:
                raise ValueError(f"env name {key!r} is reserved: the controller sets it")
        return check_env(env)

    @model_validator(mode="after")
    def _prompt_reaches_the_agent(self) -> Task:
        used = set(placeholders(self.command))
        if self.prompt and not used & {"prompt", "promptFile"}:
            raise ValueError(
                f"task {self.name!r} has a prompt but its command has no {{prompt}} or "
                "{promptFile} to pass it"
            )
        if self.runtime == "tmux" and self.usage != "manual":
            raise ValueError(
                f"task {self.name!r} runs in tmux, where its output goes to a terminal and "
                "cannot be parsed for usage: set usage: manual (the task reports with "
                "`controller usage add`), or use runtime: process"
            )
        if self.base is not None and self.depends_on:
            raise ValueError(
                f"task {self.name!r} sets base and dependsOn: a dependent branches from the "
                "merge of its dependencies' final commits"
            )
        return self


class WorkflowSpec(meta.SpecModel):
    """Tasks, parallelism, failure policy, deadline and budget of a workflow."""

    max_parallel: int = Field(default=1, ge=1, le=64)
    """Tasks running at once."""
    fail_fast: bool = True
    """True: the first failed task fails the run; false: independent branches finish."""
    active_deadline: meta.PositiveDuration | None = None
    """Past this long after it started, the run fails (deadline_exceeded)."""
    budget: Budget | None = None
    """Run limits; none when unset."""
    tasks: tuple[Task, ...] = Field(min_length=1)
    """The tasks; at least one."""
    hosts: tuple[Annotated[str, AfterValidator(check_hostname)], ...] = ()
    """With `Workspace.hosts`: the hosts that may run this workflow's tasks (each task goes to a
    live one). Default: every declared host."""

    @field_validator("tasks")
    @classmethod
    def _unique(cls, tasks: tuple[Task, ...]) -> tuple[Task, ...]:
        meta.check_unique(tuple(task.name for task in tasks), what="task")
        return tasks

    @field_validator("hosts")
    @classmethod
    def _unique_hosts(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        meta.check_unique(tuple(host.lower() for host in hosts), what="host")
        return hosts

    @model_validator(mode="after")
    def _budget_for_placeholder(self) -> WorkflowSpec:
        for task in self.tasks:
            wants = "taskBudgetUsd" in placeholders(task.command)
            if wants and (self.budget is None or self.budget.max_cost_usd is None):
                raise ValueError(
                    f"task {task.name!r} uses {{taskBudgetUsd}}, which needs "
                    "budget.maxCostUsd on the workflow"
                )
        return self


class Workflow(meta.Document):
    """A DAG of agent tasks with dependencies and a budget."""

    kind: Literal["Workflow"] = "Workflow"
    """Always `Workflow`."""
    spec: WorkflowSpec
    """Tasks, parallelism and budget."""


class WorkflowRunSpec(meta.SpecModel):
    """Which workflow to run."""

    workflow: meta.Name
    """The Workflow this run instantiates; fixed once the run exists."""


class WorkflowRun(meta.Document):
    """A declared run of a Workflow: created once per name, never changed afterwards."""

    kind: Literal["WorkflowRun"] = "WorkflowRun"
    """Always `WorkflowRun`."""
    spec: WorkflowRunSpec
    """The workflow to run."""
