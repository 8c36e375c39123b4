"""Commands and exit codes (DESIGN §8).

``controller --once``: 0 converged or waiting on policy, 1 invalid desired state (nothing
applied), 2 some action failed. Global options work before or after the command name.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import click

from controller import __version__
from controller.cli import common, output
from controller.cli.common import EXIT_FAILED, EXIT_INVALID, EXIT_OK, Settings
from controller.core import drift, hosts, world
from controller.runtime import hosting, reconcile, sources, wiring
from controller.spec import meta
from controller.spec.loading import Problem
from controller.spec.state import DesiredState
from controller.system import locks

LAZY_COMMANDS = {
    **dict.fromkeys(("post", "read", "threads", "trigger", "triggers"), "threads"),
    **dict.fromkeys(("submit", "runs", "abort", "usage"), "runs"),
    **dict.fromkeys(("restart", "wait"), "verbs"),
    "logs": "agentlogs",
    "hosts": "hostverbs",
    "rescues": "rescues",
}
"""Commands by the module of ``controller.cli`` that defines (and registers) them."""


class Commands(click.Group):
    """The command line's commands; those of ``LAZY_COMMANDS`` load when named or listed.

    Their modules load the wake and workflow machinery (and SQLAlchemy with it), which a pass
    does not need (decision 92).
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module = importlib.import_module(f"controller.cli.{LAZY_COMMANDS[cmd_name]}")
            module.register(self)
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=Commands,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@common.global_options
@click.option("--once", is_flag=True, help="Run one full pass (load, observe, plan, apply).")
@click.option("--allow-empty", is_flag=True, help="Allow a pass that removes every lane.")
@common.lane_option
@click.version_option(__version__, prog_name="controller")
@click.pass_context
def cli(
    ctx: click.Context, /, once: bool, allow_empty: bool, lane: tuple[str, ...], **given: Any
) -> None:
    """The lane controller: declare lanes as YAML in desired/, and let a loop make them so.

    Run `controller --once` for one pass, `controller run` for the daemon, `controller plan`
    to see what a pass would do.
    """
    settings = common.merge(ctx, **given)
    if lane and not (once and ctx.invoked_subcommand is None):
        common.fail("--lane goes with --once, or after `plan` or `run --once`")
    if ctx.invoked_subcommand is not None:
        return
    if not once:
        click.echo(ctx.get_help())
        ctx.exit(EXIT_OK)
    ctx.exit(_once(settings, allow_empty=allow_empty, selection=common.selection(lane)))


# -- --once -----------------------------------------------------------------------------------


@common.handle_errors
def _once(settings: Settings, *, allow_empty: bool, selection: frozenset[str] | None) -> int:
    desired, origin = common.load_origin_or_exit(settings)
    reconciler = common.reconciler(settings, desired, origin)
    go = functools.partial(_once_async, allow_empty=allow_empty, selection=selection)
    try:
        return anyio.run(go, settings, reconciler, desired, origin)
    finally:
        reconciler.wiring.close()


async def _once_async(
    settings: Settings,
    reconciler: reconcile.Reconciler,
    desired: DesiredState,
    origin: sources.Origin,
    *,
    allow_empty: bool,
    selection: frozenset[str] | None,
) -> int:
    color = settings.colors()

    def progress(outcome: Any) -> None:
        if not settings.json:
            click.echo(output.outcome_line(outcome, color=color), color=color)

    lock = reconciler.wiring.paths.lock
    if not settings.json and origin.describe():
        click.echo(origin.describe())
    limits: dict[str, Any] = {"allow_empty": allow_empty, "selection": selection}
    if settings.verbose and not settings.json:
        the_plan, _, _ = await reconciler.plan(desired, **limits)
        click.echo(output.plan_text(the_plan, color=color) + "\n", color=color)
    w = reconciler.wiring
    async with (
        locks.workspace_lock(lock, wait=settings.lock_timeout, on_wait=common.waiting),
        hosting.held(w.paths, w.store),
    ):
        result = await reconciler.run_pass(desired, on_outcome=progress, **limits)
        # After the pass: a cleanup refused in it is on the lane's record now.
        records = await anyio.to_thread.run_sync(reconciler.wiring.store.lane_records)
    # Many hosts: another host's refused cleanup is its drift, not this pass's.
    here = hosts.hosting(wiring.effective(w.paths, desired), w.paths.host)
    records = hosts.split(here, records)[0]
    found = drift.find_drift(result.plan.conditions, _recorded(records, result.plan.selection))
    code = _exit_code(result, found)
    if settings.json:
        click.echo(output.to_json(_pass_json(result, code, found, origin)))
    else:
        click.echo(_pass_text(result, found, color=color), color=color)
    return code


