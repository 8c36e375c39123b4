"""Run handlers: create runs, dispatch tasks (base commit, prompt, reservation), complete,
stop, retry, skip, fail and finalize tasks, finish runs.

The store is the truth and every write is guarded by the state it expects, so a handler run
twice (a rerun after a crash) does nothing the second time. A dispatch reserves the budget
last: killed before it, the task is still pending and nothing was spent; killed after it, the
task is running and the next pass starts its agent (never a second one).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from controller.core.workflows import actions as run_actions
from controller.core.workflows import budget, compaction, expansion, model, naming, snapshots
from controller.executors import signals
from controller.executors.context import Context, Outcome
from controller.spec.state import DesiredState
from controller.store import runs as runs_store
from controller.system import git as gitseam

TaskPhase = model.TaskPhase
TaskReason = model.TaskReason


@dataclass(frozen=True, slots=True)
class RunPaths:
    """Where run files live, under the workspace's state folder and worktree root."""

    root: Path
    state_dir: Path

    def worktree(self, lane: str) -> Path:
        """A task lane's worktree."""
        return self.root / lane

    def prompt_file(self, run: str, task: str, attempt: int) -> Path:
        """The prompt of one attempt (the ``{promptFile}`` placeholder)."""
        return self.state_dir / "runs" / run / task / f"prompt-{attempt}.md"

    def stdout(self, lane: str) -> Path:
        """A task agent's stdout: the process runtime's log of the lane's one participant."""
        return self.state_dir / "logs" / lane / f"{lane}.log"

    def stderr(self, lane: str) -> Path:
        """A task agent's stderr."""
        return self.state_dir / "logs" / lane / f"{lane}.err"


def paths_of(ctx: Context) -> RunPaths:
    """The run paths of a pass's context."""
    return RunPaths(ctx.root, ctx.state_dir)


def _git(ctx: Context) -> gitseam.Git:
    return gitseam.Git(ctx.runner, ctx.repo)


def command_for(
    spec: model.TaskSpec,
    action: run_actions.DispatchTask,
    paths: RunPaths,
    *,
    workspace: str,
) -> tuple[str, ...]:
    """The task's argv for one attempt, its placeholders filled."""
    left = "" if action.remaining_usd is None else f"{max(0.0, action.remaining_usd):.2f}"
    values = {
        "prompt": action.prompt,
        "promptFile": str(paths.prompt_file(action.run, action.task, action.attempt)),
        "sessionId": naming.session_id(workspace, action.run, action.task, action.attempt),
        "taskBudgetUsd": left,
    }
    return expansion.resolve(spec.command, values)


# --- create ----------------------------------------------------------------------------------


async def create_run(
    action: run_actions.CreateRun, ctx: Context, desired: DesiredState, *, source: str
) -> Outcome:
    """Create a run of ``action.workflow`` with its snapshot (once per name)."""
    workflow = desired.workflows[action.workflow]
    snap = snapshots.snapshot(workflow, desired)
    now = ctx.clock.now()
    record = model.RunRecord(action.run, workflow.name, snap, created_at=now)
    lanes = {
        t.name: (naming.lane_name(action.run, t.name), naming.branch(action.run, t.name))
        for t in snap.tasks
    }
    created = ctx.event(
        "RunCreated",
        action.reason,
        run=action.run,
        workflow=workflow.name,
        tasks=len(snap.tasks),
        source=source,
    )
    made = await ctx.db(
        runs_store.create,
        ctx.store,
        record,
        source=source,
        lanes=lanes,
        now=now,
        emit=[created],
    )
    if not made:
        return Outcome(action, "unchanged", f"run {action.run} exists")
    return Outcome(action, "applied", f"created run {action.run} ({len(snap.tasks)} task(s))")


# --- dispatch --------------------------------------------------------------------------------


