"""The Workflow kind: a DAG of agent tasks with a parallelism limit and a budget.

Task names are unique here; unknown dependencies, cycles and unknown models are cross-reference
problems found by `references`. Pure: no I/O, never schedules anything.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from controller.spec import meta


def _check_outputs(outputs: tuple[str, ...]) -> tuple[str, ...]:
    for output in outputs:
        meta.check_relative_path(output, what="output")
    return meta.check_unique(outputs, what="output")


class Budget(meta.SpecModel):
    """Limits on a whole run; exceeding one ends the run."""

    max_tokens: int | None = Field(default=None, gt=0)
    """Input plus output tokens across all tasks."""
    max_cost_usd: float | None = Field(default=None, gt=0)
    """Cost in USD across all tasks, priced by the ModelCatalog."""


class Task(meta.SpecModel):
    """One agent task; it runs in its own lane."""

    name: meta.Name
    """Unique within the workflow."""
    model: str = Field(min_length=1)
    """A model declared by a ModelCatalog."""
    command: meta.Argv
    """Program and arguments; the text `{prompt}` becomes the task's prompt."""
    prompt: str = ""
    """The task's prompt; outputs of its dependencies are appended."""
    depends_on: meta.UniqueNames = ()
    """Tasks that must finish first."""
    outputs: Annotated[tuple[str, ...], AfterValidator(_check_outputs)] = ()
    """Files the task writes, relative to its worktree, routed to dependents."""
    priority: int = 0
    """Among ready tasks, higher starts first."""


class WorkflowSpec(meta.SpecModel):
    """Tasks, parallelism and budget of a workflow."""

    max_parallel: int = Field(default=1, ge=1)
    """Tasks running at once."""
    budget: Budget | None = None
    """Run limits; none when unset."""
    tasks: tuple[Task, ...] = Field(min_length=1)
    """The tasks."""

    @field_validator("tasks")
    @classmethod
    def _unique(cls, tasks: tuple[Task, ...]) -> tuple[Task, ...]:
        meta.check_unique(tuple(task.name for task in tasks), what="task")
        return tasks


class Workflow(meta.Document):
    """A DAG of agent tasks with dependencies and a budget."""

    kind: Literal["Workflow"] = "Workflow"
    """Always `Workflow`."""
    spec: WorkflowSpec
    """Tasks, parallelism and budget."""
