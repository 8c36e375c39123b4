"""Tables for people (rich), drawn from the same JSON views ``--output json`` prints.

Rich pads every cell to its column's width, the last one too: lines are printed without
their trailing spaces (colour codes kept), so that output pasted or compared stays clean.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any

import click
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

_TAIL = re.compile(r"(?:[ \t]|\x1b\[[0-9;]*m)+$")
_CODE = re.compile(r"\x1b\[[0-9;]*m")


def rstrip(text: str) -> str:
    """Every line of ``text`` without trailing white space; colour codes there are kept."""
    return "\n".join(_rstrip_line(line) for line in text.split("\n"))


def _rstrip_line(line: str) -> str:
    tail = _TAIL.search(line)
    if tail is None:
        return line
    return line[: tail.start()] + "".join(_CODE.findall(tail.group()))


PIPED_WIDTH = 200  # the width of text that goes to a pipe or a file


def make_console(*, color: bool, width: int | None = None, height: int | None = None) -> Console:
    """A console for standard output, with colours (ANSI, 16 colours) only if ``color``;
    ``width`` (and ``height``) as given, else the terminal's, or ``PIPED_WIDTH`` off one."""
    # Piped output is read by tools and people with wide screens: do not squeeze it to 80.
    if width is None:
        width = None if sys.stdout.isatty() else PIPED_WIDTH
    if color:
        return Console(
            highlight=False,
            soft_wrap=True,
            width=width,
            height=height,
            force_terminal=True,
            no_color=False,
            color_system="standard",
        )
    return Console(
        highlight=False,
        soft_wrap=True,
        width=width,
        height=height,
        force_terminal=False,
        color_system=None,
    )


def print_status(view: Mapping[str, Any], *, color: bool = False) -> None:
    """Print ``controller status`` as tables plus warnings."""
    click.echo(status_text(view, color=color), nl=False, color=color)


def status_text(view: Mapping[str, Any], *, color: bool = False, width: int | None = None) -> str:
    """``controller status`` as printed. With ``width`` (the daemon draws it for the thin
    client) the console looks at neither the terminal nor the environment."""
    out = make_console(color=color, width=width, height=None if width is None else 25)
    with out.capture() as captured:
        _status(out, view)
    return rstrip(captured.get())


def _status(console: Console, view: Mapping[str, Any]) -> None:
    for part in status_parts(view):
        console.print(part)


def status_parts(view: Mapping[str, Any]) -> list[RenderableType]:
    """What ``controller status`` prints, in order; ``status --watch`` draws the same."""
    parts: list[RenderableType] = [*_header(view), *_hosts(view)]
    hosted = bool(view.get("hosts"))
    parts.append(_lanes_table(view["lanes"], hosted=hosted) if view["lanes"] else Text("no lanes"))
    agents = [(lane["name"], a) for lane in view["lanes"] for a in lane["agents"]]
    if agents:
        parts.append(_agents_table(agents))
    if view["participants"]:
        parts.append(_participants_table(view["participants"]))
    if view["triggers"]:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(view["triggers"].items()))
        parts.append(Text(f"trigger jobs: {counts}  (controller triggers)"))
    for run in view.get("runs", ()):
        tasks = ", ".join(f"{n} {phase}" for phase, n in run["tasks"].items() if n)
        line = f"run {run['name']} ({run['workflow']}): {run['phase']}; {tasks}"
        parts.append(Text(f"{line}  (controller runs show {run['name']})"))
    return [*parts, *_notes(view)]


def _header(view: Mapping[str, Any]) -> list[Text]:
    """The workspace, where desired state was read, and whether it is valid."""
    lines = [Text(f"workspace {view['workspace']}  repo {view['repo']}")]
    desired = view.get("desired") or {}
    if desired.get("ref"):
        at = f"{desired['ref']} ({str(desired['commit'])[:12]})"
        lines.append(Text(f"desired {desired['folder']} as committed at {at}"))
    if not view["desiredValid"]:
        lines.append(
            Text.from_markup("[bold red]desired state is invalid[/]; showing the inventory only:")
        )
        lines.extend(Text(f"  {problem}") for problem in view["problems"])
    return lines


def _hosts(view: Mapping[str, Any]) -> list[Text]:
    """Many hosts: one line per host, its lease's state and its lanes."""
    lines = []
    for host in view.get("hosts") or ():
        me = " (this host)" if host["name"].lower() == str(view.get("host", "")).lower() else ""
        lease = f", lease until {host['leaseExpiresAt']}" if host["leaseExpiresAt"] else ""
        held = f", pid {host['pid']} on {host['machine']}" if host["pid"] else ""
        lanes = ", ".join(host["lanes"]) or "none"
        lines.append(Text(f"host {host['name']}{me}: {host['state']}{held}{lease}; lanes: {lanes}"))
    return lines


def _lanes_table(lanes: list[Mapping[str, Any]], *, hosted: bool = False) -> Table:
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    columns = ("LANE", "HOST", "PHASE", "BRANCH", "WORKTREE", "SYNC")
    for column in columns if hosted else (c for c in columns if c != "HOST"):
        table.add_column(column)
    for lane in lanes:
        sync = "in sync" if lane["inSync"] else "; ".join(lane["pendingActions"]) or "see below"
        host = (lane.get("host") or "-",) if hosted else ()
        row = (lane["phase"], lane["branch"] or "-", lane["worktree"], sync)
        table.add_row(lane["name"], *host, *row)
    return table


def _notes(view: Mapping[str, Any]) -> list[Text]:
    """Conditions, notices and a refusal, one ``!`` line each."""
    lines = [
        Text(f"  ! {lane['name']}: {c['type']} ({c['reason']}): {c['message']}")
        for lane in view["lanes"]
        for c in lane["conditions"]
    ]
    lines.extend(Text(f"  ! {notice}") for notice in view["notices"])
    if view.get("refused"):
        lines.append(Text(f"  ! refused: {view['refused']}"))
    return lines


def _agents_table(agents: list[tuple[str, Mapping[str, Any]]]) -> Table:
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for column in (
        "LANE",
        "PARTICIPANT",
        "RUNTIME",
        "STATE",
        "PID",
        "WHERE",
        "RESTARTS",
        "LAST EXIT",
        "HEARTBEAT",
    ):
        table.add_column(column)
    for lane, a in agents:
        age = a["heartbeatAge"]
        table.add_row(
            lane,
            a["participant"],
            a["runtime"],
            a["state"],
            str(a["pid"] or "-"),
            a["pane"] or a["log"] or "-",
            str(a["restarts"]),
            "-" if a["lastExit"] is None else str(a["lastExit"]),
            "-" if age is None else f"{age:.0f}s ago",
        )
    return table


def _participants_table(people: list[Mapping[str, Any]]) -> Table:
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for column in ("PARTICIPANT", "MANAGED", "UNREAD", "BLOCKED"):
        table.add_column(column)
    for p in people:
        unread = ", ".join(f"{t} {n}" for t, n in sorted(p["unread"].items())) or "-"
        blocked = p["reason"] if p["blocked"] else "-"
        table.add_row(p["name"], "yes" if p["managed"] else "no", unread, blocked)
    return table
