"""``controller status --watch``: the status view, live in the terminal, redrawn on change.

Every ``interval`` seconds it builds the same view as ``status --output json`` (desired state
read again, the world observed again) and redraws only when that view changed (or the terminal
was resized). What needs attention comes first (``core.attention``), then the tables of
``controller status``. It draws on the alternate screen, so the shell's screen comes back as it
was. ``q``, Ctrl-C or SIGTERM ends it with exit 0; the terminal's mode is restored on every
way out.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TextIO

import anyio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from controller import errors
from controller.cli import common, tables
from controller.cli.common import EXIT_OK, Settings
from controller.core import attention
from controller.runtime import reconcile, sources
from controller.runtime import status as status_view
from controller.spec.loading import Problem
from controller.spec.state import DesiredState
from controller.system.clock import Clock

QUIT_KEYS = frozenset("qQ")

_STYLES = {
    attention.Severity.FAILED: "bold red",
    attention.Severity.BLOCKED: "red",
    attention.Severity.STALLED: "yellow",
    attention.Severity.WARNING: "yellow",
}

KeyWait = Callable[[float], str | None]
"""Waits up to the given seconds for keys; the keys pressed (a paste is many), or None."""


def run(settings: Settings, *, interval: float) -> int:
    """Draw the live view until ``q``, Ctrl-C or SIGTERM; exit 0."""
    watcher = _Watcher(settings)
    console = _console(color=settings.colors())
    try:
        with (
            _terminate_as_interrupt(),
            _keys(sys.stdin) as wait_key,
            Live(console=console, screen=True, auto_refresh=False, redirect_stderr=False) as live,
        ):
            loop(watcher, live, wait_key=wait_key, interval=interval)
    except KeyboardInterrupt:
        pass
    finally:
        watcher.close()
    return EXIT_OK


class Looker(Protocol):
    """What the loop looks through (``_Watcher``; a stub in unit tests)."""

    @property
    def clock(self) -> Clock: ...

    def view(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Look:
    """One look: the view, and why it is an older one if this look failed."""

    view: Mapping[str, Any]
    failure: str | None = None


class Screen(Protocol):
    """Where the loop draws (``rich.live.Live``; a stub in unit tests)."""

    console: Console

    def update(self, renderable: RenderableType, *, refresh: bool = False) -> None: ...


def loop(watcher: Looker, live: Screen, *, wait_key: KeyWait, interval: float) -> None:
    """Look, redraw on change, wait for a key or the interval; until a quit key."""
    look = Look(watcher.view())  # an error at the first look ends the command (exit 1)
    drawn: tuple[Any, ...] | None = None
    while True:
        key = (attention.fingerprint(look.view), look.failure, live.console.size)
        if key != drawn:
            screen = render(look, at=watcher.clock.now(), interval=interval)
            live.update(screen, refresh=True)
            drawn = key
        if QUIT_KEYS & set(wait_key(interval) or ""):
            return
        look = _next_look(watcher, look.view)


def _next_look(watcher: Looker, last: Mapping[str, Any]) -> Look:
    """A new look; if it fails in a way that may pass (the store busy, git failing), the
    last view and the error, so that the view stays up and tries again."""
    try:
        return Look(watcher.view())
    except Exception as exc:
        if not isinstance(exc, errors.ControllerError | OSError) and not _from_store(exc):
            raise
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        return Look(last, failure=first)


def _from_store(exc: Exception) -> bool:
    """A SQLAlchemy error (the store busy or gone); SQLAlchemy is loaded once a look ran."""
    loaded = sys.modules.get("sqlalchemy.exc")
    return loaded is not None and isinstance(exc, loaded.SQLAlchemyError)


def render(look: Look, *, at: datetime, interval: float) -> RenderableType:
    """The whole screen: a title line, what needs attention, then the status tables.

    ``at`` is in UTC, as every time the controller shows."""
    title = Text.assemble(
        ("controller status --watch", "bold"),
        f"  {at:%H:%M:%S} UTC, looks every {interval:g}s, redraws on change;  q quits",
    )
    parts: list[RenderableType] = [title]
    if look.failure is not None:
        failed = f"the last look failed (trying again): {look.failure}; showing the one before"
        parts.append(Text(failed, style="bold red"))
    view = look.view
    return Group(*parts, _attention(attention.concerns(view)), *tables.status_parts(view))


def _attention(found: tuple[attention.Concern, ...]) -> RenderableType:
    if not found:
        return Text("nothing needs attention", style="green")
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for column in ("ATTENTION", "WHO", "WHAT"):
        table.add_column(column)
    for c in found:
        table.add_row(Text(str(c.kind), style=_STYLES[c.severity]), c.subject, Text(c.message))
    return table


def _console(*, color: bool) -> Console:
    """A console that draws on the terminal (cursor moves), coloured only if ``color``."""
    return Console(
        highlight=False,
        force_terminal=True,
        color_system="standard" if color else None,
        no_color=not color,
    )


class _Watcher:
    """Builds the status view again and again, keeping the store open between looks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.reconciler: reconcile.Reconciler | None = None
        self.clock = common.clock()

    def view(self) -> dict[str, Any]:
        loaded = sources.load(self.settings.desired, ref=self.settings.desired_ref)
        desired, problems = _desired(loaded.result)
        reconciler = self._reconciler(desired, loaded.origin)
        view = anyio.run(status_view.build, reconciler, desired, problems)
        view["desired"] = loaded.origin.to_json()
        return view

    def _reconciler(self, desired: DesiredState, origin: sources.Origin) -> reconcile.Reconciler:
        """The reconciler of the last look, unless desired state now names another workspace."""
        paths = common.paths(self.settings, desired, origin)
        if self.reconciler is not None and self.reconciler.wiring.moved(paths):
            self.close()
        if self.reconciler is None:
            self.reconciler = common.reconciler(self.settings, desired, origin)
        return self.reconciler

    def close(self) -> None:
        if self.reconciler is not None:
            self.reconciler.wiring.close()
            self.reconciler = None


def _desired(
    result: DesiredState | tuple[Problem, ...],
) -> tuple[DesiredState, tuple[Problem, ...]]:
    """Desired state and its problems; with problems, the view shows the inventory only."""
    if isinstance(result, DesiredState):
        return result, ()
    return DesiredState.empty(), result


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the view as Ctrl-C does: through the ``finally`` blocks that restore the
    terminal (the default action would leave the alternate screen and cbreak mode to the shell
    to repair, and exit 143)."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _keys(stream: TextIO) -> Iterator[KeyWait]:
    """Single keys from ``stream`` (cbreak mode on a terminal, restored on the way out).

    Not a terminal (input redirected): no keys, only Ctrl-C ends the view.
    """
    if not stream.isatty():
        yield _no_keys
        return
    fd = stream.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield lambda timeout: read_keys(fd, timeout)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def read_keys(fd: int, timeout: float) -> str | None:
    """The keys typed within ``timeout`` seconds, or None."""
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return None
    # No bytes from a readable terminal: it hung up, and there is nothing left to draw on.
    return os.read(fd, 64).decode(errors="replace") or "q"


def _no_keys(timeout: float) -> None:
    time.sleep(timeout)
