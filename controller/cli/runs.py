"""Commands for workflow runs (DESIGN §7): submit, runs (show, retry, resolve, clean), abort,
usage (add).

Changes go through ``runtime/runops.py`` (locked, audited); progress is the ordinary pass.
Views are the JSON objects of ``runtime/runviews.py``, drawn as tables and a task tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import anyio
import click

from controller.cli import common, output
from controller.cli.common import EXIT_FAILED, EXIT_INVALID, EXIT_OK, Settings
from controller.core.workflows import model
from controller.core.workflows.actions import money
from controller.runtime import hosting, reconcile, runops, runviews, wiring
from controller.spec.state import DesiredState
from controller.store import runs as runs_store
from controller.system import locks

POLL = 0.05  # seconds between looks for a task's exit while `submit --wait` waits
IDLE = 2.0  # at most this long between passes while waiting
ENDED = {"succeeded": EXIT_OK, "failed": EXIT_FAILED, "aborted": EXIT_FAILED}


def register(group: click.Group) -> None:
    """Add these commands to the command line."""
    for command in (submit, runs_group, abort, usage_group):
        group.add_command(command)


def _with_reconciler(settings: Settings, fn: Any) -> Any:
    desired = common.load_or_exit(settings)
    rec = common.reconciler(settings, desired)
    try:
        return anyio.run(fn, rec, desired)
    finally:
        rec.wiring.close()


# -- submit -----------------------------------------------------------------------------------


@click.command()
@common.global_options
@click.argument("workflow")
@click.option("--name", default=None, help="The run's name (default <workflow>-<n>).")
@click.option("--wait", is_flag=True, help="Run passes until the run ends (exit 0 or 2).")
@click.option(
    "--timeout",
    type=float,
    default=None,
    metavar="SECONDS",
    help="With --wait: give up waiting after this long (exit 1; the run goes on).",
)
@click.pass_context
@common.handle_errors
def submit(
    ctx: click.Context,
    /,
    workflow: str,
    name: str | None,
    wait: bool,
    timeout: float | None,
    **given: Any,
) -> None:
    """Start a run of WORKFLOW; print its name."""
    settings = common.merge(ctx, **given)

    async def go(rec: reconcile.Reconciler, desired: DesiredState) -> int:
        done = await runops.submit(
            rec, desired, workflow, name=name, lock_timeout=settings.lock_timeout
        )
        if not wait:
            _say(settings, {"run": done.run}, done.run)
            return EXIT_OK
        if not settings.json:
            click.echo(done.run)
        return await _wait(settings, rec, desired, done.run, timeout)

    ctx.exit(_with_reconciler(settings, go))


async def _wait(
    settings: Settings,
    rec: reconcile.Reconciler,
    desired: DesiredState,
    run: str,
    timeout: float | None,
) -> int:
    """Passes until ``run`` ends, saying what changes; the exit code of its outcome."""
    clock = rec.wiring.clock
    deadline = None if timeout is None else clock.monotonic() + timeout
    seen: dict[str, str] = {}
    while True:
        before = await _signature(rec)
        async with (
            locks.workspace_lock(rec.wiring.paths.lock, wait=settings.lock_timeout),
            hosting.held(rec.wiring.paths, rec.wiring.store),
        ):
            result = await rec.run_pass(desired)
        view = await anyio.to_thread.run_sync(_detail, rec, desired, run)
        if not settings.json:
            for line in _progress(view, seen):
                click.echo(line)
        if view["phase"] in ENDED:
            if settings.json:
                click.echo(output.to_json(view))
            else:
                click.echo(_ended_line(view))
            return ENDED[view["phase"]]
        if deadline is not None and clock.monotonic() >= deadline:
            click.echo(f"timed out waiting for run {run} (it goes on)", err=True)
            return EXIT_INVALID
        await _until_something_changes(rec, result, before)


async def _signature(rec: reconcile.Reconciler) -> tuple[object, ...]:
    run_dir = rec.wiring.paths.state_dir / "run"
    return await anyio.to_thread.run_sync(runs_store.signature, rec.wiring.store, run_dir)


async def _until_something_changes(
    rec: reconcile.Reconciler, result: reconcile.PassResult, before: tuple[object, ...]
) -> None:
    """Sleep until a run changed or a task's process exited (its exit file) since the last pass
    began, or something falls due; at most ``IDLE`` seconds (tmux tasks leave no exit file)."""
    clock = rec.wiring.clock
    due = result.next_due()
    until = clock.monotonic() + IDLE
    if due is not None:
        until = min(until, clock.monotonic() + max(0.0, (due - clock.now()).total_seconds()))
    while await _signature(rec) == before and clock.monotonic() < until:
        await clock.sleep(POLL)


def _detail(rec: reconcile.Reconciler, desired: DesiredState, run: str) -> dict[str, Any]:
    view = runviews.run_view(rec.wiring.store, desired, run, root=rec.wiring.paths.root)
    if view is None:
        raise runops.RunError(f"run {run} is unknown (see `controller runs`)")
    return view


def _progress(view: Mapping[str, Any], seen: dict[str, str]) -> list[str]:
    lines = []
    for task in view["tasks"]:
        state = f"{task['phase']}/{task['attempt']}"
        if seen.get(task["name"]) != state and task["phase"] != "pending":
            lines.append(f"  {task['name']}: {_task_state(task)}")
        seen[task["name"]] = state
    return lines


def _task_state(task: Mapping[str, Any]) -> str:
    why = f" ({task['reason']})" if task["reason"] else ""
    attempt = f", attempt {task['attempt']}" if task["attempt"] > 1 else ""
    cost = task["usage"]["costUsd"]
    spent = f", {money(cost)}" if cost else ""
    return f"{task['phase']}{why}{attempt}{spent}"


def _ended_line(view: Mapping[str, Any]) -> str:
    why = f" ({view['reason']})" if view["reason"] else ""
    usage = view["usage"]
    tokens = usage["inputTokens"] + usage["outputTokens"]
    return (
        f"run {view['name']} {view['phase']}{why}: {tokens:,} tokens, "
        f"{money(usage['costUsd'])}{': ' + view['message'] if view['message'] else ''}"
    )


def _say(settings: Settings, data: Mapping[str, Any], text: str) -> None:
    click.echo(output.to_json(data) if settings.json else text)


# -- runs ---------------------------------------------------------------------------------------


@click.group("runs", invoke_without_command=True)
@common.global_options
@click.pass_context
@common.handle_errors
def runs_group(ctx: click.Context, /, **given: Any) -> None:
    """List workflow runs (and show, retry, resolve or clean one)."""
    settings = common.merge(ctx, **given)
    if ctx.invoked_subcommand is not None:
        return

    async def go(rec: reconcile.Reconciler, desired: DesiredState) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(runviews.runs_view, rec.wiring.store, desired)

    view = _with_reconciler(settings, go)
    click.echo(output.to_json(view) if settings.json else runs_text(view), nl=settings.json)


def runs_text(view: Mapping[str, Any]) -> str:
    """``controller runs`` for people, as printed (the daemon draws it the same)."""
    return _runs_table(view["runs"]) + "\n"


def run_text(view: Mapping[str, Any]) -> str:
    """``controller runs show RUN`` for people, as printed (the daemon draws it the same)."""
    return run_tree(view) + "\n"


def _runs_table(items: list[Mapping[str, Any]]) -> str:
    if not items:
        return "no runs (start one with `controller submit WORKFLOW`)"
    rows = [("RUN", "WORKFLOW", "PHASE", "TASKS", "TOKENS", "COST", "STARTED")]
    for r in items:
        tasks = ", ".join(f"{n} {p}" for p, n in r["tasks"].items() if n)
        usage = r["usage"]
        cost = money(usage["costUsd"])
        limit = r["budget"]["maxCostUsd"]
        row = (
            r["name"],
            r["workflow"] + (" (drift)" if r["templateDrift"] else ""),
            r["phase"] + (f" ({r['reason']})" if r["reason"] else ""),
            tasks,
            f"{usage['inputTokens'] + usage['outputTokens']:,}",
            cost if limit is None else f"{cost} of {money(limit)}",
            _when(r["startedAt"]),
        )
        rows.append(row)
    return output.columns(rows)


@runs_group.command("show")
@common.global_options
@click.argument("run")
@click.pass_context
@common.handle_errors
def runs_show(ctx: click.Context, /, run: str, **given: Any) -> None:
    """Show RUN: its phase, budget, and each task as a tree of dependencies."""
    settings = common.merge(ctx, **given)

    async def go(rec: reconcile.Reconciler, desired: DesiredState) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(_detail, rec, desired, run)

    view = _with_reconciler(settings, go)
    click.echo(output.to_json(view) if settings.json else run_text(view), nl=settings.json)


def run_tree(view: Mapping[str, Any]) -> str:
    """A run like ``argo get``: a header, then the tasks as a tree with phase, time and cost."""
    rows: list[tuple[str, ...]] = [
        ("TASK", "PHASE", "ATTEMPT", "DURATION", "TOKENS", "COST", "LANE")
    ]
    rows += [_task_row(prefix, task) for prefix, task in _tree(view["tasks"])]
    details = [
        f"  {t['name']}: {t['detail']}"
        for t in view["tasks"]
        if t["detail"] and t["phase"] != "succeeded"
    ]
    return "\n".join(
        [*_header(view), "", output.columns(rows), *(["", *details] if details else [])]
    )


def _header(view: Mapping[str, Any]) -> list[str]:
    budget, usage = view["budget"], view["usage"]
    limit = "" if budget["maxCostUsd"] is None else f" of {money(budget['maxCostUsd'])}"
    most = "" if budget["maxTokens"] is None else f" of {budget['maxTokens']:,}"
    tokens = usage["inputTokens"] + usage["outputTokens"]
    drift = "  (changed since the run began: templateDrift)" if view["templateDrift"] else ""
    why = f" ({view['reason']}): {view['message']}" if view["reason"] else ""
    ended = f", finished {_when(view['finishedAt'])}" if view["finishedAt"] else ""
    spent = f"{money(budget['spentUsd'])} spent, {money(budget['reservedUsd'])} reserved"
    return [
        f"Run:       {view['name']}",
        f"Workflow:  {view['workflow']}{drift}",
        f"Phase:     {view['phase']}{why}",
        f"Started:   {_when(view['startedAt'])}{ended}",
        f"Budget:    {spent}{limit}; {tokens:,} tokens{most}",
    ]


def _when(iso: str) -> str:
    """An ISO time as people read it: ``2026-12-02 13:11:18 UTC``."""
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC")


def _task_row(prefix: str, task: Mapping[str, Any]) -> tuple[str, ...]:
    usage = task["usage"]
    why = f" ({task['reason']})" if task["reason"] else ""
    return (
        prefix + task["name"],
        task["phase"] + why,
        str(task["attempt"] or "-"),
        _duration(task),
        f"{usage['inputTokens'] + usage['outputTokens']:,}",
        money(usage["costUsd"]),
        task["lane"] + (f" (host {task['host']})" if task.get("host") else ""),
    )


def _tree(tasks: list[Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """Tasks in declared order, indented under their first dependency (a DAG as a tree)."""
    by_name = {t["name"]: t for t in tasks}
    depth: dict[str, int] = {}
    for t in tasks:
        parents = [d for d in t["dependsOn"] if d in by_name]
        depth[t["name"]] = 1 + max((depth.get(p, 0) for p in parents), default=-1)
    out: list[tuple[str, Mapping[str, Any]]] = []
    for t in tasks:
        level = depth[t["name"]]
        needs = [d for d in t["dependsOn"] if d in by_name]
        marker = "" if level == 0 else "  " * (level - 1) + "└─ "
        suffix = f" (after {', '.join(needs)})" if len(needs) > 1 else ""
        out.append((marker, {**t, "name": t["name"] + suffix}))
    return out


def _duration(task: Mapping[str, Any]) -> str:
    if not task["startedAt"]:
        return "-"
    start = datetime.fromisoformat(task["startedAt"])
    end = datetime.fromisoformat(task["finishedAt"]) if task["finishedAt"] else None
    if end is None:
        return "running"
    seconds = int((end - start).total_seconds())
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@runs_group.command("retry")
@common.global_options
@click.argument("run")
@click.option("--task", default=None, help="Only this task (and the tasks that depend on it).")
@click.pass_context
@common.handle_errors
def runs_retry(ctx: click.Context, /, run: str, task: str | None, **given: Any) -> None:
    """Put RUN's failed, aborted and skipped tasks back to pending (the snapshot is kept)."""
    settings = common.merge(ctx, **given)

    async def go(rec: reconcile.Reconciler, desired: DesiredState) -> runops.Done:
        return await runops.retry(rec, run, task=task, lock_timeout=settings.lock_timeout)

    _done(settings, _with_reconciler(settings, go))