def _recorded(
    records: Mapping[str, world.LaneRecord], selection: frozenset[str] | None = None
) -> dict[str, tuple[world.Condition, ...]]:
    """The conditions the inventory holds (a refused cleanup), by (selected) lane."""
    return {
        name: record.conditions
        for name, record in records.items()
        if selection is None or name in selection
    }


def _exit_code(result: reconcile.PassResult, found: tuple[drift.Drift, ...]) -> int:
    """1 refused; 2 not converged: an action or wake failed, a source was unreadable, drift."""
    if result.plan.refused:
        return EXIT_INVALID
    if result.failed or result.blind or found or _wake_failed(result):
        return EXIT_FAILED
    return EXIT_OK


def _wake_failed(result: reconcile.PassResult) -> bool:
    if not result.wakes:
        return False  # no wake, nothing for the thread commands to judge (nor to load)
    from controller.cli import threads

    return threads.exit_for(result) is not None


def _pass_text(
    result: reconcile.PassResult, found: tuple[drift.Drift, ...], *, color: bool = False
) -> str:
    p = result.plan
    lines: list[str] = []
    if p.refused:
        lines.append(output.paint(f"Refused: {p.refused}", "red", color=color))
    lines += output.conditions_text(p.conditions, p.notices, color=color)
    lines += output.unselected_text(p)
    lines += [
        f"  > wake {w.participant} @ {w.thread}: {w.result} ({w.reason})" for w in result.wakes
    ]
    if result.outcomes:
        lines.append(output.apply_summary(result.outcomes))
    elif not result.wakes:
        lines.append(output.idle_line(p))
    lines += output.drift_text(found)
    return "\n".join(lines)


def _pass_json(
    result: reconcile.PassResult,
    code: int,
    found: tuple[drift.Drift, ...],
    origin: sources.Origin,
) -> dict[str, Any]:
    return {
        "correlationId": result.correlation_id,
        "desired": origin.to_json(),
        "plan": output.plan_json(result.plan),
        "outcomes": [output.outcome_json(o) for o in result.outcomes],
        "wakes": [w.to_json() for w in result.wakes],
        "drift": [d.to_json() for d in found],
        "exitCode": code,
    }


# -- commands ---------------------------------------------------------------------------------