async def dispatch(action: run_actions.DispatchTask, ctx: Context) -> Outcome:
    """Start an attempt: base commit, prompt file, then the reservation (which may refuse)."""
    row = await ctx.db(runs_store.get, ctx.store, action.run)
    rows = await ctx.db(runs_store.tasks, ctx.store, run=action.run)
    task = rows.get((action.run, action.task))
    if row is None or task is None or task.record.phase != TaskPhase.PENDING:
        return Outcome(action, "unchanged", "the task is not pending any more")
    if await _previous_attempt_alive(ctx, task.lane):
        return Outcome(action, "refused", "the previous attempt's process is still stopping")
    if task.record.base_commit is None and action.branch_exists:
        return Outcome(
            action,
            "failed",
            f"branch {task.branch} exists already (from an earlier run of the same name?); "
            "the task would not start from its base. Delete the branch, or submit under "
            "another --name.",
        )
    base = task.record.base_commit or await _base(ctx, action, rows)
    if isinstance(base, Outcome):
        return base
    spec = row.record.snapshot.task(action.task)
    composed = await compose_prompt(_git(ctx), row.record, spec, rows)
    if composed.overflow:
        return await _overflowed(ctx, action, task.lane, composed)
    price = row.record.snapshot.models[spec.model]
    estimate = budget.estimate(price, composed.tokens)
    action = dataclasses.replace(
        action,
        prompt=composed.text,
        prompt_tokens=composed.tokens,
        notes=composed.notes,
        estimate_usd=max(action.estimate_usd, estimate.usd),
        estimate_tokens=max(action.estimate_tokens, estimate.tokens),
    )
    argv = await _prepare(ctx, action, spec, task.lane)
    session = naming.session_id(ctx.workspace, action.run, action.task, action.attempt)
    d = runs_store.Dispatch(
        action.run,
        action.task,
        action.attempt,
        action.estimate_usd,
        action.estimate_tokens,
        session,
        base,
        argv,
        host=action.host,
        group=action.group,
    )
    dispatched = ctx.event(
        "TaskDispatched",
        action.reason,
        lane=task.lane,
        run=action.run,
        task=action.task,
        attempt=action.attempt,
        model=action.model,
        estimateUsd=round(action.estimate_usd, 6),
        base=base,
        promptTokens=action.prompt_tokens,
        compaction=list(action.notes),
        **({"host": action.host} if action.host else {}),
    )
    # The event commits with the dispatch: a controller killed in between loses neither.
    try:
        fits = await ctx.db(runs_store.dispatch, ctx.store, d, ctx.clock.now(), emit=[dispatched])
    except runs_store.Taken as taken:
        return Outcome(action, "unchanged", str(taken))
    if not fits:
        return await _refused(ctx, action)
    return Outcome(action, "applied", f"dispatched {action.task} (attempt {action.attempt})")


async def compose_prompt(
    git: gitseam.Git,
    run: model.RunRecord,
    spec: model.TaskSpec,
    rows: Mapping[tuple[str, str], runs_store.TaskRow],
) -> compaction.Composed:
    """The task's prompt with each dependency's final message and output files (read with
    ``git`` at the dependency's final commit, never from a live worktree), compacted to fit
    its model's window less the answer's room."""
    upstream = [
        await _upstream(rows[(run.name, d)], run.snapshot.task(d), git) for d in spec.depends_on
    ]
    price = run.snapshot.models[spec.model]
    window = price.context_window - price.max_output_tokens
    return compaction.compose(spec.prompt, upstream, budget_tokens=window)


async def _upstream(
    row: runs_store.TaskRow, spec: model.TaskSpec, git: gitseam.Git
) -> compaction.Upstream:
    head = row.record.head_commit or ""
    files: list[compaction.RoutedFile] = []
    missing: list[str] = []
    for path in spec.outputs:
        body = await git.blob(head, path) if head else None
        if body is None:
            missing.append(path)
        else:
            digest = hashlib.sha256(body).hexdigest()
            files.append(compaction.RoutedFile(path, body, len(body), digest))
    return compaction.Upstream(
        task=spec.name,
        commit=head,
        final_message=row.record.final_message,
        files=tuple(files),
        missing=tuple(missing),
    )


