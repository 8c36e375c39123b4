"""``controller logs``: what an agent printed, from its tmux pane (history included) or its log
files, and with ``-f`` what it prints next, until Ctrl-C.

Reading changes nothing. The text is cleaned of escape sequences unless ``--raw``. With many
hosts, a lane of another host is refused with the host to go to (exit 1), as ``attach`` does.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import anyio
import click

from controller.cli import common, hostverbs
from controller.runtime import outputs, wiring
from controller.spec.state import DesiredState
from controller.system import proc, tmuxserver


def register(group: click.Group) -> None:
    """Add the command to the command line."""
    group.add_command(logs)


@click.command("logs")
@common.global_options
@click.argument("lane")
@click.argument("participant", required=False)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until Ctrl-C.")
@click.option(
    "--lines",
    "-n",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="How many of the last lines to print first.",
)
@click.option(
    "--raw", is_flag=True, help="Keep escape sequences (colours) as the program wrote them."
)
@click.pass_context
@common.handle_errors
def logs(
    ctx: click.Context,
    /,
    lane: str,
    participant: str | None,
    follow: bool,
    lines: int,
    raw: bool,
    **given: Any,
) -> None:
    """Print what PARTICIPANT (or LANE's only agent) printed: its pane or its log files."""
    settings = common.merge(ctx, **given)
    loaded = common.load(settings)
    desired = loaded if isinstance(loaded, DesiredState) else DesiredState.empty()
    paths = common.paths(settings, desired)
    store = wiring.open_store(paths)
    try:
        agents, lanes = store.agent_records(), store.lane_records()
    finally:
        store.close()
    if paths.hosted:  # its pane and log files are on its host's machine
        then = " ".join(("controller logs", lane, *([participant] if participant else [])))
        effective = wiring.effective(paths, desired)
        hostverbs.check_host(effective, paths, lane, lanes.get(lane), then=then)
    found = outputs.known(
        desired, agents=agents.values(), lanes=lanes, logs_dir=paths.state_dir / "logs"
    )
    source = outputs.find(lane, participant, known=found)
    tmux = wiring.tmux_server(paths, proc.SubprocessRunner(wiring.base_env()))
    printer = _Printer(source, json_lines=settings.json)
    show = functools.partial(_show, source, tmux=tmux, lines=lines, raw=raw, follow=follow)
    try:
        anyio.run(show, printer)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how following ends
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more to print, and nothing to complain about.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    printer.close()


async def _show(
    source: outputs.Source,
    printer: _Printer,
    *,
    tmux: tmuxserver.TmuxServer,
    lines: int,
    raw: bool,
    follow: bool,
) -> None:
    pieces = outputs.stream(source, tmux=tmux, lines=lines, raw=raw, follow=follow)
    async for piece in pieces:
        printer.show(piece)


@dataclass(slots=True)
class _Printer:
    """Text as it comes (a header when the file changes, as `tail` does), or JSON Lines."""

    source: outputs.Source
    json_lines: bool
    origin: str | None = None
    open_line: bool = False  # the text printed last did not end its line
    partial: dict[str, str] = field(default_factory=dict)  # JSON: a line not ended yet

    def show(self, piece: outputs.Piece) -> None:
        """Print one piece."""
        if piece.note:
            self._note(piece)
        elif self.json_lines:
            self._json(piece)
        else:
            self._text(piece)

    def close(self) -> None:
        """End the output: a JSON line not ended yet is printed as it is."""
        for origin, rest in self.partial.items():
            if rest:
                self._line(origin, rest)
        self.partial.clear()
        if self.open_line:
            click.echo("")
            self.open_line = False

    def _text(self, piece: outputs.Piece) -> None:
        if piece.origin != self.origin and len(self.source.files) > 1:
            self._end_line()
            blank = "\n" if self.origin is not None else ""
            click.echo(f"{blank}==> {piece.origin} <==")
        self.origin = piece.origin
        # color=True: click would strip some escape sequences itself when not on a terminal;
        # the text is cleaned already, and --raw asks for them.
        click.echo(piece.text, nl=False, color=True)
        self.open_line = not piece.text.endswith("\n")

    def _json(self, piece: outputs.Piece) -> None:
        *done, rest = (self.partial.get(piece.origin, "") + piece.text).split("\n")
        for line in done:
            self._line(piece.origin, line)
        self.partial[piece.origin] = rest

    def _line(self, origin: str, line: str) -> None:
        self._record(origin, line=line)

    def _record(self, origin: str, **fields: str) -> None:
        lane, participant = self.source.lane, self.source.participant
        record = {"lane": lane, "participant": participant, "source": origin, **fields}
        click.echo(json.dumps(record, sort_keys=True))

    def _note(self, piece: outputs.Piece) -> None:
        if self.json_lines:
            self._record(piece.origin, note=piece.text)
            return
        self._end_line()
        click.echo(f"logs: {piece.text}", err=True)

    def _end_line(self) -> None:
        if self.open_line:
            click.echo("")
            self.open_line = False
