"""The run scheduler: ``plan_run(run, tasks, observed, now)`` decides what a run does next.

It returns a ``decisions.RunPlan``: decisions (complete, stop, retry, skip, dispatch), at most
one ``Finish`` of the run, the next time something changes without an outside event, and on
deadlock the stuck tasks. Deterministic, total on a consistent snapshot, and pure: no I/O, no
clock (``now`` is passed in); the runtime applies the decisions in order, the store re-checks
budgets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from controller.core.workflows import budget, decisions
from controller.core.workflows.decisions import (
    Complete,
    Decision,
    Dispatch,
    Finish,
    Retry,
    RunPlan,
    Skip,
    Stop,
    StuckTask,
)
from controller.core.workflows.model import (
    ModelSpec,
    RunPhase,
    RunReason,
    RunRecord,
    RunSnapshot,
    TaskObservation,
    TaskPhase,
    TaskReason,
    TaskRecord,
    TaskReport,
    TaskSpec,
    Usage,
)

MAX_BACKOFF = 3600.0  # seconds: retry delays double up to one hour
NOT_RETRIED = frozenset({TaskReason.CONTEXT_OVERFLOW})  # the same prompt would overflow again
_DEAD = frozenset({TaskPhase.FAILED, TaskPhase.ABORTED, TaskPhase.SKIPPED})
_UNSEEN = TaskObservation(life="unknown")
_NOT_STARTED = TaskObservation(life="absent")


def plan_run(
    run: RunRecord,
    tasks: Mapping[str, TaskRecord],
    observed: Mapping[str, TaskObservation],
    now: datetime,
    *,
    prompt_tokens: Mapping[str, int] | None = None,
) -> RunPlan:
    """Decide what ``run`` does next from its task records and what was seen of their processes.

    The rules apply in this order, each on the records as the earlier ones left them, and the
    first that ends the run stops the sequence: (1) abort requested; (2) active deadline
    passed; (3) actual usage (settled ``run.spent_*`` plus the running attempts' reports) past
    a limit; (4) complete exited tasks; (5) stop timed-out tasks; (6) failures: fail fast, else
    retry what has retries left; (7) without failFast, skip dependents of failed, aborted or
    skipped tasks; (8) dispatch ready tasks, highest priority then declaration order, up to
    maxParallel; (9) finish: all succeeded, nothing left to do, or deadlock. A run that ends
    stops its running tasks (an exited one is completed instead, so its real outcome is kept)
    and skips its pending and blocked ones, with the run's reason as the tasks' reason.

    Budget: a ready task whose estimate cannot fit even once every running task settles at what
    it used so far fails the run (``budget_exceeded``) before anything is dispatched; one that
    may fit then waits, and lower priorities wait behind it. Running tasks count at their
    reservation or at what they reported, whichever is more. A retry is pending with the next
    attempt number; a dispatch runs that attempt (attempt 1 for a task never dispatched).
    A task missing from ``tasks`` is pending; a running task missing from ``observed`` is
    unknown: never completed, still counted as running. ``prompt_tokens`` gives the composed
    prompt size of ready tasks; a missing one is estimated from the task's own prompt.
    """
    if run.phase is not RunPhase.RUNNING:
        return RunPlan()
    draft = _Draft(
        run=run,
        now=now,
        observed=observed,
        prompt_tokens=prompt_tokens or {},
        tasks={t.name: tasks.get(t.name) or TaskRecord(t.name) for t in run.snapshot.tasks},
        spent_usd=run.spent_usd,
        spent_tokens=run.spent_tokens,
        reserved_usd=run.reserved_usd,
        reserved_tokens=run.reserved_tokens,
    )
    for rule in _RULES:
        rule(draft)
        if draft.finish is not None:
            break
    return draft.result()


def retry_delay(spec: TaskSpec, failed_attempt: int) -> float:
    """Seconds before the next attempt: ``retry_backoff x 2^(attempt - 1)``, doubling up to 1 h.

    A backoff declared longer than an hour is used as it is, never shortened.
    """
    doublings = min(max(failed_attempt, 1) - 1, 32)  # 2^32 hours is already past any cap
    return min(spec.retry_backoff * 2.0**doublings, max(MAX_BACKOFF, spec.retry_backoff))


def prompt_estimate(spec: TaskSpec) -> int:
    """Tokens of the task's own prompt, ``ceil(chars / 4)`` and at least 1 (DESIGN §7)."""
    return max(1, math.ceil(len(spec.prompt) / 4))


@dataclass(slots=True)
class _Draft:
    """Mutable accumulator of one call: the records as decisions move them, and the ledger."""

    run: RunRecord
    now: datetime
    observed: Mapping[str, TaskObservation]
    prompt_tokens: Mapping[str, int]
    tasks: dict[str, TaskRecord]
    spent_usd: float
    spent_tokens: int
    reserved_usd: float
    reserved_tokens: int
    stopped: set[str] = field(default_factory=set)
    dispatched: set[str] = field(default_factory=set)
    decisions: list[Decision] = field(default_factory=list)
    finish: Finish | None = None
    stuck: tuple[StuckTask, ...] = ()

    @property
    def snapshot(self) -> RunSnapshot:
        return self.run.snapshot

    def specs(self, *wanted: TaskPhase) -> list[TaskSpec]:
        """Tasks now in one of ``wanted``, in declaration order."""
        return [t for t in self.snapshot.tasks if self.tasks[t.name].phase in wanted]

    def phase(self, name: str) -> TaskPhase | None:
        record = self.tasks.get(name)
        return None if record is None else record.phase

    def seen(self, name: str) -> TaskObservation:
        """What was seen of the task's current attempt (one dispatched now has no process)."""
        if name in self.dispatched:
            return _NOT_STARTED
        return self.observed.get(name, _UNSEEN)

    def model(self, spec: TaskSpec) -> ModelSpec:
        return _model(self.snapshot, spec.model)

    def add(self, decision: Decision) -> None:
        record = self.tasks[decision.task]
        if isinstance(decision, Complete):
            self._settle(record, decision.report)
        elif isinstance(decision, Stop):
            self.stopped.add(decision.task)
        elif isinstance(decision, Dispatch):
            self.dispatched.add(decision.task)
            self.reserved_usd += decision.estimate_usd
            self.reserved_tokens += decision.estimate_tokens
        self.tasks[decision.task] = decisions.applied(record, decision, self.now)
        self.decisions.append(decision)

    def _settle(self, record: TaskRecord, report: TaskReport | None) -> None:
        """Replace the task's reservation by what it reported, as the store will."""
        usage = Usage() if report is None else report.usage
        self.spent_usd += budget.charged(self.model(self.snapshot.task(record.name)), usage)
        self.spent_tokens += usage.tokens
        self.reserved_usd = max(0.0, self.reserved_usd - record.reserved_usd)
        self.reserved_tokens = max(0, self.reserved_tokens - record.reserved_tokens)

    def ledger(self, *, spent_usd: float = 0.0, spent_tokens: int = 0) -> RunRecord:
        """The run with this call's spending and reservations (plus extra spending) applied."""
        return replace(
            self.run,
            spent_usd=self.spent_usd + spent_usd,
            spent_tokens=self.spent_tokens + spent_tokens,
            reserved_usd=self.reserved_usd,
            reserved_tokens=self.reserved_tokens,
        )

    def unsettled(self) -> list[str]:
        """Tasks whose reservation the store has yet to settle: running, or stopped now."""
        return [t.name for t in self.specs(TaskPhase.RUNNING)] + sorted(self.stopped)

    def overrun(self) -> tuple[float, int]:
        """What unsettled attempts used beyond their reservations (an estimate can be wrong)."""
        usd, tokens = 0.0, 0
        for name in self.unsettled():
            used_usd, used_tokens = self.live([name])
            usd += max(0.0, used_usd - self.tasks[name].reserved_usd)
            tokens += max(0, used_tokens - self.tasks[name].reserved_tokens)
        return usd, tokens

    def live(self, names: Iterable[str]) -> tuple[float, int]:
        """What the unsettled attempts of ``names`` reported so far (usage only grows)."""
        usd, tokens = 0.0, 0
        for name in names:
            report = self.seen(name).report
            if report is not None:
                usd += budget.charged(self.model(self.snapshot.task(name)), report.usage)
                tokens += report.usage.tokens
        return usd, tokens

    def result(self) -> RunPlan:
        return RunPlan(
            decisions=tuple(self.decisions),
            finish=self.finish,
            next_due=None if self.finish is not None else _next_due(self),
            stuck=self.stuck,
        )


def _model(snapshot: RunSnapshot, name: str) -> ModelSpec:
    """The catalog entry by name or alias (a model missing from the snapshot is a bug)."""
    if name in snapshot.models:
        return snapshot.models[name]
    for model in snapshot.models.values():
        if name in model.aliases:
            return model
    raise KeyError(name)


# Rules, in the order plan_run applies them.


def _abort(draft: _Draft) -> None:
    if draft.run.abort_reason is not None:
        why = f"aborted by the user: {draft.run.abort_reason}"
        _end(draft, RunPhase.ABORTED, RunReason.USER_ABORT, TaskReason.USER_ABORT, why)


def _deadline(draft: _Draft) -> None:
    deadline = _deadline_at(draft.run)
    if deadline is not None and deadline <= draft.now:
        why = f"active deadline of {_span(draft.snapshot.active_deadline or 0)} passed"
        _end(draft, RunPhase.FAILED, RunReason.DEADLINE_EXCEEDED, TaskReason.DEADLINE_EXCEEDED, why)


def _budget_spent(draft: _Draft) -> None:
    usd, tokens = draft.live(t.name for t in draft.specs(TaskPhase.RUNNING))
    usd, tokens = usd + draft.spent_usd, tokens + draft.spent_tokens
    if budget.exceeded(draft.run, usd, tokens):
        why = f"budget exceeded: {_spending(draft.snapshot, usd, tokens)}"
        _end(draft, RunPhase.FAILED, RunReason.BUDGET_EXCEEDED, TaskReason.BUDGET_EXCEEDED, why)


def _complete_exited(draft: _Draft) -> None:
    for spec in draft.specs(TaskPhase.RUNNING):
        seen = draft.seen(spec.name)
        if seen.life == "exited":
            draft.add(_completion(spec.name, draft.tasks[spec.name], seen))


def _timeouts(draft: _Draft) -> None:
    for spec in draft.specs(TaskPhase.RUNNING):
        limit = _timeout_at(spec, draft.tasks[spec.name], draft.seen(spec.name))
        if limit is not None and limit <= draft.now:
            attempt = draft.tasks[spec.name].attempt
            why = f"stop {spec.name} (attempt {attempt}): timed out after {_span(spec.timeout)}"
            draft.add(Stop(spec.name, TaskPhase.FAILED, TaskReason.TIMEOUT, why))


def _failures(draft: _Draft) -> None:
    failed = draft.specs(TaskPhase.FAILED)
    exhausted = [t for t in failed if not _retryable(t, draft.tasks[t.name])]
    if exhausted and draft.snapshot.fail_fast:
        first = draft.tasks[exhausted[0].name]
        why = f"{first.name} failed ({first.reason}) and the run fails fast"
        _end(draft, RunPhase.FAILED, RunReason.TASK_FAILED, TaskReason.FAIL_FAST, why)
        return
    for spec in failed:
        if spec not in exhausted:
            draft.add(_retry(spec, draft.tasks[spec.name], draft.now))


def _skip_dependents(draft: _Draft) -> None:
    if draft.snapshot.fail_fast:
        return  # a failure already ended the run; what is left to wait for is a deadlock
    changed = True
    while changed:  # a skip can doom the tasks declared before it: repeat until nothing moves
        changed = False
        for spec in draft.specs(TaskPhase.PENDING):
            dead = [d for d in spec.depends_on if draft.phase(d) in _DEAD]
            if dead:
                why = f"skip {spec.name}: " + ", ".join(f"{d} {draft.phase(d)}" for d in dead)
                draft.add(Skip(spec.name, TaskReason.UPSTREAM_FAILED, why))
                changed = True


def _dispatch_ready(draft: _Draft) -> None:
    ready = [(spec, _estimate(draft, spec)) for spec in _ready(draft)]
    for spec, estimate in ready:
        if not _can_ever_fit(draft, estimate):
            _refuse(draft, spec, estimate)  # every task must run for the run to succeed
            return
    running = len(draft.specs(TaskPhase.RUNNING))
    slots = max(1, draft.snapshot.max_parallel) - running  # validated >= 1; never hang on 0
    for spec, estimate in ready[: max(0, slots)]:
        over_usd, over_tokens = draft.overrun()
        committed = draft.ledger(spent_usd=over_usd, spent_tokens=over_tokens)
        if not budget.fits(committed, estimate.usd, estimate.tokens):
            return  # it fits once running tasks settle; lower priorities do not overtake it
        draft.add(_dispatch(draft, spec, estimate))


def _finish(draft: _Draft) -> None:
    records = [draft.tasks[t.name] for t in draft.snapshot.tasks]
    if all(r.phase is TaskPhase.SUCCEEDED for r in records):
        draft.finish = Finish(RunPhase.SUCCEEDED, RunReason.NONE, _all_succeeded(records))
        return
    if draft.specs(TaskPhase.RUNNING, TaskPhase.BLOCKED) or _startable(draft):
        return  # something can still change: an exit, a resolve, a due retry
    pending = draft.specs(TaskPhase.PENDING)
    if not pending:
        why = "nothing left to do: " + _outcomes(r for r in records if r.phase in _DEAD)
        draft.finish = Finish(RunPhase.FAILED, RunReason.TASK_FAILED, why)
        return
    draft.stuck = tuple(StuckTask(t.name, _unmet(draft, t)) for t in pending)
    why = "deadlock: " + "; ".join(_stuck_line(draft, s) for s in draft.stuck)
    _end(draft, RunPhase.FAILED, RunReason.DEADLOCK, TaskReason.UPSTREAM_FAILED, why)


_RULES: tuple[Callable[[_Draft], None], ...] = (
    _abort,
    _deadline,
    _budget_spent,
    _complete_exited,
    _timeouts,
    _failures,
    _skip_dependents,
    _dispatch_ready,
    _finish,
)


# What the rules share.


def _end(draft: _Draft, phase: RunPhase, reason: RunReason, cause: TaskReason, why: str) -> None:
    """End the run: complete what exited, stop what runs, skip what waits; then finish."""
    for spec in draft.snapshot.tasks:
        record = draft.tasks[spec.name]
        seen = draft.seen(spec.name)
        if record.phase is TaskPhase.RUNNING and seen.life == "exited":
            draft.add(_completion(spec.name, record, seen))
        elif record.phase is TaskPhase.RUNNING:
            message = f"stop {spec.name} (attempt {record.attempt}): {why}"
            draft.add(Stop(spec.name, TaskPhase.ABORTED, cause, message))
        elif record.phase in (TaskPhase.PENDING, TaskPhase.BLOCKED):
            draft.add(Skip(spec.name, cause, f"skip {spec.name}: {why}"))
    draft.finish = Finish(phase, reason, why)


def _completion(name: str, record: TaskRecord, seen: TaskObservation) -> Complete:
    head = f"{name} (attempt {record.attempt})"
    report, code = seen.report, seen.exit_code
    if code is None:
        why = f"{head} vanished with no exit status: failed (lost)"
        return Complete(name, TaskPhase.FAILED, TaskReason.LOST, code, report, why)
    if code != 0:
        why = f"{head} exited {code}: failed (exit_status)"
        return Complete(name, TaskPhase.FAILED, TaskReason.EXIT_STATUS, code, report, why)
    if report is not None and report.is_error:
        error = (report.error or "no detail")[:200]
        why = f"{head} exited 0 but its agent reported an error: {error}"
        return Complete(name, TaskPhase.FAILED, TaskReason.AGENT_ERROR, code, report, why)
    return Complete(name, TaskPhase.SUCCEEDED, TaskReason.NONE, code, report, f"{head} succeeded")


def _retryable(spec: TaskSpec, record: TaskRecord) -> bool:
    """Whether a failed attempt has retries left (attempt n used n - 1 retries)."""
    return record.reason not in NOT_RETRIED and record.attempt <= spec.retry_limit


def _retry(spec: TaskSpec, record: TaskRecord, now: datetime) -> Retry:
    delay = retry_delay(spec, record.attempt)
    due = now + timedelta(seconds=delay)
    attempt = record.attempt + 1
    why = (
        f"retry {spec.name} as attempt {attempt} of {spec.retry_limit + 1} at "
        f"{due.isoformat()} (after {_span(delay)}): attempt {record.attempt} failed "
        f"({record.reason})"
    )
    return Retry(spec.name, record.reason, attempt, due, why)


def _ready(draft: _Draft) -> list[TaskSpec]:
    """Pending tasks whose dependencies all succeeded and whose retry is due, best first."""
    order = {t.name: i for i, t in enumerate(draft.snapshot.tasks)}
    ready = [
        t
        for t in draft.specs(TaskPhase.PENDING)
        if not _unmet(draft, t) and _due(draft.tasks[t.name], draft.now)
    ]
    return sorted(ready, key=lambda t: (-t.priority, order[t.name]))


def _startable(draft: _Draft) -> bool:
    """Whether a pending task can start now or once its retry is due."""
    return any(not _unmet(draft, t) for t in draft.specs(TaskPhase.PENDING))


def _unmet(draft: _Draft, spec: TaskSpec) -> tuple[str, ...]:
    return tuple(d for d in spec.depends_on if draft.phase(d) is not TaskPhase.SUCCEEDED)


def _due(record: TaskRecord, now: datetime) -> bool:
    return record.due_at is None or record.due_at <= now


def _dispatch(draft: _Draft, spec: TaskSpec, estimate: budget.Estimate) -> Dispatch:
    attempt = max(draft.tasks[spec.name].attempt, 1)
    left = budget.remaining(draft.ledger())
    shown = "no cost limit" if left is None else f"{_usd(left)} left"
    why = (
        f"dispatch {spec.name} (attempt {attempt}): {spec.model}, "
        f"est. {_usd(estimate.usd)}, {shown}"
    )
    return Dispatch(spec.name, attempt, estimate.usd, estimate.tokens, left, why)


def _estimate(draft: _Draft, spec: TaskSpec) -> budget.Estimate:
    tokens = draft.prompt_tokens.get(spec.name)
    tokens = prompt_estimate(spec) if tokens is None else tokens
    return budget.estimate(draft.model(spec), tokens)


def _can_ever_fit(draft: _Draft, estimate: budget.Estimate) -> bool:
    """Whether the estimate fits once every unsettled task settles at what it used so far.

    Usage only grows, so a task that does not fit this floor never will: waiting is useless.
    """
    unsettled = draft.unsettled()
    if not unsettled:
        return budget.fits(draft.ledger(), estimate.usd, estimate.tokens)
    usd, tokens = draft.live(unsettled)
    spent = draft.ledger(spent_usd=usd, spent_tokens=tokens)
    floor = replace(spent, reserved_usd=0.0, reserved_tokens=0)
    return budget.fits(floor, estimate.usd, estimate.tokens)


def _refuse(draft: _Draft, spec: TaskSpec, estimate: budget.Estimate) -> None:
    usd, tokens = draft.live(draft.unsettled())
    spending = _spending(draft.snapshot, draft.spent_usd + usd, draft.spent_tokens + tokens)
    why = f"{spec.name} needs est. {_usd(estimate.usd)} and {estimate.tokens} tokens; {spending}"
    _end(draft, RunPhase.FAILED, RunReason.BUDGET_EXCEEDED, TaskReason.BUDGET_EXCEEDED, why)


def _next_due(draft: _Draft) -> datetime | None:
    """The earliest future moment a rule fires without an outside event."""
    moments = [_deadline_at(draft.run)]
    for spec in draft.snapshot.tasks:
        record = draft.tasks[spec.name]
        if record.phase is TaskPhase.PENDING:
            moments.append(record.due_at)
        elif record.phase is TaskPhase.RUNNING:
            moments.append(_timeout_at(spec, record, draft.seen(spec.name)))
    future = [m for m in moments if m is not None and m > draft.now]
    return min(future, default=None)


def _deadline_at(run: RunRecord) -> datetime | None:
    deadline = run.snapshot.active_deadline
    return None if deadline is None else run.created_at + timedelta(seconds=deadline)


def _timeout_at(spec: TaskSpec, record: TaskRecord, seen: TaskObservation) -> datetime | None:
    """When the attempt times out, counted from its process's start (else its dispatch)."""
    start = seen.started_at or record.started_at
    if spec.timeout is None or start is None:
        return None
    return start + timedelta(seconds=spec.timeout)


# Messages.


def _usd(value: float) -> str:
    """Dollars with two to four decimals: $19.40, $0.015, $0.0012."""
    whole, _, fraction = f"{value:.4f}".partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


def _span(seconds: float | None) -> str:
    return f"{seconds or 0:g}s"


def _spending(snapshot: RunSnapshot, usd: float, tokens: int) -> str:
    limits = snapshot.budget
    parts = [f"spent {_usd(usd)}"]
    if limits.max_cost_usd is not None:
        parts[0] += f" of {_usd(limits.max_cost_usd)}"
    parts.append(f"{tokens} tokens")
    if limits.max_tokens is not None:
        parts[1] += f" of {limits.max_tokens}"
    return ", ".join(parts)


def _all_succeeded(records: list[TaskRecord]) -> str:
    return f"all {len(records)} tasks succeeded"


def _outcomes(records: Iterable[TaskRecord]) -> str:
    return ", ".join(f"{r.name} {r.phase} ({r.reason})" for r in records)


def _stuck_line(draft: _Draft, stuck: StuckTask) -> str:
    waits = ", ".join(f"{d} ({draft.phase(d) or 'not in the run'})" for d in stuck.unmet)
    return f"{stuck.task} waits for {waits}"
