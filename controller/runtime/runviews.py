"""The JSON views of runs (DESIGN §7): ``runs``, ``runs show`` and ``usage``.

Built from the store alone (the truth of a run), plus desired state to tell template drift.
Text renderings (tables, the task tree) are drawn from these same objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.core.workflows import model, snapshots
from controller.spec.state import DesiredState
from controller.store import queries
from controller.store import runs as runs_store

TASK_PHASES = tuple(str(p) for p in model.TaskPhase)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _drift(run: model.RunRecord, desired: DesiredState | None) -> bool:
    if desired is None or run.workflow not in desired.workflows:
        return False
    try:
        current = snapshots.template_hash(desired.workflows[run.workflow], desired)
    except KeyError:
        return True
    return current != run.snapshot.template_hash


def _usage(usage: model.Usage, cost: float) -> dict[str, Any]:
    return {
        "inputTokens": usage.input_tokens,
        "outputTokens": usage.output_tokens,
        "cacheReadTokens": usage.cache_read_tokens,
        "cacheWriteTokens": usage.cache_write_tokens,
        "costUsd": round(cost, 6),
    }


def run_summary(
    row: runs_store.RunRow,
    tasks: Mapping[tuple[str, str], runs_store.TaskRow],
    desired: DesiredState | None,
) -> dict[str, Any]:
    """One run as ``controller runs --output json`` lists it."""
    run = row.record
    mine = [tasks[(run.name, t.name)] for t in run.snapshot.tasks if (run.name, t.name) in tasks]
    counts = dict.fromkeys(TASK_PHASES, 0)
    total, cost = model.Usage(), 0.0
    for task in mine:
        counts[str(task.record.phase)] += 1
        total, cost = total + task.record.usage, cost + task.record.cost_usd
    budget = run.snapshot.budget
    return {
        "name": run.name,
        "workflow": run.workflow,
        "phase": str(run.phase),
        "reason": str(run.reason),
        "message": run.message,
        "templateDrift": _drift(run, desired),
        "startedAt": _iso(run.created_at),
        "finishedAt": _iso(run.finished_at),
        "source": row.source,
        "cleaned": row.cleaned,
        "tasks": counts,
        "usage": _usage(total, cost),
        "budget": {
            "maxTokens": budget.max_tokens,
            "maxCostUsd": budget.max_cost_usd,
            "spentUsd": round(run.spent_usd, 6),
            "reservedUsd": round(max(0.0, run.reserved_usd), 6),
            "spentTokens": run.spent_tokens,
        },
    }


def run_detail(
    row: runs_store.RunRow,
    tasks: Mapping[tuple[str, str], runs_store.TaskRow],
    desired: DesiredState | None,
    *,
    root: Path,
) -> dict[str, Any]:
    """One run as ``controller runs show --output json`` prints it: tasks in declared order."""
    run = row.record
    view = run_summary(row, tasks, desired)
    view["tasks"] = [
        _task(run, spec, tasks[(run.name, spec.name)], root=root)
        for spec in run.snapshot.tasks
        if (run.name, spec.name) in tasks
    ]
    view["taskCounts"] = run_summary(row, tasks, desired)["tasks"]
    return view


def _task(
    run: model.RunRecord, spec: model.TaskSpec, row: runs_store.TaskRow, *, root: Path
) -> dict[str, Any]:
    r = row.record
    usage = _usage(r.usage, r.cost_usd)
    usage["reportedCostUsd"] = r.usage.reported_cost_usd
    where = {"host": row.host} if row.host is not None else {}  # with `hosts`: where it ran
    return {
        "name": spec.name,
        "phase": str(r.phase),
        "reason": str(r.reason),
        "detail": r.detail,
        "attempt": r.attempt,
        "dependsOn": list(spec.depends_on),
        "model": spec.model,
        "lane": row.lane,
        "branch": row.branch,
        "worktree": str(root / row.lane),
        "baseCommit": r.base_commit,
        "headCommit": r.head_commit,
        "sessionId": r.session_id,
        "exitCode": r.exit_code,
        "startedAt": _iso(r.started_at),
        "finishedAt": _iso(r.finished_at),
        "dueAt": _iso(r.due_at),
        "finalMessage": r.final_message,
        "outputs": dict(row.outputs),
        "usage": usage,
        **where,
    }


def run_view(
    store: queries.Store, desired: DesiredState | None, run: str, *, root: Path
) -> dict[str, Any] | None:
    """``controller runs show RUN --output json``; None when no such run is recorded."""
    row = runs_store.get(store, run)
    if row is None:
        return None
    return run_detail(row, runs_store.tasks(store, run=run), desired, root=root)


def runs_view(store: queries.Store, desired: DesiredState | None) -> dict[str, Any]:
    """``controller runs --output json``."""
    rows = runs_store.runs(store)
    tasks = runs_store.tasks(store)
    return {"runs": [run_summary(row, tasks, desired) for row in rows]}


def usage_view(store: queries.Store, run: str | None = None) -> dict[str, Any]:
    """``controller usage --output json``: totals by run, task and model."""
    rows = runs_store.runs(store, names=(run,) if run else None)
    tasks = runs_store.tasks(store, run=run)
    out = []
    for row in rows:
        r = row.record
        mine = [(t, tasks[(r.name, t.name)]) for t in r.snapshot.tasks if (r.name, t.name) in tasks]
        total, cost = model.Usage(), 0.0
        for _, task in mine:
            total, cost = total + task.record.usage, cost + task.record.cost_usd
        out.append(
            {
                "name": r.name,
                "usage": _usage(total, cost),
                "tasks": [
                    {
                        "name": spec.name,
                        "model": spec.model,
                        "usage": _usage(task.record.usage, task.record.cost_usd),
                    }
                    for spec, task in mine
                ],
            }
        )
    return {"runs": out, "models": _by_model(runs_store.usage(store, run=run))}


def _by_model(records: list[runs_store.UsageRow]) -> list[dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {}
    for u in records:
        entry = totals.setdefault(
            u.model,
            {"model": u.model, "inputTokens": 0, "outputTokens": 0, "costUsd": 0.0},
        )
        entry["inputTokens"] += u.usage.input_tokens
        entry["outputTokens"] += u.usage.output_tokens
        entry["costUsd"] += u.cost_usd
    for entry in totals.values():
        entry["costUsd"] = round(entry["costUsd"], 6)
    return [totals[name] for name in sorted(totals)]