@cli.command()
@common.global_options
@click.option("--allow-empty", is_flag=True, help="Allow passes that remove every lane.")
@click.option(
    "--resync",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Seconds between full passes (default: Workspace resyncSeconds).",
)
@click.option(
    "--debounce",
    type=float,
    default=0.5,
    metavar="SECONDS",
    show_default=True,
    help="Quiet time after a change in desired/ before a pass.",
)
@click.option("--once", is_flag=True, help="Run one pass and exit (same as `controller --once`).")
@click.option(
    "--wake-poll",
    type=click.FloatRange(min=0.01),
    default=0.25,
    metavar="SECONDS",
    show_default=True,
    help="How often the daemon looks in the store for new messages, due wakes and runs.",
)
@click.option(
    "--listen/--no-listen",
    default=True,
    show_default=True,
    help="On PostgreSQL: LISTEN for posts (NOTIFY) and look for wakes at once, "
    "not only at the next poll.",
)
@click.option(
    "--metrics-addr",
    default=None,
    metavar="HOST:PORT",
    help="Also serve /metrics, /healthz, /readyz and GET /v1/status over TCP "
    "(read-only; e.g. 127.0.0.1:9108). Off by default.",
)
@click.option(
    "--api-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="With --metrics-addr: the TCP listener also serves the writing routes and the events, "
    "to requests with `Authorization: Bearer <the token in PATH>` (the file must be mode 0600).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="The daemon's log lines on stderr: text (key=value) or JSON Lines. "
    "Default: text, or json with --output json.",
)
@common.lane_option
@click.pass_context
@common.handle_errors
def run(
    ctx: click.Context,
    /,
    allow_empty: bool,
    resync: float | None,
    debounce: float,
    once: bool,
    wake_poll: float,
    listen: bool,
    metrics_addr: str | None,
    api_token_file: Path | None,
    log_format: str | None,
    lane: tuple[str, ...],
    **given: Any,
) -> None:
    """Run the daemon: watch desired/, resync periodically, stop cleanly on SIGINT/SIGTERM."""
    settings = common.merge(ctx, **given)
    if lane and not once:
        common.fail("--lane goes with --once: the daemon always reconciles every lane")
    if once:
        ctx.exit(_once(settings, allow_empty=allow_empty, selection=common.selection(lane)))
    from controller.cli import logs  # lazy: structlog only for the daemon
    from controller.runtime import daemon
    from controller.server import service, tokens  # lazy: the HTTP stack only for the daemon

    address = service.Address.parse(metrics_addr) if metrics_addr else None
    if api_token_file is not None and address is None:
        common.fail("--api-token-file goes with --metrics-addr (the unix socket needs no token)")
    token = tokens.read(api_token_file) if api_token_file is not None else None

    json_logs = settings.json if log_format is None else log_format == "json"
    log = logs.configure(
        json_output=json_logs, verbose=settings.verbose, colors=settings.colors(sys.stderr)
    )
    config = daemon.Settings(
        desired=settings.desired.resolve(),
        desired_ref=settings.desired_ref,
        state=settings.state,
        allow_empty=allow_empty,
        debounce=debounce,
        resync=resync,
        lock_timeout=settings.lock_timeout,
        wake_poll=wake_poll,
        listen=listen,
        host=settings.host,
    )
    from controller.cli import texts

    server = service.HttpService(metrics_addr=address, texts=texts.TEXTS, token=token)
    ctx.exit(anyio.run(daemon.Daemon(config, log, services=(server,)).run))


@cli.command()
@common.global_options
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 converged, 2 not converged (changes, or drift that needs you), 1 on error.",
)
@click.option("--allow-empty", is_flag=True, help="Plan as if --allow-empty were given.")
@common.lane_option
@click.pass_context
@common.handle_errors
def plan(
    ctx: click.Context,
    /,
    detailed_exitcode: bool,
    allow_empty: bool,
    lane: tuple[str, ...],
    **given: Any,
) -> None:
    """Print what a pass would do, changing nothing."""
    settings = common.merge(ctx, **given)
    desired, origin = common.load_origin_or_exit(settings)
    reconciler = common.reconciler(settings, desired, origin)
    planning = functools.partial(
        reconciler.plan, desired, allow_empty=allow_empty, selection=common.selection(lane)
    )
    try:
        the_plan, observed, _ = anyio.run(planning)
    finally:
        reconciler.wiring.close()
    found = drift.find_drift(the_plan.conditions, _recorded(observed.records, the_plan.selection))
    if settings.json:
        view = {**output.plan_json(the_plan), "desired": origin.to_json()}
        click.echo(output.to_json({**view, "drift": [d.to_json() for d in found]}))
    else:
        color = settings.colors()
        lines = [origin.describe(), output.plan_text(the_plan, color=color)]
        lines += output.drift_text(found) if detailed_exitcode else []
        click.echo("\n".join(line for line in lines if line), color=color)
    if the_plan.refused or (detailed_exitcode and output.blind(the_plan)):
        ctx.exit(EXIT_INVALID)
    if detailed_exitcode and (the_plan.actions or the_plan.pending or found):
        ctx.exit(EXIT_FAILED)


