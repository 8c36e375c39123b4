"""Tasks become lanes and bindings the ordinary planner reconciles."""

from __future__ import annotations

import pytest

from controller.core.workflows import expansion
from controller.core.workflows.expansion import TaskLane
from tests.unit.spec.factories import doc, docs, state

DESIRED = state(docs(doc("Lane", "mine"), doc("Lane", "other", "branch: runs/r/b")))


def test_a_running_task_is_a_lane_and_a_never_restarted_binding() -> None:
    task = TaskLane("r", "a", "r--a", "runs/r/a", "abc123", ("agent", "hi"), (("K", "v"),))
    expanded, problems = expansion.expand(DESIRED, [task])
    assert problems == ()
    lane = expanded.lanes["r--a"]
    assert lane.branch == "runs/r/a" and lane.spec.base == "abc123"
    binding = expanded.bindings["r--a"]
    assert binding.spec.restart == "never" and binding.spec.runtime == "process"
    assert binding.spec.command == ("agent", "hi")
    assert binding.spec.env == {"K": "v", "CONTROLLER_RUN": "r", "CONTROLLER_TASK": "a"}
    assert expansion.is_task(binding)
    assert set(expanded.lanes) == {"mine", "other", "r--a"}


def test_a_finished_task_keeps_its_lane_without_an_agent() -> None:
    expanded, _ = expansion.expand(DESIRED, [TaskLane("r", "a", "r--a", "runs/r/a", None)])
    assert "r--a" in expanded.lanes and "r--a" not in expanded.bindings


@pytest.mark.parametrize(
    ("task", "problem"),
    [
        (TaskLane("r", "x", "mine", "runs/r/x", None), "needs lane 'mine', which desired/"),
        (TaskLane("r", "b", "r--b", "runs/r/b", None), "needs branch 'runs/r/b', which lane"),
    ],
)
def test_declared_lanes_win_over_task_lanes(task: TaskLane, problem: str) -> None:
    expanded, problems = expansion.expand(DESIRED, [task])
    assert len(problems) == 1 and problem in problems[0]
    assert expanded.lanes.keys() == DESIRED.lanes.keys()


@pytest.mark.parametrize(
    ("argv", "values", "expected"),
    [
        (("a", "{prompt}"), {"prompt": "do {it}"}, ("a", "do {it}")),
        (("--file={promptFile}", "{{x}}"), {"promptFile": "/p"}, ("--file=/p", "{x}")),
        (
            ("{sessionId}-{taskBudgetUsd}",),
            {"sessionId": "s", "taskBudgetUsd": "1.50"},
            ("s-1.50",),
        ),
    ],
)
def test_placeholders_are_filled_as_plain_text(
    argv: tuple[str, ...], values: dict[str, str], expected: tuple[str, ...]
) -> None:
    assert expansion.resolve(argv, values) == expected