async def _overflowed(
    ctx: Context, action: run_actions.DispatchTask, lane: str, composed: compaction.Composed
) -> Outcome:
    detail = "; ".join(composed.notes) or "the prompt does not fit the model's window"
    failed = run_actions.FailTask(
        lane,
        action.path,
        "prompt too large for the model even after compaction",
        run=action.run,
        task=action.task,
        reason_code=TaskReason.CONTEXT_OVERFLOW,
        detail=detail,
    )
    await fail(failed, ctx)
    return Outcome(action, "refused", f"{action.task}: context_overflow ({detail})")


async def _previous_attempt_alive(ctx: Context, lane: str) -> bool:
    """An earlier attempt's agent still running (being stopped): wait; else forget its record."""
    record = await ctx.db(ctx.store.agent_record, lane)
    if record is None:
        return False
    if record.pid is not None and await anyio.to_thread.run_sync(
        signals.matches, record.pid, record.pid_created
    ):
        return True
    await ctx.db(ctx.store.delete_agent, lane)  # the last attempt's: its outcome is recorded
    return False


async def _base(
    ctx: Context,
    action: run_actions.DispatchTask,
    rows: Mapping[tuple[str, str], runs_store.TaskRow],
) -> str | Outcome:
    git = _git(ctx)
    if not action.needs:
        sha = await git.commit_of(action.base or "HEAD")
        if sha is None:
            return Outcome(action, "failed", f"base {action.base or 'HEAD'} names no commit")
        return sha
    heads = [rows[(action.run, d)].record.head_commit or "" for d in action.needs]
    merged = await git.merge_commits(heads, f"lanes: base of {action.task} in run {action.run}")
    if merged.commit is not None:
        return merged.commit
    return await _block(ctx, action, rows[(action.run, action.task)].lane, merged.conflicts)


async def _block(
    ctx: Context, action: run_actions.DispatchTask, lane: str, conflicts: tuple[str, ...]
) -> Outcome:
    shown = ", ".join(conflicts[:20]) + (", ..." if len(conflicts) > 20 else "")
    detail = f"merging {', '.join(action.needs)} conflicts in: {shown}"
    await ctx.db(
        runs_store.move_task,
        ctx.store,
        action.run,
        action.task,
        ctx.clock.now(),
        expect=(TaskPhase.PENDING,),
        phase=TaskPhase.BLOCKED,
        reason=TaskReason.MERGE_CONFLICT,
        detail=detail,
    )
    await ctx.emit(
        "TaskBlocked",
        detail,
        lane=lane,
        run=action.run,
        task=action.task,
        conflicts=list(conflicts),
    )
    return Outcome(action, "refused", f"blocked: {detail}")


async def _prepare(
    ctx: Context, action: run_actions.DispatchTask, spec: model.TaskSpec, lane: str
) -> tuple[str, ...]:
    """Write the prompt file and start the attempt's logs afresh; return the argv."""
    paths = paths_of(ctx)
    prompt = paths.prompt_file(action.run, action.task, action.attempt)
    await anyio.to_thread.run_sync(write_private, prompt, action.prompt)
    await anyio.to_thread.run_sync(_rotate, paths, lane, action.attempt)
    return command_for(spec, action, paths, workspace=ctx.workspace)


def _rotate(paths: RunPaths, lane: str, attempt: int) -> None:
    """Keep an earlier attempt's output apart, so the new one's is parsed from its start."""
    for log in (paths.stdout(lane), paths.stderr(lane)):
        if log.exists():
            log.replace(log.with_name(f"{log.stem}.attempt-{attempt - 1}{log.suffix}"))