@cli.command()
@common.global_options
@click.pass_context
def validate(ctx: click.Context, /, **given: Any) -> None:
    """Check desired state: schema and cross-references, every problem as path:line."""
    settings = common.merge(ctx, **given)
    if settings.desired_ref is None and not settings.desired.is_dir():
        message = f"{settings.desired}: no such folder (pass --desired DIR)"
        if settings.json:
            problem = {"path": str(settings.desired), "line": 0, "message": message}
            click.echo(output.to_json({"valid": False, "problems": [problem]}))
            ctx.exit(EXIT_INVALID)
        common.fail(message)
    # The working tree as it is (you validate before you commit), or the revision asked for:
    # a Workspace's desiredRef is not followed here.
    loaded = _validated(settings)
    where = loaded.origin.describe()
    if isinstance(loaded.result, DesiredState):
        counts = _counts(loaded.result)
        if settings.json:
            click.echo(output.to_json({"valid": True, "problems": [], "counts": counts}))
        else:
            shown = ", ".join(_plural(n, k) for k, n in counts.items() if n)
            at = f" at {loaded.origin.ref} ({(loaded.origin.commit or '')[:12]})" if where else ""
            click.echo(f"{settings.desired}{at}: valid ({shown or 'empty'}).")
        return
    if settings.json:
        problems = output.problems_json(loaded.result)
        click.echo(output.to_json({"valid": False, "problems": problems}))
    else:
        click.echo(output.problems_text(loaded.result, origin=where), err=True)
    ctx.exit(EXIT_INVALID)


@common.handle_errors
def _validated(settings: Settings) -> sources.Loaded:
    return sources.load(settings.desired, ref=settings.desired_ref, follow=False)


def _plural(n: int, noun: str) -> str:
    """``1 lane``, ``2 lanes`` (the count keys are plural nouns)."""
    singular = {"policies": "policy", "catalogs": "catalog"}.get(noun, noun.rstrip("s"))
    return f"{n} {singular if n == 1 else noun}"


def _counts(desired: DesiredState) -> dict[str, int]:
    return {
        "workspace": 1 if desired.locations.get(("Workspace", desired.workspace.name)) else 0,
        "lanes": len(desired.lanes),
        "bindings": len(desired.bindings),
        "threads": len(desired.threads),
        "policies": len(desired.policies),
        "workflows": len(desired.workflows),
        "catalogs": len(desired.catalogs),
    }


@cli.command()
@common.global_options
@click.option(
    "--watch",
    is_flag=True,
    help="A live view on the terminal, redrawn on change, what needs attention on top; "
    "q or Ctrl-C quits.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=None,
    metavar="SECONDS",
    help="With --watch: how often to look for changes (default 2).",
)
@click.pass_context
@common.handle_errors
def status(ctx: click.Context, /, watch: bool, interval: float | None, **given: Any) -> None:
    """Show lanes, phases, branches, worktrees and conditions, observed now."""
    from controller.runtime import status as status_view

    settings = common.merge(ctx, **given)
    if watch:
        ctx.exit(_watch(settings, interval=2.0 if interval is None else interval))
    if interval is not None:
        raise click.UsageError("--interval goes with --watch")
    loaded = sources.load(settings.desired, ref=settings.desired_ref)
    desired = loaded.result if isinstance(loaded.result, DesiredState) else DesiredState.empty()
    problems: tuple[Problem, ...] = () if isinstance(loaded.result, DesiredState) else loaded.result
    reconciler = common.reconciler(settings, desired, loaded.origin)
    try:
        view = anyio.run(status_view.build, reconciler, desired, problems)
    finally:
        reconciler.wiring.close()
    view["desired"] = loaded.origin.to_json()
    if settings.json:
        click.echo(output.to_json(view))
    else:
        from controller.cli import tables  # lazy: rich only when drawing tables

        tables.print_status(view, color=settings.colors())


def _watch(settings: Settings, *, interval: float) -> int:
    """``status --watch``: refused for JSON and off a terminal (usage errors, exit 2)."""
    if settings.json:
        raise click.UsageError(
            "--watch draws a live view for people; for machines use `status -o json` "
            "(or `events --follow`)"
        )
    if not sys.stdout.isatty():
        raise click.UsageError("--watch needs a terminal; without one, use `status`")
    from controller.cli import watch  # lazy: rich.live only for --watch

    return watch.run(settings, interval=interval)


