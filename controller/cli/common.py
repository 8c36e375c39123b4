"""What every command shares: global options, settings, loading, errors and exit codes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

import click

from controller import errors
from controller.cli import output
from controller.runtime import reconcile, sources, wiring
from controller.spec import workspace
from controller.spec.loading import Problem
from controller.spec.state import DesiredState
from controller.store import queries
from controller.system import clock as clocks

if TYPE_CHECKING:
    from controller.runtime import overrides

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_INVALID, EXIT_FAILED = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Settings:
    """Global options, merged from before and after the command name."""

    desired_given: Path | None = None
    state: str | None = None
    output: str = "text"
    verbose: int = 0
    lock_timeout: float = 60.0
    desired_ref: str | None = None
    color: str | None = None
    host: str | None = None

    def colors(self, stream: TextIO | None = None) -> bool:
        """Whether text written to ``stream`` (standard output by default) gets colours."""
        target = sys.stdout if stream is None else stream
        no_color, force_color = wiring.color_environment()
        return output.colors_on(
            self.color, tty=target.isatty(), no_color=no_color, force_color=force_color
        )

    @property
    def json(self) -> bool:
        """Whether output is JSON."""
        return self.output == "json"

    @property
    def desired(self) -> Path:
        """``--desired``, else ``./desired`` (inside a lane: the main checkout's)."""
        return self.desired_given or wiring.default_desired(Path.cwd())


def global_options(func: F) -> F:
    """Add the global options to a command so they may follow its name too."""
    options = [*_source_options(), *_output_options()]
    for option in reversed(options):
        func = option(func)
    return func


def _source_options() -> list[Callable[[F], F]]:
    """Where desired state and the store are."""
    return [
        click.option(
            "--desired",
            "desired_given",
            type=click.Path(path_type=Path),
            default=None,
            envvar="CONTROLLER_DESIRED",
            help="Folder of desired-state YAML (default ./desired, or "
            "$CONTROLLER_DESIRED, which agents are given; inside a linked "
            "worktree such as a lane, the main checkout's desired/).",
        ),
        click.option(
            "--desired-ref",
            default=None,
            metavar="REF",
            envvar=wiring.DESIRED_REF_ENV,
            callback=_check_ref,
            help="Read the desired folder as committed at this git revision "
            "instead of the working tree (wins over the Workspace's "
            "desiredRef).",
        ),
        click.option(
            "--state",
            default=None,
            metavar="URL",
            help="Store URL (default sqlite:///.lanes/state.db in the repo).",
        ),
        click.option(
            "--host",
            default=None,
            metavar="NAME",
            envvar=wiring.HOST_ENV,
            help="This controller's host name, for a Workspace with hosts (default "
            "$CONTROLLER_HOST, else the machine's host name).",
        ),
    ]


def _output_options() -> list[Callable[[F], F]]:
    """How the command prints, and how long it waits for the workspace lock."""
    return [
        click.option(
            "--output",
            "-o",
            type=click.Choice(["text", "json"]),
            default=None,
            help="Output format.",
        ),
        click.option("-v", "--verbose", count=True, help="More detail; repeat for more."),
        click.option(
            "--lock-timeout",
            type=float,
            default=None,
            metavar="SECONDS",
            help="How long to wait for another pass holding the workspace lock.",
        ),
        click.option(
            "--color",
            type=click.Choice([str(c) for c in output.Color]),
            default=None,
            help="Colours: auto (the default: on a terminal, unless NO_COLOR is set; "
            "FORCE_COLOR forces them), always or never.",
        ),
    ]


def lane_option(func: F) -> F:
    """``--lane NAME`` (repeatable): act on these lanes only."""
    return click.option(
        "--lane",
        multiple=True,
        metavar="NAME",
        help="Act on this lane only (repeatable); other lanes are left as they are.",
    )(func)


def selection(lanes: tuple[str, ...]) -> frozenset[str] | None:
    """The lanes a ``--lane`` pass may act on; None (every lane) without ``--lane``."""
    return frozenset(lanes) if lanes else None


def _check_ref(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return workspace.check_ref(value, what="REF")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def merge(ctx: click.Context, /, **given: Any) -> Settings:
    base: Settings = ctx.find_object(Settings) or Settings()
    # A value given after the command name wins; `-v` counts (0 means "not given").
    changes = {k: v for k, v in given.items() if v is not None and not (k == "verbose" and v == 0)}
    merged = replace(base, **changes)
    ctx.obj = merged
    return merged


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except errors.ControllerError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as exc:
            if not _from_sqlalchemy(exc):
                raise
            first = str(exc).splitlines()[0]
            fail(f"the store failed: {first} (is --state / stateUrl the right database?)")

    return wrapper  # type: ignore[return-value]


def _from_sqlalchemy(exc: Exception) -> bool:
    """A SQLAlchemy error; only possible once SQLAlchemy is loaded (a pass may never load it)."""
    loaded = sys.modules.get("sqlalchemy.exc")
    return loaded is not None and isinstance(exc, loaded.SQLAlchemyError)


def load(settings: Settings) -> DesiredState | tuple[Problem, ...]:
    return sources.load(settings.desired, ref=settings.desired_ref).result


def load_or_exit(settings: Settings) -> DesiredState:
    return load_origin_or_exit(settings)[0]


def load_origin_or_exit(settings: Settings) -> tuple[DesiredState, sources.Origin]:
    """Desired state and where it was read, or every problem printed and exit 1."""
    loaded = sources.load(settings.desired, ref=settings.desired_ref)
    if isinstance(loaded.result, DesiredState):
        return loaded.result, loaded.origin
    problems = loaded.result
    if settings.json:
        found = output.problems_json(problems)
        desired = loaded.origin.to_json()
        click.echo(output.to_json({"valid": False, "problems": found, "desired": desired}))
    else:
        click.echo(output.problems_text(problems, origin=loaded.origin.describe()), err=True)
    sys.exit(EXIT_INVALID)


def reconciler(
    settings: Settings, desired: DesiredState, origin: sources.Origin | None = None
) -> reconcile.Reconciler:
    return reconcile.Reconciler(wiring.build(paths(settings, desired, origin)))


def paths(
    settings: Settings, desired: DesiredState, origin: sources.Origin | None = None
) -> wiring.Paths:
    """Where the workspace lives; agents started on it read desired state at ``origin``'s ref."""
    ref = origin.ref if origin is not None else settings.desired_ref
    return wiring.resolve_paths(
        settings.desired,
        desired,
        state_override=settings.state,
        desired_ref=ref,
        host=settings.host,
    )


def store_for_agent(settings: Settings, me: wiring.LaneIdentity) -> queries.Store:
    """The store, from the environment the controller gave the agent or from desired/."""
    return _agent_store(settings, me)[0]


def _agent_store(
    settings: Settings, me: wiring.LaneIdentity
) -> tuple[queries.Store, wiring.Paths | None]:
    """The store as ``store_for_agent`` finds it, and the workspace's paths when known."""
    if settings.state is None and me.state_url and me.workspace:
        return queries.Store.open(me.state_url, me.workspace), None
    loaded = load(settings)
    desired = loaded if isinstance(loaded, DesiredState) else DesiredState.empty()
    where = paths(settings, desired)
    return wiring.open_store(where), where


def clock() -> clocks.Clock:
    """The clock of a command that builds no wiring (a wiring brings its own)."""
    return clocks.SystemClock()


def waiting(pid: int | None) -> None:
    """Say that the command waits for the workspace lock (once, on standard error)."""
    click.echo(f"waiting for another controller pass (pid {pid or '?'}) to finish...", err=True)


def override_target(settings: Settings) -> overrides.Target:
    """What an audited override works on: the store (found as for an agent), a clock, and the
    workspace lock when the workspace's files are known. The caller closes the store."""
    from controller.runtime import overrides  # the wake machinery: loaded for overrides only

    store, where = _agent_store(settings, wiring.lane_identity())
    lock = where.lock if where is not None else None
    return overrides.Target(store, clock(), lock, settings.lock_timeout, on_wait=waiting)