@runs_group.command("resolve")
@common.global_options
@click.argument("run")
@click.argument("task")
@click.option("--base", required=True, help="The revision the blocked task branches from.")
@click.option("--reason", required=True, help="Why (recorded in the event log).")
@click.pass_context
@common.handle_errors
def runs_resolve(
    ctx: click.Context, /, run: str, task: str, base: str, reason: str, **given: Any
) -> None:
    """Unblock TASK of RUN, blocked by a merge conflict: it branches from --base instead."""
    settings = common.merge(ctx, **given)

    async def go(rec: reconcile.Reconciler, desired: DesiredState) -> runops.Done:
        return await runops.resolve(
            rec, run, task, base=base, reason=reason, lock_timeout=settings.lock_timeout
        )

    _done(settings, _with_reconciler(settings, go))


@runs_group.command("clean")
@common.global_options
@click.argument("run")
@click.pass_context
@common.handle_errors
def runs_clean(ctx: click.Context, /, run: str, **given: Any) -> None:
    """Remove RUN's lanes (an ended run) through the normal cleanup: nothing is lost."""
    settings = common.merge(ctx, **given)

    async def go(rec: reconcile.Reconciler, desired: DesiredState) -> runops.Done:
        await runops.clean(rec, run, lock_timeout=settings.lock_timeout)
        async with (
            locks.workspace_lock(rec.wiring.paths.lock, wait=settings.lock_timeout),
            hosting.held(rec.wiring.paths, rec.wiring.store),
        ):
            result = await rec.run_pass(desired)
        problems = [o.message for o in result.failed]
        problems += [result.plan.refused] if result.plan.refused else []
        if problems:
            common.fail("; ".join(problems), EXIT_FAILED)
        return runops.Done(run, f"removed the lanes of run {run}")

    _done(settings, _with_reconciler(settings, go))


