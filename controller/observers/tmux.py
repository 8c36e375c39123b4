"""Observe the controller's tmux server with one ``list-panes -a`` per pass.

"No server running" is a known, empty state (the server exits with its last session, or was
killed: agents are then restarted). Anything else that fails, or a server that does not answer
in time, is *unknown*: nothing is respawned or killed on it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from controller import errors
from controller.core import world
from controller.system import tmuxserver


def parse_panes(text: str) -> tuple[world.Pane, ...]:
    """Parse ``list-panes -a -F`` output made with ``tmuxserver.PANE_FIELDS``."""
    panes = []
    for line in text.splitlines():
        fields = line.split(tmuxserver.SEP, len(tmuxserver.PANE_FIELDS) - 1)
        if len(fields) != len(tmuxserver.PANE_FIELDS):
            continue
        sid, wid, pid_, pane_pid, dead, status, signal, activity, mode, server, sname = fields
        panes.append(
            world.Pane(
                session_id=sid,
                window_id=wid,
                pane_id=pid_,
                pid=int(pane_pid) if pane_pid.isdigit() else None,
                dead=dead == "1",
                dead_status=_status(status, signal) if dead == "1" else None,
                activity=_epoch(activity),
                in_mode=mode == "1",
                server_pid=_int(server),
                session_name=sname,
            )
        )
    return tuple(panes)


def _status(status: str, signal: str) -> int | None:
    """The exit status, with a death by signal N shown as 128 + N (as shells do)."""
    if status:
        return _int(status)
    number = _int(signal)
    return 128 + number if number else None


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _epoch(text: str) -> datetime | None:
    seconds = _int(text)
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


async def observe_panes(server: tmuxserver.TmuxServer) -> tuple[world.Pane, ...] | world.Unknown:
    """Every pane of the server; empty when no server runs; Unknown when it cannot be read."""
    try:
        done = await server.list_panes()
    except errors.CommandFailed as exc:
        if exc.rc == 127:
            return world.Unknown("tmux is not installed (apt-get install tmux)")
        return world.Unknown(str(exc))
    if done.ok:
        return parse_panes(done.stdout)
    if tmuxserver.no_server(done.stderr):
        return ()
    return world.Unknown(f"tmux list-panes exited {done.rc}: {done.stderr.strip()[:300]}")