@cli.command()
@common.global_options
@click.option("--lane", default=None, help="Only events of this lane.")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    metavar="KIND",
    help="Only events of this kind, e.g. AgentStarted (repeat for more).",
)
@click.option(
    "--since",
    default=None,
    metavar="WHEN",
    help="Only events of the last WHEN (30s, 10m, 2h, 1d) or since the time WHEN "
    "(ISO 8601, e.g. 2026-12-02T13:00:00Z).",
)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they come.")
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=None,
    metavar="ID",
    help="Only events newer than event ID (the `id` of --output json); following goes on "
    "from there.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="How many of the newest events to show first.",
)
@click.pass_context
@common.handle_errors
def events(
    ctx: click.Context,
    /,
    lane: str | None,
    kinds: tuple[str, ...],
    since: str | None,
    follow: bool,
    after: int | None,
    limit: int,
    **given: Any,
) -> None:
    """Print the event log (JSON Lines with --output json)."""
    settings = common.merge(ctx, **given)
    start = _since(since, common.clock().now())
    loaded = common.load(settings)
    desired = loaded if isinstance(loaded, DesiredState) else DesiredState.empty()
    store = wiring.open_store(common.paths(settings, desired))
    read = functools.partial(store.read_events, lane=lane, kinds=kinds, since=start)
    try:
        # Following goes on from the newest event now, whatever the filters showed (or, with
        # --limit 0, did not show) of the history; with --after, from there.
        newest = store.latest_event_id() if after is None else after
        last = max(newest, _print_events(read(limit=limit, after=after or 0), settings))
        while follow:
            anyio.run(anyio.sleep, 0.5)
            last = max(last, _print_events(read(after=last), settings))
    except KeyboardInterrupt:
        return
    finally:
        store.close()


def _since(given: str | None, now: datetime) -> datetime | None:
    """``--since``: a duration back from now, or a point in time (UTC unless it says)."""
    if given is None:
        return None
    with contextlib.suppress(ValueError):
        return now - timedelta(seconds=meta.parse_duration(given))
    try:
        when = datetime.fromisoformat(given)
    except ValueError:
        raise click.BadParameter(
            f"{given!r} is neither a duration (30s, 10m, 2h, 1d) nor an ISO 8601 time "
            "(2026-12-02T13:00:00Z)",
            param_hint="--since",
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _print_events(items: list[Any], settings: Settings) -> int:
    for event in items:
        if settings.json:
            click.echo(json.dumps(event.to_json(), sort_keys=True))
        else:
            click.echo(output.event_line(event))
    return max((e.id or 0 for e in items), default=0)


@cli.command()
@common.global_options
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path),
    default=Path("schemas"),
    show_default=True,
    help="Where to write the JSON Schemas.",
)
@click.option("--check", is_flag=True, help="Exit 1 if the files differ instead of writing.")
@click.pass_context
def schema(ctx: click.Context, /, folder: Path, check: bool, **given: Any) -> None:
    """Write the JSON Schema of every kind (for editors) from the models."""
    from controller.spec import schemas

    common.merge(ctx, **given)
    rendered = schemas.render()
    stale = [
        name
        for name, text in rendered.items()
        if not (folder / name).is_file() or (folder / name).read_text() != text
    ]
    if check:
        for name in stale:
            click.echo(f"{folder / name}: out of date; run `controller schema`", err=True)
        ctx.exit(EXIT_INVALID if stale else EXIT_OK)
    folder.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (folder / name).write_text(rendered[name])
    click.echo(f"wrote {len(stale)} of {len(rendered)} schema file(s) to {folder}")


