"""Observe the controller's tmux server with one ``list-panes -a`` per pass.

"No server running" is a known, empty state (the server exits with its last session, or was
killed: agents are then restarted), unless the recorded server still runs: then its socket file
was deleted, it is asked to recreate it (SIGUSR1) and read again, and stays *unknown* if it
does not answer. Anything else that fails, or a server that does not answer in time, is
*unknown*: nothing is respawned or killed on it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from controller import errors
from controller.core import strays, world
from controller.system import proc, tmuxserver


def parse_panes(text: str) -> tuple[world.Pane, ...]:
    """Parse ``list-panes -a -F`` output made with ``tmuxserver.PANE_FIELDS``."""
    panes = []
    for line in text.splitlines():
        fields = line.split(tmuxserver.SEP, len(tmuxserver.PANE_FIELDS) - 1)
        if len(fields) != len(tmuxserver.PANE_FIELDS):
            continue
        sid, wid, pid_, pane_pid, dead, status, signal, activity, mode, server, sname, cmd = fields
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
                binding=strays.binding_of(cmd),
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
    done = await _list(server)
    if isinstance(done, world.Unknown):
        return done
    if done.ok:
        return await _seen(server, parse_panes(done.stdout))
    if tmuxserver.no_server(done.stderr):
        return await _no_server(server)
    return world.Unknown(f"tmux list-panes exited {done.rc}: {done.stderr.strip()[:300]}")


async def _list(server: tmuxserver.TmuxServer) -> proc.Completed | world.Unknown:
    try:
        return await server.list_panes()
    except errors.CommandFailed as exc:
        if exc.rc == 127:
            return world.Unknown("tmux is not installed (apt-get install tmux)")
        return world.Unknown(str(exc))


async def _no_server(server: tmuxserver.TmuxServer) -> tuple[world.Pane, ...] | world.Unknown:
    """No server answers on the socket: empty, unless the recorded server still runs."""
    record = await server.recorded_alive()
    if record is None:
        return ()
    if await server.restore_socket(record):
        done = await _list(server)
        if not isinstance(done, world.Unknown) and done.ok:
            return await _seen(server, parse_panes(done.stdout))
    return world.Unknown(tmuxserver.lost_socket(record))


async def _seen(
    server: tmuxserver.TmuxServer, panes: tuple[world.Pane, ...]
) -> tuple[world.Pane, ...] | world.Unknown:
    """The panes, once the server that answered is known to be the workspace's."""
    pid = next((p.server_pid for p in panes if p.server_pid), None)
    if pid is None:
        return panes
    record = await server.recorded_alive()
    if record is not None and record.pid != pid:
        return world.Unknown(
            f"two tmux servers for socket {server.socket}: pid {pid} answers on it, but the "
            f"workspace's server pid {record.pid} still runs, its agents out of reach; stop one "
            f"of them (`kill {pid}` or `kill {record.pid}`, with its agents)"
        )
    await server.remember(pid)
    return panes
