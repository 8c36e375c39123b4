"""Everyday verbs: ``restart`` (audited, through ``runtime/restarts.py``) and ``wait`` (looks
only, through ``runtime/waiting.py``).

``restart``: 0 every agent started again, 1 refused (unknown lane or participant, a run task,
invalid desired state, an agent that cannot be seen), 2 some agent did not come back.
``wait``: 0 reached, 1 timed out (or an unknown lane or run), 2 the run ended failed or
aborted.
"""

from __future__ import annotations

import functools
from typing import Any

import anyio
import click

from controller.cli import common, output
from controller.cli.common import EXIT_FAILED, EXIT_INVALID, EXIT_OK
from controller.core import waits
from controller.executors.context import Outcome
from controller.runtime import restarts, sources, waiting
from controller.spec.state import DesiredState


def register(group: click.Group) -> None:
    """Add these commands to the command line."""
    for command in (restart, wait):
        group.add_command(command)


# -- restart ----------------------------------------------------------------------------------


@click.command()
@common.global_options
@click.argument("lane")
@click.argument("participant", required=False)
@click.option("--reason", required=True, help="Why (recorded in the event log).")
@click.pass_context
@common.handle_errors
def restart(
    ctx: click.Context, /, lane: str, participant: str | None, reason: str, **given: Any
) -> None:
    """Start LANE's agents (or PARTICIPANT's) again now: running ones are stopped first."""
    settings = common.merge(ctx, **given)
    desired, origin = common.load_origin_or_exit(settings)
    rec = common.reconciler(settings, desired, origin)

    color = settings.colors()

    def progress(outcome: Outcome) -> None:
        if not settings.json:
            click.echo(output.outcome_line(outcome, color=color), color=color)

    def waiting_for(pid: int | None) -> None:
        click.echo(f"waiting for another controller pass (pid {pid or '?'}) to finish...", err=True)

    go = functools.partial(
        restarts.restart,
        rec,
        desired,
        lane,
        participant,
        reason=reason,
        lock_timeout=settings.lock_timeout,
        on_wait=waiting_for,
        on_outcome=progress,
    )
    try:
        report = anyio.run(go)
    finally:
        rec.wiring.close()
    code = EXIT_OK if report.ok else EXIT_FAILED
    if settings.json:
        click.echo(output.to_json(_restart_json(report, code)))
    else:
        click.echo("\n".join(_restart_text(report)))
    ctx.exit(code)


def _restart_json(report: restarts.Report, code: int) -> dict[str, Any]:
    return {
        "lane": report.lane,
        "reason": report.reason,
        "by": report.by,
        "correlationId": report.correlation_id,
        "agents": [a.to_json() for a in report.agents],
        "outcomes": [output.outcome_json(o) for o in report.outcomes],
        "conditions": [
            output.condition_json(c) for c in report.result.plan.conditions.get(report.lane, ())
        ],
        "exitCode": code,
    }


def _restart_text(report: restarts.Report) -> list[str]:
    lines = [
        f"{a.participant}: was {a.was}, "
        + (f"started again (pid {a.pid}, restart {a.restarts})" if a.back else f"now {a.state}")
        for a in report.agents
    ]
    conditions = report.result.plan.conditions.get(report.lane, ())
    lines += [f"  ! {report.lane}: {c.type} ({c.reason}): {c.message}" for c in conditions]
    back = sum(a.back for a in report.agents)
    lines.append(f"Restarted {back} of {len(report.agents)} agent(s) of lane {report.lane}.")
    return lines


# -- wait -------------------------------------------------------------------------------------


def _target(_ctx: click.Context, _param: click.Parameter, value: str) -> waits.Target:
    try:
        return waits.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.command()
@common.global_options
@click.option(
    "--for",
    "target",
    default="converged",
    show_default=True,
    callback=_target,
    metavar="converged|lane=NAME|run=NAME",
    help="What to wait for.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=waiting.DEFAULT_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="Give up after this long (exit 1); 0 looks once.",
)
@click.pass_context
@common.handle_errors
def wait(ctx: click.Context, /, target: waits.Target, timeout: float, **given: Any) -> None:
    """Wait until the workspace converged, a lane is up, or a run ended; change nothing."""
    settings = common.merge(ctx, **given)
    desired, origin = common.load_origin_or_exit(settings)
    rec = common.reconciler(settings, desired, origin)

    def load() -> DesiredState | None:
        result = sources.load(settings.desired, ref=settings.desired_ref).result
        return result if isinstance(result, DesiredState) else None

    def heard(check: waits.Check) -> None:
        if not settings.json:
            click.echo(f"  {check.summary}", err=True)

    if not settings.json:
        click.echo(f"waiting for {target} (timeout {timeout:g}s)...", err=True)
    go = functools.partial(
        waiting.wait, rec, desired, target, load=load, timeout=timeout, on_look=heard
    )
    try:
        check = anyio.run(go)
    finally:
        rec.wiring.close()
    if settings.json:
        view = {"reached": check.reached, "condition": str(target), "state": check.state}
        click.echo(output.to_json(view))
    else:
        click.echo(check.summary)
    if not check.reached:
        click.echo(f"timed out after {timeout:g}s waiting for {target}", err=True)
        ctx.exit(EXIT_INVALID)
    ctx.exit(EXIT_FAILED if check.failed else EXIT_OK)
