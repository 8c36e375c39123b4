"""The run and task transition tables are the specification: every pair is checked."""

from __future__ import annotations

import itertools

import pytest

from controller import errors
from controller.core.workflows import phases
from controller.core.workflows.model import RunPhase as R
from controller.core.workflows.model import TaskPhase as T

EXPECTED_RUN = {
    R.RUNNING: {R.SUCCEEDED, R.FAILED, R.ABORTED},
    R.SUCCEEDED: set(),
    R.FAILED: {R.RUNNING},
    R.ABORTED: {R.RUNNING},
}

EXPECTED_TASK = {
    T.PENDING: {T.RUNNING, T.SKIPPED, T.ABORTED, T.BLOCKED, T.FAILED},
    T.RUNNING: {T.SUCCEEDED, T.FAILED, T.ABORTED},
    T.SUCCEEDED: set(),
    T.FAILED: {T.PENDING},
    T.ABORTED: {T.PENDING},
    T.SKIPPED: {T.PENDING},
    T.BLOCKED: {T.PENDING, T.SKIPPED, T.ABORTED},
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(R, R)))
def test_every_pair_of_run_phases(current: R, target: R) -> None:
    allowed = current == target or target in EXPECTED_RUN[current]
    assert phases.can_transition_run(current, target) is allowed
    if allowed:
        assert phases.transition_run(current, target) is target
    else:
        with pytest.raises(errors.InvalidTransition, match=f"run phase {current} cannot move"):
            phases.transition_run(current, target)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(T, T)))
def test_every_pair_of_task_phases(current: T, target: T) -> None:
    allowed = current == target or target in EXPECTED_TASK[current]
    assert phases.can_transition_task(current, target) is allowed
    if allowed:
        assert phases.transition_task(current, target) is target
    else:
        with pytest.raises(errors.InvalidTransition, match=f"task phase {current} cannot move"):
            phases.transition_task(current, target)


def test_tables_cover_every_phase() -> None:
    assert set(phases.RUN_ALLOWED) == set(R)
    assert set(phases.TASK_ALLOWED) == set(T)


def test_a_retry_records_the_failure_first() -> None:
    assert T.PENDING not in phases.TASK_ALLOWED[T.RUNNING]
    assert T.PENDING in phases.TASK_ALLOWED[T.FAILED]


def test_success_is_final_for_runs_and_tasks() -> None:
    assert not phases.RUN_ALLOWED[R.SUCCEEDED]
    assert not phases.TASK_ALLOWED[T.SUCCEEDED]