def _done(settings: Settings, done: runops.Done) -> None:
    _say(settings, {"run": done.run, "message": done.message}, done.message)


# -- abort --------------------------------------------------------------------------------------


@click.command()
@common.global_options
@click.argument("run")
@click.option("--reason", required=True, help="Why (recorded in the event log).")
@click.pass_context
@common.handle_errors
def abort(ctx: click.Context, /, run: str, reason: str, **given: Any) -> None:
    """Stop RUN now: its running tasks are stopped (TERM, then KILL), its lanes are kept."""
    settings = common.merge(ctx, **given)

    async def go(rec: reconcile.Reconciler, desired: DesiredState) -> runops.Done:
        done = await runops.abort(rec, run, reason=reason, lock_timeout=settings.lock_timeout)
        async with (
            locks.workspace_lock(rec.wiring.paths.lock, wait=settings.lock_timeout),
            hosting.held(rec.wiring.paths, rec.wiring.store),
        ):
            await rec.run_pass(desired)
        return done

    _done(settings, _with_reconciler(settings, go))


# -- usage --------------------------------------------------------------------------------------


class _RunOrCommand(click.Group):
    """``usage [RUN]`` beside ``usage add``: a first word that names no subcommand is RUN."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            ctx.meta["run"] = args[0]
            args = args[1:]
        return super().parse_args(ctx, args)


@click.group("usage", cls=_RunOrCommand, invoke_without_command=True)
@common.global_options
@click.pass_context
@common.handle_errors
def usage_group(ctx: click.Context, /, **given: Any) -> None:
    """Tokens and cost by run, task and model: `usage [RUN]`, or `usage add` for a task."""
    settings = common.merge(ctx, **given)
    if ctx.invoked_subcommand is not None:
        return
    run: str | None = ctx.meta.get("run")

    async def go(rec: reconcile.Reconciler, desired: DesiredState) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(runviews.usage_view, rec.wiring.store, run)

    view = _with_reconciler(settings, go)
    if run is not None and not view["runs"]:
        common.fail(f"run {run} is unknown (see `controller runs`)")
    click.echo(output.to_json(view) if settings.json else _usage_text(view))


def _usage_text(view: Mapping[str, Any]) -> str:
    rows = [("RUN", "TASK", "MODEL", "INPUT", "OUTPUT", "COST")]
    for r in view["runs"]:
        for t in r["tasks"]:
            u = t["usage"]
            tokens = (f"{u['inputTokens']:,}", f"{u['outputTokens']:,}", money(u["costUsd"]))
            rows.append((r["name"], t["name"], t["model"], *tokens))
    models = [("MODEL", "INPUT", "OUTPUT", "COST")]
    for m in view["models"]:
        tokens = (f"{m['inputTokens']:,}", f"{m['outputTokens']:,}", money(m["costUsd"]))
        models.append((m["model"], *tokens))
    return output.columns(rows) + "\n\n" + output.columns(models)


@usage_group.command("add")
@common.global_options
@click.option("--input-tokens", type=click.IntRange(min=0), required=True)
@click.option("--output-tokens", type=click.IntRange(min=0), required=True)
@click.option(
    "--cost-usd",
    type=click.FloatRange(min=0),
    default=None,
    help="What the agent says it cost (default: the ModelCatalog's prices).",
)
@click.option(
    "--run",
    "run_name",
    default=None,
    envvar="CONTROLLER_RUN",
    help="The run (default $CONTROLLER_RUN, which task agents are given).",
)
@click.option(
    "--task", default=None, envvar="CONTROLLER_TASK", help="The task (default $CONTROLLER_TASK)."
)
@click.pass_context
@common.handle_errors
def usage_add(
    ctx: click.Context,
    /,
    input_tokens: int,
    output_tokens: int,
    cost_usd: float | None,
    run_name: str | None,
    task: str | None,
    **given: Any,
) -> None:
    """Report a task's token usage by hand (for tasks with `usage: manual`)."""
    settings = common.merge(ctx, **given)
    if not run_name or not task:
        common.fail("say which task with --run and --task (a task agent has them in its env)")
    used = model.Usage(input_tokens, output_tokens, reported_cost_usd=cost_usd)
    store = common.store_for_agent(settings, wiring.lane_identity())
    try:
        done = runops.add_usage(store, str(run_name), str(task), used, common.clock().now())
    finally:
        store.close()
    _done(settings, done)