async def _refused(ctx: Context, action: run_actions.DispatchTask) -> Outcome:
    message = (
        f"{action.task} needs {run_actions.money(action.estimate_usd)}, which no longer fits "
        "the budget (concurrent dispatches took it); waiting cannot make it fit"
    )
    await ctx.db(runs_store.refuse, ctx.store, action.run, message, ctx.clock.now())
    await ctx.emit(
        "BudgetRefused",
        message,
        run=action.run,
        task=action.task,
        estimateUsd=round(action.estimate_usd, 6),
    )
    return Outcome(action, "refused", message)


# --- complete, stop, finalize ------------------------------------------------------------------


async def complete(action: run_actions.CompleteTask, ctx: Context) -> Outcome:
    """Commit what the task left, read its outputs at that commit, record how it ended."""
    row = await ctx.db(runs_store.get, ctx.store, action.run)
    rows = await ctx.db(runs_store.tasks, ctx.store, run=action.run)
    task = rows.get((action.run, action.task))
    if row is None or task is None or task.record.phase != TaskPhase.RUNNING:
        return Outcome(action, "unchanged", "already recorded")
    head = await _commit_leftovers(ctx, action, Path(action.path))
    spec = row.record.snapshot.task(action.task)
    outputs = await _outputs(ctx, head, spec.outputs)
    message = _final_message(task)
    ending = runs_store.Ending(
        action.run,
        action.task,
        action.phase,
        action.reason_code,
        detail=action.reason,
        exit_code=action.exit_code,
        head_commit=head,
        final_message=message,
        outputs=outputs,
    )
    kind = "TaskSucceeded" if action.phase == TaskPhase.SUCCEEDED else "TaskFailed"
    ended = ctx.event(
        kind,
        action.reason,
        lane=task.lane,
        run=action.run,
        task=action.task,
        attempt=action.attempt,
        exitCode=action.exit_code,
        head=head,
        missingOutputs=[p for p, d in outputs.items() if d is None],
    )
    await ctx.db(runs_store.end_attempt, ctx.store, ending, ctx.clock.now(), emit=[ended])
    return Outcome(action, "applied", f"{action.task}: {action.phase}")


def _final_message(task: runs_store.TaskRow) -> str | None:
    progress = (task.progress or {}).get("parser") or {}
    report = progress.get("report") or {}
    message = report.get("finalMessage", report.get("final_message"))
    return str(message) if message is not None else None


async def _commit_leftovers(
    ctx: Context, action: run_actions.RunAction, worktree: Path
) -> str | None:
    if not await anyio.Path(worktree).is_dir():
        return None
    message = f"lanes: what task {action.task} of run {action.run} left uncommitted"
    return await _git(ctx).commit_all(worktree, message)


async def _outputs(
    ctx: Context, head: str | None, outputs: tuple[str, ...]
) -> dict[str, dict[str, Any] | None]:
    found: dict[str, dict[str, Any] | None] = {}
    for path in outputs:
        body = await _git(ctx).blob(head, path) if head else None
        found[path] = None if body is None else _digest(body)
    return found


def _digest(body: bytes) -> dict[str, Any]:
    return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


async def stop(action: run_actions.StopTask, ctx: Context) -> Outcome:
    """End a running task's attempt; the lanes step stops its process, finalize commits."""
    ending = runs_store.Ending(
        action.run, action.task, action.phase, action.reason_code, detail=action.reason
    )
    stopped = ctx.event(
        "TaskStopped",
        action.reason,
        lane=action.lane,
        run=action.run,
        task=action.task,
        attempt=action.attempt,
        phase=str(action.phase),
        why=str(action.reason_code),
    )
    now = ctx.clock.now()
    if not await ctx.db(runs_store.end_attempt, ctx.store, ending, now, emit=[stopped]):
        return Outcome(action, "unchanged", "already ended")
    return Outcome(action, "applied", f"{action.task}: {action.phase} ({action.reason_code})")