@cli.command()
@common.global_options
@click.option("--lane", default=None, help="Lane (default: $LANE_NAME, set inside a lane).")
@click.option(
    "--participant",
    "--as",
    "participant",
    default=None,
    help="Participant (default: $LANE_PARTICIPANT).",
)
@click.pass_context
@common.handle_errors
def heartbeat(
    ctx: click.Context, /, lane: str | None, participant: str | None, **given: Any
) -> None:
    """Tell the controller an agent is alive (for `heartbeat: {source: explicit}`)."""
    settings = common.merge(ctx, **given)
    me = wiring.lane_identity()
    lane, participant = lane or me.lane, participant or me.participant
    if not lane or not participant:
        common.fail(
            "run this inside a lane (LANE_NAME and LANE_PARTICIPANT set) or pass --lane/--as"
        )
    store = common.store_for_agent(settings, me)
    try:
        now = common.clock().now()
        where = {"lane": lane, "participant": participant}
        if store.update_agents(now, where=where, heartbeat_at=now) == 0:
            common.fail(f"no agent of {participant} in lane {lane} is recorded")
    finally:
        store.close()
    if settings.json:
        at = now.isoformat()
        click.echo(output.to_json({"lane": lane, "participant": participant, "at": at}))


@cli.command()
@common.global_options
@click.argument("participant")
@click.option("--reason", required=True, help="Why the block is lifted (recorded).")
@click.pass_context
@common.handle_errors
def unblock(ctx: click.Context, /, participant: str, reason: str, **given: Any) -> None:
    """Lift a participant's automatic block (a crash loop); audited with a reason."""
    settings = common.merge(ctx, **given)
    target = common.override_target(settings)
    from controller.runtime import overrides  # the wake machinery: loaded for this command only

    try:
        lifted = anyio.run(functools.partial(overrides.unblock, target, participant, reason=reason))
    finally:
        target.store.close()
    if settings.json:
        click.echo(output.to_json({"participant": participant, "unblocked": lifted}))
    elif lifted:
        click.echo(f"unblocked {participant}: {', '.join(lifted)} (effective on the next pass)")
    else:
        click.echo(f"{participant} is not blocked")


@cli.command()
@common.global_options
@click.argument("lane")
@click.argument("participant", required=False)
@click.pass_context
@common.handle_errors
def attach(ctx: click.Context, /, lane: str, participant: str | None, **given: Any) -> None:
    """Attach this terminal to the lane's tmux window (detach with the tmux prefix, then d)."""
    settings = common.merge(ctx, **given)
    desired = common.load_or_exit(settings)
    paths = common.paths(settings, desired)
    store = wiring.open_store(paths)
    try:
        agents = [a for a in store.agent_records().values() if a.lane == lane]
        record = store.lane_records().get(lane) if paths.hosted else None
    finally:
        store.close()
    if paths.hosted:
        _check_host(wiring.effective(paths, desired), paths, lane, record)
    if not agents and lane not in desired.lanes:
        declared = ", ".join(sorted(desired.lanes)) or "none"
        common.fail(f"lane {lane} is not declared (declared lanes: {declared})")
    if participant is not None:
        agents = [a for a in agents if a.participant == participant]
    if not agents:
        common.fail(
            f"no agent recorded in lane {lane}" + (f" for {participant}" if participant else "")
        )
    target = agents[0]
    window = target.window_id
    if target.runtime == "process" or window is None:
        common.fail(f"{target.participant} runs without tmux; its output is in {target.log_path}")
        return
    if not sys.stdin.isatty():
        common.fail("attach needs a terminal")
    tmux = ("tmux", "-L", paths.tmux_socket)
    subprocess.run((*tmux, "select-window", "-t", window), check=False, timeout=10)
    # Replacing this process with tmux's client is the point; argv list, no shell.
    os.execvp("tmux", (*tmux, "attach-session", "-t", target.session_id or window))  # noqa: S606


def _check_host(
    desired: DesiredState, paths: wiring.Paths, lane: str, record: world.LaneRecord | None
) -> None:
    """Many hosts: a lane's panes are on its host's tmux server; say where to go."""
    from controller.cli import hostverbs

    hostverbs.check_host(desired, paths, lane, record, then=f"controller attach {lane}")


def entrypoint() -> None:
    """The console script."""
    cli(prog_name="controller")
