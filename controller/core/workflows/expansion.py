"""Runs become lanes and bindings, as a Kubernetes Job makes Pods.

Each task with a lane (dispatched at least once, its run not cleaned) becomes a `Lane` on branch
``runs/<run>/<task>``; each *running* task also becomes a `Binding` that runs its command there,
never restarted (an exit is the task's end, not a crash). The ordinary planner then provisions
the worktrees, keeps them in the inventory, starts and stops the processes (TERM, then KILL)
and removes the lanes with the no-loss rules, exactly as for declared lanes. Pure.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from controller.spec.binding import Binding, BindingSpec
from controller.spec.lane import Lane, LaneSpec
from controller.spec.meta import Metadata
from controller.spec.state import DesiredState, Location

RUN_LABEL = "lanes.dev/run"
TASK_LABEL = "lanes.dev/task"


@dataclass(frozen=True, slots=True)
class TaskLane:
    """One task's lane, and its agent when the task is running."""

    run: str
    task: str
    lane: str
    branch: str
    base: str | None  # the commit (or revision) its branch starts from; None: HEAD
    argv: tuple[str, ...] | None = None  # the resolved command while the task runs
    env: tuple[tuple[str, str], ...] = ()
    runtime: Literal["process", "tmux"] = "process"


def resolve(argv: Sequence[str], values: Mapping[str, str]) -> tuple[str, ...]:
    """Fill ``{prompt}``-style placeholders (validated when the Workflow was loaded).

    Only bare names are substituted, as plain text: no attribute access, no format specs.
    """
    resolved: list[str] = []
    for item in argv:
        parts: list[str] = []
        for text, name, _spec, _conversion in string.Formatter().parse(item):
            parts.append(text)
            if name is not None:
                parts.append(values[name])
        resolved.append("".join(parts))
    return tuple(resolved)


def is_run_lane(lane: Lane) -> bool:
    """Whether a lane is a run task's lane (made here, never declared by a user)."""
    return RUN_LABEL in lane.metadata.labels


def is_task(binding: Binding) -> bool:
    """Whether a binding is a run task's agent (made here, never declared by a user)."""
    return RUN_LABEL in binding.metadata.labels


def expand(
    desired: DesiredState, tasks: Sequence[TaskLane]
) -> tuple[DesiredState, tuple[str, ...]]:
    """``desired`` plus a lane per task lane and a binding per running task; and clashes.

    A task lane whose name or branch a declared lane already uses is left out, with a problem
    saying so (declared lanes always win; the run's task is then held back by the runtime).
    """
    lanes, bindings = dict(desired.lanes), dict(desired.bindings)
    branches = {lane.branch: name for name, lane in desired.lanes.items()}
    problems: list[str] = []
    for task in tasks:
        clash = _clash(task, desired, branches)
        if clash is not None:
            problems.append(clash)
            continue
        lanes[task.lane] = _lane(task)
        if task.argv is not None:
            bindings[task.lane] = _binding(task)
    locations = {
        **desired.locations,
        **{("Lane", t.lane): Location(f"<run {t.run}>", 0) for t in tasks},
    }
    expanded = replace(
        desired,
        lanes=dict(sorted(lanes.items())),
        bindings=dict(sorted(bindings.items())),
        locations=locations,
    )
    return expanded, tuple(problems)


def _clash(task: TaskLane, desired: DesiredState, branches: Mapping[str, str]) -> str | None:
    if task.lane in desired.lanes:
        return (
            f"run {task.run}: task {task.task} needs lane {task.lane!r}, which desired/ "
            "declares; rename that lane or the run"
        )
    if task.branch in branches:
        return (
            f"run {task.run}: task {task.task} needs branch {task.branch!r}, which lane "
            f"{branches[task.branch]!r} uses"
        )
    return None


def _labels(task: TaskLane) -> dict[str, str]:
    return {RUN_LABEL: task.run, TASK_LABEL: task.task}


def _lane(task: TaskLane) -> Lane:
    return Lane(
        metadata=Metadata(name=task.lane, labels=_labels(task)),
        spec=LaneSpec(branch=task.branch, base=task.base),
    )


def _binding(task: TaskLane) -> Binding:
    assert task.argv is not None
    env = dict(task.env) | {"CONTROLLER_RUN": task.run, "CONTROLLER_TASK": task.task}
    return Binding(
        metadata=Metadata(name=task.lane, labels=_labels(task)),
        spec=BindingSpec(
            lane=task.lane,
            participant=task.lane,
            command=task.argv,
            env=env,
            runtime=task.runtime,
            restart="never",
        ),
    )