async def finalize(action: run_actions.FinalizeTask, ctx: Context) -> Outcome:
    """Commit what an ended task left once its process is gone (so nothing is lost)."""
    head = await _commit_leftovers(ctx, action, Path(action.path))
    if head is None:
        return Outcome(action, "unchanged", "no worktree to keep")
    ended = tuple(model.ENDED_TASK)
    await ctx.db(
        runs_store.move_task,
        ctx.store,
        action.run,
        action.task,
        ctx.clock.now(),
        expect=ended,
        head_commit=head,
    )
    return Outcome(action, "applied", f"kept {action.task}'s work at {head[:12]}")


# --- retry, skip, fail, finish -----------------------------------------------------------------


async def retry(action: run_actions.RetryTask, ctx: Context) -> Outcome:
    """A failed task goes back to pending for its next attempt."""
    moved = await ctx.db(
        runs_store.move_task,
        ctx.store,
        action.run,
        action.task,
        ctx.clock.now(),
        expect=(TaskPhase.FAILED,),
        phase=TaskPhase.PENDING,
        attempt=action.attempt,
        due_at=action.due_at,
    )
    if not moved:
        return Outcome(action, "unchanged", "not failed any more")
    await ctx.emit(
        "TaskRetrying",
        action.reason,
        lane=action.lane,
        run=action.run,
        task=action.task,
        attempt=action.attempt,
        dueAt=action.due_at.isoformat() if action.due_at else None,
    )
    return Outcome(action, "applied", f"{action.task}: attempt {action.attempt} queued")


async def skip(action: run_actions.SkipTask, ctx: Context) -> Outcome:
    """A task that will not run."""
    expect = (TaskPhase.PENDING, TaskPhase.BLOCKED)
    return await _move(
        ctx, action, expect, TaskPhase.SKIPPED, "TaskSkipped", reason=action.reason_code
    )


async def fail(action: run_actions.FailTask, ctx: Context) -> Outcome:
    """A task that fails before it runs (its prompt cannot fit)."""
    expect = (TaskPhase.PENDING,)
    return await _move(
        ctx, action, expect, TaskPhase.FAILED, "TaskFailed", reason=action.reason_code
    )


async def _move(
    ctx: Context,
    action: run_actions.RunAction,
    expect: tuple[model.TaskPhase, ...],
    phase: model.TaskPhase,
    event: str,
    *,
    reason: model.TaskReason,
) -> Outcome:
    now = ctx.clock.now()
    moved = await ctx.db(
        runs_store.move_task,
        ctx.store,
        action.run,
        action.task,
        now,
        expect=expect,
        phase=phase,
        reason=reason,
        detail=action.reason,
        finished_at=now,
    )
    if not moved:
        return Outcome(action, "unchanged", "already moved")
    await ctx.emit(
        event, action.reason, lane=action.lane, run=action.run, task=action.task, why=str(reason)
    )
    return Outcome(action, "applied", f"{action.task}: {phase} ({reason})")


async def finish(action: run_actions.FinishRun, ctx: Context) -> Outcome:
    """The run ends."""
    now = ctx.clock.now()
    done = await ctx.db(
        runs_store.finish,
        ctx.store,
        action.run,
        action.phase,
        action.reason_code,
        action.message,
        now,
    )
    if not done:
        return Outcome(action, "unchanged", "already ended")
    await ctx.emit(
        "RunFinished",
        action.message,
        run=action.run,
        phase=str(action.phase),
        why=str(action.reason_code),
    )
    return Outcome(action, "applied", f"run {action.run} {action.phase}")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a 0600 file (its folder 0700), atomically replacing an older one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as out:
        out.write(text)
    tmp.replace(path)


Handler = Callable[[Any, Context], Awaitable[Outcome]]

HANDLERS: Mapping[type[run_actions.RunAction], Handler] = {
    run_actions.DispatchTask: dispatch,
    run_actions.CompleteTask: complete,
    run_actions.StopTask: stop,
    run_actions.FinalizeTask: finalize,
    run_actions.RetryTask: retry,
    run_actions.SkipTask: skip,
    run_actions.FailTask: fail,
    run_actions.FinishRun: finish,
}
