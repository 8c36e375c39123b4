"""plan_run, rule by rule (table-driven), then properties of whole runs in a tiny simulator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller import errors
from controller.core.workflows import budget, decisions, phases, scheduler
from controller.core.workflows.decisions import (
    Complete,
    Dispatch,
    Retry,
    RunPlan,
    Skip,
    Stop,
    StuckTask,
)
from controller.core.workflows.model import (
    BudgetSpec,
    ModelSpec,
    RunPhase,
    RunReason,
    RunRecord,
    RunSnapshot,
    TaskLife,
    TaskObservation,
    TaskPhase,
    TaskReason,
    TaskRecord,
    TaskReport,
    TaskSpec,
    Usage,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
# 1000 prompt tokens + 1000 output tokens: $0.003 + $0.015 = $0.018 and 2000 tokens a dispatch.
MODEL = ModelSpec("sonnet", 200_000, 1000, 3.0, 15.0, aliases=("claude-sonnet",))
EST_USD = 0.018
PROMPTS = dict.fromkeys("abcdexyz", 1000)
P = TaskPhase


def task(name: str, *deps: str, **fields: Any) -> TaskSpec:
    return TaskSpec(name, fields.pop("model", "sonnet"), ("agent",), depends_on=deps, **fields)


def make_run(*tasks: TaskSpec, **fields: Any) -> RunRecord:
    snapshot = RunSnapshot(
        workflow="w",
        template_hash="h",
        tasks=tasks,
        models={"sonnet": MODEL},
        max_parallel=fields.pop("max_parallel", 1),
        fail_fast=fields.pop("fail_fast", True),
        active_deadline=fields.pop("deadline", None),
        budget=BudgetSpec(fields.pop("max_tokens", None), fields.pop("max_cost", None)),
    )
    created = fields.pop("created_at", NOW - timedelta(minutes=5))
    return RunRecord("r", "w", snapshot, created, **fields)


def rec(name: str, phase: TaskPhase = P.PENDING, **fields: Any) -> TaskRecord:
    if phase is P.RUNNING:
        fields.setdefault("attempt", 1)
        fields.setdefault("started_at", NOW - timedelta(seconds=10))
        fields.setdefault("reserved_usd", EST_USD)
        fields.setdefault("reserved_tokens", 2000)
    return TaskRecord(name, phase, **fields)


def alive(**usage: Any) -> TaskObservation:
    report = TaskReport(usage=Usage(**usage)) if usage else None
    return TaskObservation("running", report=report, started_at=NOW - timedelta(seconds=10))


def exited(code: int | None, *, is_error: bool = False, **usage: Any) -> TaskObservation:
    report = TaskReport(usage=Usage(**usage), is_error=is_error, error="boom" if is_error else None)
    return TaskObservation("exited", exit_code=code, report=report)


def plan(
    run: RunRecord,
    records: Sequence[TaskRecord] = (),
    observed: Mapping[str, TaskObservation] | None = None,
    *,
    now: datetime = NOW,
    prompt_tokens: Mapping[str, int] | None = PROMPTS,
) -> RunPlan:
    tasks = {r.name: r for r in records}
    return scheduler.plan_run(run, tasks, observed or {}, now, prompt_tokens=prompt_tokens)


def summary(result: RunPlan) -> list[str]:
    """One short line per decision, then the finish: what the tables below compare."""
    lines = []
    for d in result.decisions:
        if isinstance(d, Dispatch):
            lines.append(f"dispatch {d.task} #{d.attempt}")
        elif isinstance(d, Retry):
            lines.append(f"retry {d.task} #{d.attempt}")
        elif isinstance(d, Skip):
            lines.append(f"skip {d.task} {d.reason}")
        else:
            lines.append(f"{type(d).__name__.lower()} {d.task} {d.phase}/{d.reason}")
    if result.finish is not None:
        lines.append(f"finish {result.finish.phase}/{result.finish.reason}")
    return lines


LINEAR = (task("a"), task("b", "a"), task("c", "b"))
FAN_IN = (task("a"), task("b"), task("c", "a", "b"))
DIAMOND = (task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c"))
PAIR = (task("a"), task("b"), task("c", "a"))  # c depends on a; b is independent

CASES: list[tuple[str, RunRecord, list[TaskRecord], dict[str, TaskObservation], list[str]]] = [
    ("linear starts at its root", make_run(*LINEAR), [], {}, ["dispatch a #1"]),
    (
        "linear: a success dispatches the next task in the same call",
        make_run(*LINEAR),
        [rec("a", P.RUNNING)],
        {"a": exited(0)},
        ["complete a succeeded/", "dispatch b #1"],
    ),
    (
        "linear: the last success finishes the run",
        make_run(*LINEAR),
        [rec("a", P.SUCCEEDED), rec("b", P.SUCCEEDED), rec("c", P.RUNNING)],
        {"c": exited(0)},
        ["complete c succeeded/", "finish succeeded/"],
    ),
    (
        "fan-in starts both roots",
        make_run(*FAN_IN, max_parallel=3),
        [],
        {},
        ["dispatch a #1", "dispatch b #1"],
    ),
    (
        "fan-in waits for every dependency",
        make_run(*FAN_IN, max_parallel=3),
        [rec("a", P.SUCCEEDED), rec("b", P.RUNNING)],
        {"b": alive()},
        [],
    ),
    (
        "fan-in joins once all succeeded",
        make_run(*FAN_IN, max_parallel=3),
        [rec("a", P.SUCCEEDED), rec("b", P.RUNNING)],
        {"b": exited(0)},
        ["complete b succeeded/", "dispatch c #1"],
    ),
    (
        "diamond: both branches after the root",
        make_run(*DIAMOND, max_parallel=2),
        [rec("a", P.RUNNING)],
        {"a": exited(0)},
        ["complete a succeeded/", "dispatch b #1", "dispatch c #1"],
    ),
    (
        "diamond: the join waits for the slower branch",
        make_run(*DIAMOND, max_parallel=2),
        [rec("a", P.SUCCEEDED), rec("b", P.SUCCEEDED), rec("c", P.RUNNING)],
        {"c": alive()},
        [],
    ),
    (
        "priority first, then declaration order",
        make_run(task("x"), task("y", priority=5), task("z", priority=5), max_parallel=2),
        [],
        {},
        ["dispatch y #1", "dispatch z #1"],
    ),
    (
        "a negative priority goes last",
        make_run(task("x", priority=-1), task("y"), max_parallel=1),
        [],
        {},
        ["dispatch y #1"],
    ),
    (
        "maxParallel 1 never overlaps",
        make_run(task("a"), task("b")),
        [rec("a", P.RUNNING)],
        {"a": alive()},
        [],
    ),
    (
        "a freed slot is refilled in the same call",
        make_run(task("a"), task("b")),
        [rec("a", P.RUNNING)],
        {"a": exited(0)},
        ["complete a succeeded/", "dispatch b #1"],
    ),
    (
        "failFast: a failure stops the others and skips what waits, in the same call",
        make_run(*PAIR, max_parallel=2),
        [rec("a", P.RUNNING), rec("b", P.RUNNING)],
        {"a": exited(1), "b": alive()},
        [
            "complete a failed/exit_status",
            "stop b aborted/fail_fast",
            "skip c fail_fast",
            "finish failed/task_failed",
        ],
    ),
    (
        "failFast: a task that exited meanwhile keeps its real outcome",
        make_run(*PAIR, max_parallel=2),
        [rec("a", P.RUNNING), rec("b", P.RUNNING)],
        {"a": exited(1), "b": exited(0)},
        [
            "complete a failed/exit_status",
            "complete b succeeded/",
            "skip c fail_fast",
            "finish failed/task_failed",
        ],
    ),
    (
        "failFast off: only the dependents are skipped; the rest goes on",
        make_run(*PAIR, max_parallel=2, fail_fast=False),
        [rec("a", P.RUNNING), rec("b", P.RUNNING)],
        {"a": exited(1), "b": alive()},
        ["complete a failed/exit_status", "skip c upstream_failed"],
    ),
    (
        "failFast off: the run fails when nothing is left to do",
        make_run(*PAIR, max_parallel=2, fail_fast=False),
        [rec("a", P.FAILED, reason=TaskReason.EXIT_STATUS, attempt=1), rec("b", P.RUNNING)],
        {"b": exited(0)},
        ["complete b succeeded/", "skip c upstream_failed", "finish failed/task_failed"],
    ),
    (
        "failFast off: skips are transitive, whatever the declaration order",
        make_run(task("d", "c"), task("a"), task("c", "a"), fail_fast=False),
        [rec("a", P.RUNNING)],
        {"a": exited(2)},
        [
            "complete a failed/exit_status",
            "skip c upstream_failed",
            "skip d upstream_failed",
            "finish failed/task_failed",
        ],
    ),
    (
        "failFast off: an aborted dependency also skips its dependents",
        make_run(task("a"), task("b", "a"), fail_fast=False),
        [rec("a", P.ABORTED, reason=TaskReason.USER_ABORT)],
        {},
        ["skip b upstream_failed", "finish failed/task_failed"],
    ),
    (
        "a failure with retries left goes back to pending, not dispatched before its backoff",
        make_run(task("a", retry_limit=2, retry_backoff=30.0)),
        [rec("a", P.RUNNING)],
        {"a": exited(1)},
        ["complete a failed/exit_status", "retry a #2"],
    ),
    (
        "the last retry failing fails the run",
        make_run(task("a", retry_limit=2)),
        [rec("a", P.RUNNING, attempt=3)],
        {"a": exited(1)},
        ["complete a failed/exit_status", "finish failed/task_failed"],
    ),
    (
        "a retry with no backoff runs again in the same call",
        make_run(task("a", retry_limit=1, retry_backoff=0.0)),
        [rec("a", P.RUNNING)],
        {"a": exited(1)},
        ["complete a failed/exit_status", "retry a #2", "dispatch a #2"],
    ),
    (
        "a retry that is due is dispatched as its attempt",
        make_run(task("a", retry_limit=2)),
        [rec("a", attempt=2, due_at=NOW)],
        {},
        ["dispatch a #2"],
    ),
    (
        "a retry not yet due waits (and is no deadlock)",
        make_run(task("a", retry_limit=2)),
        [rec("a", attempt=2, due_at=NOW + timedelta(seconds=1))],
        {},
        [],
    ),
    (
        "a failure recorded by the runtime (launch) is retried too",
        make_run(task("a", retry_limit=1)),
        [rec("a", P.FAILED, reason=TaskReason.LAUNCH_FAILED, attempt=1)],
        {},
        ["retry a #2"],
    ),
    (
        "a context overflow is not retried: the same prompt would overflow again",
        make_run(task("a", retry_limit=3)),
        [rec("a", P.FAILED, reason=TaskReason.CONTEXT_OVERFLOW, attempt=1)],
        {},
        ["finish failed/task_failed"],
    ),
    (
        "a timed-out task is stopped as failed",
        make_run(task("a", timeout=5.0)),
        [rec("a", P.RUNNING)],
        {"a": alive()},
        ["stop a failed/timeout", "finish failed/task_failed"],
    ),
    (
        "a timed-out task with retries left is stopped then retried",
        make_run(task("a", timeout=5.0, retry_limit=1)),
        [rec("a", P.RUNNING)],
        {"a": alive()},
        ["stop a failed/timeout", "retry a #2"],
    ),
    (
        "a task within its timeout runs on",
        make_run(task("a", timeout=60.0)),
        [rec("a", P.RUNNING)],
        {"a": alive()},
        [],
    ),
    (
        "a dispatched task not started yet times out from its dispatch",
        make_run(task("a", timeout=5.0)),
        [rec("a", P.RUNNING)],
        {"a": TaskObservation("absent")},
        ["stop a failed/timeout", "finish failed/task_failed"],
    ),
    (
        "the deadline stops everything",
        make_run(*PAIR, max_parallel=2, deadline=60.0),
        [rec("a", P.RUNNING), rec("b", P.RUNNING)],
        {"a": alive(), "b": alive()},
        [
            "stop a aborted/deadline_exceeded",
            "stop b aborted/deadline_exceeded",
            "skip c deadline_exceeded",
            "finish failed/deadline_exceeded",
        ],
    ),
    (
        "the deadline wins over a success seen in the same pass, which is still recorded",
        make_run(task("a"), deadline=300.0),
        [rec("a", P.RUNNING)],
        {"a": exited(0)},
        ["complete a succeeded/", "finish failed/deadline_exceeded"],
    ),
    (
        "a dispatch that does not fit the budget fails the run instead",
        make_run(task("a"), task("b"), max_cost=EST_USD - 0.001),
        [],
        {},
        ["skip a budget_exceeded", "skip b budget_exceeded", "finish failed/budget_exceeded"],
    ),
    (
        "an estimate exactly equal to what is left fits",
        make_run(task("a"), max_cost=0.1 + 0.2, spent_usd=0.3 - EST_USD),
        [],
        {},
        ["dispatch a #1"],
    ),
    (
        "the token limit refuses a dispatch too",
        make_run(task("a"), max_tokens=1999),
        [],
        {},
        ["skip a budget_exceeded", "finish failed/budget_exceeded"],
    ),
    (
        "a second dispatch in one call counts the first one's reservation",
        make_run(task("a"), task("b"), task("c"), max_parallel=3, max_cost=2 * EST_USD),
        [],
        {},
        ["dispatch a #1", "dispatch b #1"],
    ),
    (
        "a task that may fit once running reservations settle waits",
        make_run(
            task("a"),
            task("b"),
            max_parallel=2,
            max_cost=1.5 * EST_USD,
            reserved_usd=EST_USD,
            reserved_tokens=2000,
        ),
        [rec("a", P.RUNNING)],
        {"a": alive(input_tokens=10)},
        [],
    ),
    (
        "a running task that used more than its reservation counts at what it used",
        make_run(
            task("a"),
            task("b"),
            task("c"),
            max_parallel=3,
            max_cost=0.06,
            reserved_usd=2 * EST_USD,
            reserved_tokens=4000,
        ),
        [rec("a", P.RUNNING), rec("c", P.RUNNING)],
        {"a": alive(output_tokens=2000), "c": alive()},  # a: $0.03 used of $0.018 reserved
        [],  # b waits: a ($0.03+) + c (up to $0.018) + b ($0.018) may pass $0.06
    ),
    (
        "a completed task settles below its reservation and makes room in the same call",
        make_run(task("a"), task("b"), max_cost=1.5 * EST_USD, reserved_usd=EST_USD),
        [rec("a", P.RUNNING)],
        {"a": exited(0, input_tokens=1000)},
        ["complete a succeeded/", "dispatch b #1"],
    ),
    (
        "a task that cannot fit even if every reservation settles at what was used fails now",
        make_run(
            task("a"),
            task("b"),
            max_parallel=2,
            max_cost=1.5 * EST_USD,
            spent_usd=0.01,
            reserved_usd=EST_USD,
        ),
        [rec("a", P.RUNNING)],
        {"a": alive()},
        [
            "stop a aborted/budget_exceeded",
            "skip b budget_exceeded",
            "finish failed/budget_exceeded",
        ],
    ),
    (
        "usage reported while running past the cost limit stops the run",
        make_run(task("a"), task("b"), max_cost=0.01, reserved_usd=0.01),
        [rec("a", P.RUNNING, reserved_usd=0.01)],
        {"a": alive(output_tokens=1000)},
        [
            "stop a aborted/budget_exceeded",
            "skip b budget_exceeded",
            "finish failed/budget_exceeded",
        ],
    ),
    (
        "settled usage past the token limit stops the run",
        make_run(task("a"), task("b"), max_parallel=2, max_tokens=5000, spent_tokens=5001),
        [rec("a", P.SUCCEEDED), rec("b", P.RUNNING)],
        {"b": alive()},
        ["stop b aborted/budget_exceeded", "finish failed/budget_exceeded"],
    ),
    (
        "a reported cost is charged instead of the catalog price",
        make_run(task("a"), max_cost=1.0),
        [rec("a", P.RUNNING)],
        {"a": alive(input_tokens=1, reported_cost_usd=1.5)},
        ["stop a aborted/budget_exceeded", "finish failed/budget_exceeded"],
    ),
    (
        "abort stops, skips and keeps what exited",
        make_run(
            task("a"), task("b"), task("c", "a"), task("d"), max_parallel=3, abort_reason="wrong"
        ),
        [rec("a", P.RUNNING), rec("b", P.RUNNING), rec("d", P.BLOCKED)],
        {"a": exited(0), "b": alive()},
        [
            "complete a succeeded/",
            "stop b aborted/user_abort",
            "skip c user_abort",
            "skip d user_abort",
            "finish aborted/user_abort",
        ],
    ),
    (
        "abort wins over every other rule",
        make_run(task("a"), deadline=1.0, max_cost=0.0001, abort_reason="x"),
        [],
        {},
        ["skip a user_abort", "finish aborted/user_abort"],
    ),
    (
        "a blocked task waits for runs resolve, and so do its dependents",
        make_run(task("a"), task("b", "a"), task("c", "b")),
        [rec("a", P.SUCCEEDED), rec("b", P.BLOCKED, reason=TaskReason.MERGE_CONFLICT)],
        {},
        [],
    ),
    (
        "failFast off: a blocked task keeps a failing run open",
        make_run(task("a"), task("b"), fail_fast=False),
        [rec("a", P.FAILED, reason=TaskReason.EXIT_STATUS, attempt=1), rec("b", P.BLOCKED)],
        {},
        [],
    ),
    (
        "exit 0 with an error in the agent's report is a failure",
        make_run(task("a")),
        [rec("a", P.RUNNING)],
        {"a": exited(0, is_error=True)},
        ["complete a failed/agent_error", "finish failed/task_failed"],
    ),
    (
        "an exit with no status is lost",
        make_run(task("a")),
        [rec("a", P.RUNNING)],
        {"a": exited(None)},
        ["complete a failed/lost", "finish failed/task_failed"],
    ),
    (
        "a task that cannot be seen is neither completed nor replaced",
        make_run(task("a"), task("b")),
        [rec("a", P.RUNNING)],
        {"a": TaskObservation("unknown")},
        [],
    ),
    (
        "a running task missing from the observations is unknown",
        make_run(task("a"), task("b")),
        [rec("a", P.RUNNING)],
        {},
        [],
    ),
    (
        "a task recorded running but not started yet is running",
        make_run(task("a"), task("b")),
        [rec("a", P.RUNNING)],
        {"a": TaskObservation("absent")},
        [],
    ),
    (
        "a model is found by its alias",
        make_run(task("a", model="claude-sonnet")),
        [],
        {},
        ["dispatch a #1"],
    ),
]


@pytest.mark.parametrize(
    ("run", "records", "observed", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_rules(
    run: RunRecord,
    records: list[TaskRecord],
    observed: dict[str, TaskObservation],
    expected: list[str],
) -> None:
    assert summary(plan(run, records, observed)) == expected


@pytest.mark.parametrize("phase", [RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.ABORTED])
def test_an_ended_run_plans_nothing(phase: RunPhase) -> None:
    assert plan(make_run(task("a"), phase=phase)) == RunPlan()


@pytest.mark.parametrize(
    ("backoff", "failed_attempt", "expected"),
    [
        (30.0, 1, 30.0),
        (30.0, 2, 60.0),
        (30.0, 3, 120.0),
        (1000.0, 3, 3600.0),  # doubling stops at an hour
        (1000.0, 500, 3600.0),  # no overflow for absurd attempt numbers
        (7200.0, 1, 7200.0),  # a backoff declared longer than an hour is kept
        (7200.0, 2, 7200.0),
        (0.0, 4, 0.0),
    ],
)
def test_retry_backoff_doubles_up_to_an_hour(
    backoff: float, failed_attempt: int, expected: float
) -> None:
    spec = task("a", retry_backoff=backoff)
    assert scheduler.retry_delay(spec, failed_attempt) == expected


def test_a_retry_is_due_after_its_backoff_and_the_plan_says_when() -> None:
    run = make_run(task("a", retry_limit=3, retry_backoff=30.0))
    result = plan(run, [rec("a", P.RUNNING, attempt=2)], {"a": exited(1)})
    retry = result.decisions[-1]
    assert isinstance(retry, Retry)
    assert (retry.attempt, retry.reason) == (3, TaskReason.EXIT_STATUS)
    assert retry.due_at == NOW + timedelta(seconds=60)
    assert result.next_due == retry.due_at
    assert "retry a as attempt 3 of 4" in retry.message
    waiting = plan(run, [rec("a", attempt=3, due_at=retry.due_at)])
    assert waiting.decisions == ()
    assert waiting.next_due == retry.due_at
    due = plan(run, [rec("a", attempt=3, due_at=retry.due_at)], now=retry.due_at)
    assert summary(due) == ["dispatch a #3"]


def test_next_due_is_the_earliest_timeout_retry_or_deadline() -> None:
    run = make_run(
        task("a", timeout=60.0), task("b", retry_limit=1), task("c"), max_parallel=2, deadline=3600
    )
    records = [
        rec("a", P.RUNNING, started_at=NOW - timedelta(seconds=100)),
        rec("b", attempt=2, due_at=NOW + timedelta(seconds=90)),
    ]
    # The process's own start counts, not the dispatch: it times out at NOW + 50 s.
    started = TaskObservation("running", started_at=NOW - timedelta(seconds=10))
    result = plan(run, records, {"a": started})
    assert summary(result) == ["dispatch c #1"]
    assert result.next_due == NOW + timedelta(seconds=50)
    others_done = [rec("a", P.SUCCEEDED), rec("b", P.SUCCEEDED), rec("c", P.RUNNING)]
    later = plan(run, others_done, {"c": alive()})
    assert later.next_due == run.created_at + timedelta(seconds=3600)


def test_a_finished_run_has_no_next_due() -> None:
    run = make_run(task("a"), deadline=3600)
    assert plan(run, [rec("a", P.SUCCEEDED)]).next_due is None


def test_a_dispatch_says_what_it_costs_and_what_is_left() -> None:
    model = replace(MODEL, max_output_tokens=8000)  # 8000 x $15/M = $0.12
    run = make_run(task("collect"), max_cost=20.0, spent_usd=0.48, reserved_usd=0.12)
    run = replace(run, snapshot=replace(run.snapshot, models={"sonnet": model}))
    (dispatch,) = plan(run, prompt_tokens={"collect": 0}).decisions
    assert isinstance(dispatch, Dispatch)
    assert dispatch.message == "dispatch collect (attempt 1): sonnet, est. $0.12, $19.40 left"
    assert dispatch.estimate_usd == pytest.approx(0.12)
    assert dispatch.estimate_tokens == 8000
    assert dispatch.remaining_usd == pytest.approx(19.40)
    unlimited = plan(make_run(task("a"))).decisions[0]
    assert isinstance(unlimited, Dispatch)
    assert unlimited.remaining_usd is None
    assert unlimited.message.endswith("no cost limit")


@pytest.mark.parametrize(("prompt", "tokens"), [("", 1), ("abc", 1), ("abcde", 2), ("x" * 40, 10)])
def test_a_missing_prompt_size_is_estimated_from_the_task_prompt(prompt: str, tokens: int) -> None:
    (dispatch,) = plan(make_run(task("a", prompt=prompt)), prompt_tokens=None).decisions
    assert isinstance(dispatch, Dispatch)
    assert dispatch.estimate_tokens == tokens + MODEL.max_output_tokens


def test_deadlock_names_each_stuck_task_and_its_unmet_dependencies() -> None:
    # failFast on: `runs retry --task b` put b back while its dependency stays skipped.
    run = make_run(task("a"), task("b", "a"), task("c", "b", "ghost"))
    records = [rec("a", P.SKIPPED, reason=TaskReason.FAIL_FAST), rec("b"), rec("c")]
    result = plan(run, records)
    assert summary(result) == [
        "skip b upstream_failed",
        "skip c upstream_failed",
        "finish failed/deadlock",
    ]
    assert result.stuck == (StuckTask("b", ("a",)), StuckTask("c", ("b", "ghost")))
    assert result.finish is not None
    assert result.finish.message == (
        "deadlock: b waits for a (skipped); c waits for b (pending), ghost (not in the run)"
    )


def test_a_dependency_cycle_is_a_deadlock() -> None:
    result = plan(make_run(task("x", "y"), task("y", "x")))
    assert result.stuck == (StuckTask("x", ("y",)), StuckTask("y", ("x",)))
    assert result.finish is not None
    assert result.finish.reason is RunReason.DEADLOCK


def test_a_blocked_task_is_not_stuck() -> None:
    run = make_run(task("a"), task("b", "a"))
    result = plan(run, [rec("a", P.BLOCKED, reason=TaskReason.MERGE_CONFLICT)])
    assert (result.finish, result.stuck) == (None, ())


def test_messages_say_why() -> None:
    failing = plan(
        make_run(*PAIR, max_parallel=2),
        [rec("a", P.RUNNING), rec("b", P.RUNNING)],
        {"a": exited(3), "b": alive()},
    )
    messages = [d.message for d in failing.decisions]
    assert messages[0] == "a (attempt 1) exited 3: failed (exit_status)"
    assert messages[1] == "stop b (attempt 1): a failed (exit_status) and the run fails fast"
    assert failing.finish is not None
    assert failing.finish.message == "a failed (exit_status) and the run fails fast"
    agent = plan(make_run(task("a")), [rec("a", P.RUNNING)], {"a": exited(0, is_error=True)})
    assert (
        agent.decisions[0].message == "a (attempt 1) exited 0 but its agent reported an error: boom"
    )
    done = plan(make_run(task("a")), [rec("a", P.RUNNING)], {"a": exited(0)})
    assert done.finish is not None
    assert done.finish.message == "all 1 tasks succeeded"


def test_budget_messages_show_spending_against_the_limits() -> None:
    run = make_run(task("a"), max_cost=0.01, max_tokens=10_000)
    result = plan(run, [rec("a", P.RUNNING)], {"a": alive(output_tokens=1000)})
    assert result.finish is not None
    assert result.finish.message == ("budget exceeded: spent $0.015 of $0.01, 1000 tokens of 10000")
    refused = plan(make_run(task("a"), max_cost=0.001))
    assert refused.finish is not None
    assert refused.finish.message == (
        "a needs est. $0.018 and 2000 tokens; spent $0.00 of $0.001, 0 tokens"
    )


def test_a_task_that_can_never_fit_fails_the_run_before_anything_else_starts() -> None:
    # a fits, b (a larger prompt) never will: starting a only to stop it would waste money.
    run = make_run(task("a"), task("b"), max_parallel=2, max_cost=0.025)
    result = plan(run, prompt_tokens={"a": 1000, "b": 5000})
    assert summary(result) == [
        "skip a budget_exceeded",
        "skip b budget_exceeded",
        "finish failed/budget_exceeded",
    ]


def test_a_retry_dispatched_in_the_same_call_is_not_seen_as_its_previous_attempt() -> None:
    # a#1 exited after using $0.075 (more than its estimate); with no backoff a#2 starts at
    # once. The exit seen belongs to a#1: it is neither a#2's usage nor a#2's start time.
    run = make_run(
        task("a", retry_limit=1, retry_backoff=0.0, timeout=60.0),
        task("b"),
        max_parallel=2,
        max_cost=0.075 + 2 * EST_USD + 0.001,
        reserved_usd=EST_USD,
        reserved_tokens=2000,
    )
    old = replace(exited(1, output_tokens=5000), started_at=NOW - timedelta(seconds=100))
    result = plan(run, [rec("a", P.RUNNING)], {"a": old})
    assert summary(result) == [
        "complete a failed/exit_status",
        "retry a #2",
        "dispatch a #2",
        "dispatch b #1",
    ]
    assert result.next_due == NOW + timedelta(seconds=60)


def test_a_missing_task_record_is_pending() -> None:
    assert summary(plan(make_run(task("a"), task("b"), max_parallel=2))) == [
        "dispatch a #1",
        "dispatch b #1",
    ]


def test_an_unknown_model_is_a_bug() -> None:
    with pytest.raises(KeyError, match="opus"):
        plan(make_run(task("a", model="opus")))


def test_complete_carries_the_exit_code_and_report() -> None:
    observation = exited(0, input_tokens=5, output_tokens=7)
    complete = plan(make_run(task("a")), [rec("a", P.RUNNING)], {"a": observation}).decisions[0]
    assert isinstance(complete, Complete)
    assert complete.exit_code == 0
    assert complete.report == observation.report


def test_stop_reasons_are_task_reasons() -> None:
    result = plan(make_run(task("a"), abort_reason="x"), [rec("a", P.RUNNING)], {"a": alive()})
    (stop,) = result.decisions
    assert isinstance(stop, Stop)
    assert (stop.phase, stop.reason) == (TaskPhase.ABORTED, TaskReason.USER_ABORT)
    assert stop.message == "stop a (attempt 1): aborted by the user: x"


# Properties of whole runs: a tiny pure simulator applies each plan to the records, as the
# runtime and the store would, then lets the world move (processes start and exit, usage
# grows, merge conflicts block and get resolved, the user aborts, time passes).

TERMINAL = frozenset({P.SUCCEEDED, P.FAILED, P.ABORTED, P.SKIPPED})
RUN_LEVEL = frozenset(
    {RunReason.NONE, RunReason.USER_ABORT, RunReason.DEADLINE_EXCEEDED, RunReason.BUDGET_EXCEEDED}
)


@dataclass
class Proc:
    life: TaskLife = "absent"
    started_at: datetime | None = None
    usage: Usage = field(default_factory=Usage)
    exit_code: int | None = None
    is_error: bool = False

    def observation(self) -> TaskObservation:
        report = TaskReport(usage=self.usage, is_error=self.is_error)
        return TaskObservation(self.life, self.exit_code, report, self.started_at)


@dataclass
class Sim:
    run: RunRecord
    tasks: dict[str, TaskRecord]
    now: datetime
    honest: bool  # tasks never use more than their estimate
    procs: dict[str, Proc] = field(default_factory=dict)
    succeeded: set[str] = field(default_factory=set)
    conflicted: set[str] = field(default_factory=set)
    steps: int = 0

    @property
    def limits(self) -> BudgetSpec:
        return self.run.snapshot.budget

    def step(self, data: st.DataObject) -> RunPlan:
        observed = {name: proc.observation() for name, proc in self.procs.items()}
        prompts = dict.fromkeys(self.tasks, 1000)
        result = scheduler.plan_run(self.run, self.tasks, observed, self.now, prompt_tokens=prompts)
        if self.over_budget():
            # Once actual usage is past a limit nothing more starts and the run ends now
            # (an abort or the deadline, checked first, may end it instead).
            assert not any(isinstance(d, Dispatch) for d in result.decisions)
            assert result.finish is not None
            assert result.finish.reason in RUN_LEVEL - {RunReason.NONE}
        for decision in result.decisions:
            self.apply(decision, data)
        if result.finish is not None:
            self.run = replace(self.run, phase=result.finish.phase, reason=result.finish.reason)
        self.check(result)
        self.world(data, result.next_due)
        self.steps += 1
        return result

    def over_budget(self) -> bool:
        usage = sum((p.usage for p in self.procs.values()), Usage())
        usd = self.run.spent_usd + budget.charged(MODEL, usage)
        tokens = self.run.spent_tokens + usage.tokens
        over_cost = (
            self.limits.max_cost_usd is not None and usd > self.limits.max_cost_usd + budget.EPSILON
        )
        over_tokens = self.limits.max_tokens is not None and tokens > self.limits.max_tokens
        return over_cost or over_tokens

    def apply(self, decision: decisions.Decision, data: st.DataObject) -> None:
        record = self.tasks[decision.task]
        if isinstance(decision, Dispatch):
            self.dispatch(decision, record, data)
            return
        if isinstance(decision, Retry):
            target = P.PENDING
        elif isinstance(decision, Skip):
            target = P.SKIPPED
        else:
            self.settle(record)
            target = decision.phase
            if target is P.SUCCEEDED:
                self.succeeded.add(decision.task)
        moved = record.moved(phase=phases.transition_task(record.phase, target))
        if isinstance(decision, Retry):
            assert decision.due_at >= self.now
            moved = moved.moved(attempt=decision.attempt, due_at=decision.due_at)
        self.tasks[decision.task] = moved

    def dispatch(self, decision: Dispatch, record: TaskRecord, data: st.DataObject) -> None:
        spec = self.run.snapshot.task(decision.task)
        assert all(self.tasks[d].phase is P.SUCCEEDED for d in spec.depends_on)
        assert decision.task not in self.succeeded
        assert decision.attempt <= spec.retry_limit + 1
        assert record.due_at is None or record.due_at <= self.now
        # The store re-checks the budget atomically (spent + reserved + estimate, after the
        # decisions before this one): a plan never fails that check, even when tasks overspend.
        assert budget.fits(self.run, decision.estimate_usd, decision.estimate_tokens)
        if spec.depends_on and decision.task not in self.conflicted and data.draw(st.booleans()):
            self.conflicted.add(decision.task)  # the merge of its dependencies conflicts
            self.tasks[decision.task] = record.moved(
                phase=phases.transition_task(record.phase, P.BLOCKED)
            )
            return
        self.run = replace(
            self.run,
            reserved_usd=self.run.reserved_usd + decision.estimate_usd,
            reserved_tokens=self.run.reserved_tokens + decision.estimate_tokens,
        )
        self.tasks[decision.task] = record.moved(
            phase=phases.transition_task(record.phase, P.RUNNING),
            attempt=decision.attempt,
            due_at=None,
            started_at=self.now,
            reserved_usd=decision.estimate_usd,
            reserved_tokens=decision.estimate_tokens,
        )
        self.procs[decision.task] = Proc()

    def settle(self, record: TaskRecord) -> None:
        proc = self.procs.pop(record.name)
        self.run = replace(
            self.run,
            spent_usd=self.run.spent_usd + budget.charged(MODEL, proc.usage),
            spent_tokens=self.run.spent_tokens + proc.usage.tokens,
            reserved_usd=max(0.0, self.run.reserved_usd - record.reserved_usd),
            reserved_tokens=max(0, self.run.reserved_tokens - record.reserved_tokens),
        )

    def check(self, result: RunPlan) -> None:
        running = [r for r in self.tasks.values() if r.phase is P.RUNNING]
        assert len(running) <= self.run.snapshot.max_parallel
        if self.honest and self.limits.max_cost_usd is not None:
            committed = self.run.spent_usd + self.run.reserved_usd
            assert committed <= self.limits.max_cost_usd + budget.EPSILON
        if self.honest and self.limits.max_tokens is not None:
            assert self.run.spent_tokens + self.run.reserved_tokens <= self.limits.max_tokens
        if result.finish is not None:
            assert all(r.phase in TERMINAL for r in self.tasks.values())
            assert not self.procs
            all_done = set(self.succeeded) == set(self.tasks)
            assert (result.finish.phase is RunPhase.SUCCEEDED) <= all_done
            # Checked first, abort, deadline and budget end a run even when its last task
            # exited 0 meanwhile (that success is still recorded); nothing else can.
            assert all_done <= (result.finish.reason in RUN_LEVEL)
        assert result.next_due is None or result.next_due > self.now

    def world(self, data: st.DataObject, next_due: datetime | None) -> None:
        for name, record in self.tasks.items():
            if record.phase is P.BLOCKED and data.draw(st.booleans()):
                self.tasks[name] = record.moved(phase=P.PENDING)  # `runs resolve`
        for proc in self.procs.values():
            if proc.life == "absent":
                proc.life, proc.started_at = "running", self.now
            proc.usage = self.grow(proc.usage, data)
        alive = sorted(n for n, p in self.procs.items() if p.life == "running")
        exits = data.draw(st.sets(st.sampled_from(alive))) if alive else set()
        for name in exits or alive[:1]:  # at least one exit per step keeps runs finite
            proc = self.procs[name]
            proc.life = "exited"
            proc.exit_code = data.draw(st.sampled_from([0, 0, 0, 1, 137, None]))
            proc.is_error = proc.exit_code == 0 and data.draw(st.integers(0, 9)) == 0
        if data.draw(st.integers(0, 39)) == 0:
            self.run = replace(self.run, abort_reason="enough")
        step = timedelta(seconds=data.draw(st.integers(1, 90)))
        idle = not self.procs and next_due is not None
        self.now = max(self.now + step, next_due) if idle and next_due else self.now + step

    def grow(self, usage: Usage, data: st.DataObject) -> Usage:
        """Usage only grows; an honest task stays within its prompt and maxOutputTokens."""
        cap_in = 1000 if self.honest else 100_000
        cap_out = MODEL.max_output_tokens if self.honest else 100_000
        more_in = data.draw(st.integers(0, cap_in - usage.input_tokens))
        more_out = data.draw(st.integers(0, cap_out - usage.output_tokens))
        return usage + Usage(more_in, more_out)


@st.composite
def runs(draw: st.DrawFn) -> RunRecord:
    count = draw(st.integers(1, 6))
    names = [f"t{i}" for i in range(count)]
    specs = []
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=2)) if i else []
        specs.append(
            task(
                name,
                *deps,
                priority=draw(st.integers(-1, 2)),
                retry_limit=draw(st.integers(0, 2)),
                retry_backoff=float(draw(st.sampled_from([0, 5, 30]))),
                timeout=draw(st.sampled_from([None, 30.0, 120.0])),
            )
        )
    order = draw(st.permutations(specs))  # declared in any order, not only topological
    return make_run(
        *order,
        max_parallel=draw(st.integers(1, 3)),
        fail_fast=draw(st.booleans()),
        deadline=draw(st.sampled_from([None, 120.0, 600.0, 3600.0])),
        max_cost=draw(st.sampled_from([None, 0.03, 0.06, 0.2])),
        max_tokens=draw(st.sampled_from([None, 5000, 12_000])),
        created_at=NOW,
    )


def simulate(run: RunRecord, honest: bool, data: st.DataObject) -> Sim:
    sim = Sim(run, {t.name: TaskRecord(t.name) for t in run.snapshot.tasks}, NOW, honest)
    specs = run.snapshot.tasks
    bound = 3 * sum(t.retry_limit + 2 for t in specs) + 5
    while sim.run.phase is RunPhase.RUNNING:
        assert sim.steps <= bound, f"the run did not end within {bound} steps"
        sim.step(data)
    return sim


@settings(max_examples=150, deadline=None, database=None)
@given(run=runs(), data=st.data())
def test_an_honest_run_ends_within_bounds_and_never_overshoots(
    run: RunRecord, data: st.DataObject
) -> None:
    sim = simulate(run, True, data)
    assert sim.run.reason is not RunReason.DEADLOCK  # a valid DAG never deadlocks


@settings(max_examples=75, deadline=None, database=None)
@given(run=runs(), data=st.data())
def test_a_run_whose_tasks_overspend_stops_at_once_and_still_ends(
    run: RunRecord, data: st.DataObject
) -> None:
    sim = simulate(run, False, data)  # Sim.step checks that crossing a limit ends the run
    assert sim.run.reason is not RunReason.DEADLOCK


def test_the_simulator_reaches_every_outcome() -> None:
    """The properties above are only as good as the runs they see: each ending is reachable."""
    outcomes = set()

    @settings(max_examples=120, deadline=None, database=None, derandomize=True)
    @given(run=runs(), data=st.data())
    def collect(run: RunRecord, data: st.DataObject) -> None:
        outcomes.add(simulate(run, False, data).run.reason)

    collect()
    assert outcomes == set(RunReason) - {RunReason.DEADLOCK}  # tested by hand above


def test_applying_a_decision_moves_the_record_and_validates_the_move() -> None:
    due = NOW + timedelta(seconds=30)
    pending = rec("a", attempt=1)
    dispatched = decisions.applied(pending, Dispatch("a", 2, 0.5, 10, None, "m"), NOW)
    assert (dispatched.phase, dispatched.attempt, dispatched.started_at) == (P.RUNNING, 2, NOW)
    assert (dispatched.reserved_usd, dispatched.reserved_tokens) == (0.5, 10)
    failed = decisions.applied(
        dispatched, Complete("a", P.FAILED, TaskReason.EXIT_STATUS, 3, None, "m"), NOW
    )
    assert (failed.phase, failed.reason, failed.exit_code) == (P.FAILED, "exit_status", 3)
    retried = decisions.applied(failed, Retry("a", TaskReason.EXIT_STATUS, 3, due, "m"), NOW)
    assert (retried.phase, retried.attempt, retried.due_at) == (P.PENDING, 3, due)
    skipped = decisions.applied(retried, Skip("a", TaskReason.USER_ABORT, "m"), NOW)
    assert (skipped.phase, skipped.reason, skipped.finished_at) == (P.SKIPPED, "user_abort", NOW)
    with pytest.raises(errors.InvalidTransition):
        decisions.applied(rec("a", P.SUCCEEDED), Dispatch("a", 2, 0.5, 10, None, "m"), NOW)
