"""The controller's own tmux server: one per workspace, on its own ``-L`` socket.

Every call goes through the ``Runner`` (argv, timeout, counted), not libtmux: libtmux's
``tmux_cmd`` waits without a timeout, and a hung server must become *unknown*, not a hung
controller. Objects are addressed by id (``$1``, ``@2``, ``%3``), never by name: tmux matches
names by prefix and rewrites ``.`` and ``:``. The server's pid, create time and socket file are
recorded in ``.lanes/tmux-server.json``, so that a server whose socket file was deleted is
found again (and never replaced by a second one).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import anyio
import psutil

from controller import errors
from controller.core import lifecycle
from controller.system import proc

TIMEOUT = 10.0
# Printable on purpose: with LC_ALL=C tmux rewrites control characters in its output to "_".
# It never appears in ids or numbers; of the free-text fields, the start command (an agent's
# argv may hold anything) comes last and takes the rest of the line.
SEP = "|"
CONFIG = """\
# Written by the lane controller for its own tmux server. Agents' windows stay after their
# program exits so the exit status can be read; names are never rewritten by programs.
set -g remain-on-exit on
set -g allow-rename off
set -g automatic-rename off
set -g history-limit 20000
set -g exit-empty on
"""
PANE_FIELDS = (
    "#{session_id}",
    "#{window_id}",
    "#{pane_id}",
    "#{pane_pid}",
    "#{pane_dead}",
    "#{pane_dead_status}",
    "#{pane_dead_signal}",
    "#{window_activity}",
    "#{pane_in_mode}",
    "#{pid}",
    "#{session_name}",
    "#{pane_start_command}",
)
NO_SERVER = "no server running"
NO_SOCKET = "No such file or directory"
RECORD = "tmux-server.json"  # next to the configuration file, in .lanes/
RESTORE_WAIT = 2.0  # seconds for the server to recreate its socket after SIGUSR1
RESTORE_POLL = 0.05


@dataclass(frozen=True, slots=True)
class Probe:
    """A pane's state at one moment."""

    dead: bool
    in_mode: bool
    activity: int  # the window's last activity, epoch seconds
    cursor_y: int
    pid: int
    session_id: str


@dataclass(frozen=True, slots=True)
class Capture:
    """A pane's content at one moment, and how many rows its history held then."""

    history: int  # rows scrolled off the top of the screen (tmux's ``history_size``)
    text: str


@dataclass(frozen=True, slots=True)
class Created:
    """Ids and pid of a window just created."""

    session_id: str
    window_id: str
    pane_id: str
    pid: int
    server_pid: int | None = None


@dataclass(frozen=True, slots=True)
class ServerRecord:
    """The workspace's tmux server as last seen: its socket, its pid and create time."""

    socket: str  # the ``-L`` name
    path: str  # the socket file, as the server reported it
    pid: int
    created: float


@dataclass(slots=True)
class TmuxServer:
    """Commands against one tmux server."""

    runner: proc.Runner
    socket: str
    config: Path

    def argv(self, *args: str) -> tuple[str, ...]:
        """The full argv for a tmux command on this server."""
        return ("tmux", "-L", self.socket, "-f", str(self.config), *args)

    async def run(self, *args: str, timeout: float = TIMEOUT) -> proc.Completed:
        """Run one tmux command."""
        return await self.runner.run(self.argv(*args), timeout=timeout)

    def write_config(self) -> None:
        """Write the server configuration (read when the server starts)."""
        self.config.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.config.exists() or self.config.read_text() != CONFIG:
            self.config.write_text(CONFIG)

    async def list_panes(self) -> proc.Completed:
        """``list-panes -a`` with the fields the observer parses."""
        return await self.run("list-panes", "-a", "-F", SEP.join(PANE_FIELDS))

    async def sessions(self) -> dict[str, str]:
        """Session name -> id (exact names; empty when no server runs)."""
        done = await self.run("list-sessions", "-F", f"#{{session_id}}{SEP}#{{session_name}}")
        if not done.ok:
            return {}
        found: dict[str, str] = {}
        for line in done.stdout.splitlines():
            sid, sep, name = line.partition(SEP)
            if sep:
                found[name] = sid
        return found

    async def new_window(
        self,
        *,
        session: str,
        session_id: str | None,
        name: str,
        cwd: str,
        argv: Sequence[str],
    ) -> Created:
        """A window running ``argv`` (no shell), in a new or existing session."""
        fmt = SEP.join(("#{session_id}", "#{window_id}", "#{pane_id}", "#{pane_pid}", "#{pid}"))
        head: tuple[str, ...]
        if session_id is None:
            await self._reach_recorded()  # new-session would start a second server
            head = ("new-session", "-d", "-s", session, "-n", name, "-x", "200", "-y", "50")
        else:
            head = ("new-window", "-d", "-t", f"{session_id}:", "-n", name)
        literal = tuple(_literal(item) for item in argv)
        done = (await self.run(*head, "-c", cwd, "-P", "-F", fmt, "--", *literal)).check()
        sid, wid, pid_, ppid, server = done.stdout.strip().split(SEP, 4)
        await self.remember(int(server))
        return Created(sid, wid, pid_, int(ppid), int(server))

    async def kill_window(self, window_id: str) -> bool:
        """Close a window by id; False if it was already gone."""
        done = await self.run("kill-window", "-t", window_id)
        return done.ok

    async def kill_pane(self, pane_id: str) -> bool:
        """Close one pane by id (its window goes with its last pane); False if already gone."""
        done = await self.run("kill-pane", "-t", pane_id)
        return done.ok

    async def probe(self, pane_id: str) -> Probe | None:
        """A pane's live state right now, or None if it is gone."""
        fmt = SEP.join(
            (
                "#{pane_dead}",
                "#{pane_in_mode}",
                "#{window_activity}",
                "#{cursor_y}",
                "#{pane_pid}",
                "#{session_id}",
            )
        )
        done = await self.run("display-message", "-p", "-t", pane_id, fmt)
        parts = done.stdout.strip().split(SEP)
        if not done.ok or len(parts) != 6:
            return None
        dead, mode, activity, cursor, pid, session = parts
        return Probe(
            dead=dead == "1",
            in_mode=mode == "1",
            activity=int(activity or 0),
            cursor_y=int(cursor or 0),
            pid=int(pid or 0),
            session_id=session,
        )

    async def client_activity(self, session_id: str) -> int:
        """Latest activity (epoch seconds) of clients attached to the session; 0 if none."""
        done = await self.run("list-clients", "-t", session_id, "-F", "#{client_activity}")
        times = [int(x) for x in done.stdout.split() if x.isdigit()] if done.ok else []
        return max(times, default=0)

    async def capture(self, pane_id: str) -> str:
        """The visible content of a pane."""
        done = await self.run("capture-pane", "-p", "-t", pane_id)
        return done.stdout if done.ok else ""

    async def capture_pane(
        self, pane_id: str, *, lines: int, escapes: bool = False
    ) -> Capture | None:
        """The last ``lines`` rows of a pane's history and its screen, or None if it is gone.

        Wrapped lines are joined (``-J``). The history size is read by the same tmux call, so
        that two captures tell how far the history scrolled between them. ``escapes`` keeps
        the colours and attributes as escape sequences (``-e``).
        """
        size = ("display-message", "-p", "-t", pane_id, "#{history_size}", ";")
        flags = ("-e",) if escapes else ()
        done = await self.run(
            *size, "capture-pane", "-p", "-J", *flags, "-S", f"-{lines}", "-t", pane_id
        )
        history, _, text = done.stdout.partition("\n")
        if not done.ok or not history.strip().isdigit():
            return None
        return Capture(int(history), text)

    async def send_text(self, pane_id: str, text: str) -> bool:
        """Type ``text`` literally (no key names are interpreted)."""
        return (await self.run("send-keys", "-t", pane_id, "-l", "--", text)).ok

    async def send_enter(self, pane_id: str) -> bool:
        """Press Enter."""
        return (await self.run("send-keys", "-t", pane_id, "Enter")).ok

    async def kill_server(self) -> None:
        """Stop the whole server (tests, and `controller` teardown)."""
        await self.run("kill-server")

    @property
    def record_path(self) -> Path:
        """Where the server's identity is recorded (next to its configuration)."""
        return self.config.with_name(RECORD)

    def recorded(self) -> ServerRecord | None:
        """The recorded server of this socket name, if any (alive or not)."""
        try:
            data = json.loads(self.record_path.read_text())
            record = ServerRecord(
                str(data["socket"]), str(data["path"]), int(data["pid"]), float(data["created"])
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return record if record.socket == self.socket else None

    async def recorded_alive(self) -> ServerRecord | None:
        """The recorded server, if that very process (pid and create time) still runs."""
        record = await anyio.to_thread.run_sync(self.recorded)
        if record is None or not await anyio.to_thread.run_sync(is_running, record):
            return None
        return record

    async def remember(self, pid: int) -> None:
        """Record ``pid`` as the server (once per server: it asks tmux for its socket file)."""
        known = await anyio.to_thread.run_sync(self.recorded)
        if known is not None and known.pid == pid:
            return
        done = await self.run("display-message", "-p", "#{socket_path}")
        created = await anyio.to_thread.run_sync(_create_time, pid)
        if done.ok and created is not None:
            record = ServerRecord(self.socket, done.stdout.strip(), pid, created)
            await anyio.to_thread.run_sync(_write_record, self.record_path, record)

    async def restore_socket(self, record: ServerRecord) -> bool:
        """Make a live server recreate its deleted socket file (tmux does on SIGUSR1).

        True once the file is back. The signal goes only to the recorded process (pid and
        create time checked): SIGUSR1 ends most other programs.
        """
        if not await anyio.to_thread.run_sync(_send_usr1, record):
            return False
        socket = anyio.Path(record.path)
        for _ in range(int(RESTORE_WAIT / RESTORE_POLL)):
            if await socket.exists():
                return True
            await anyio.sleep(RESTORE_POLL)
        return await socket.exists()

    async def _reach_recorded(self) -> None:
        """Before starting a server: a recorded one that runs without its socket is revived,
        or nothing is started (a second server would take the socket and orphan its agents)."""
        record = await self.recorded_alive()
        if record is None or await anyio.Path(record.path).exists():
            return
        if not await self.restore_socket(record):
            raise errors.CommandFailed(self.argv("new-session"), 1, lost_socket(record))


def is_running(record: ServerRecord) -> bool:
    """Whether the recorded tmux server still runs (the same process: pid and create time)."""
    try:
        server = psutil.Process(record.pid)
        same = abs(server.create_time() - record.created) <= lifecycle.CREATE_TIME_TOLERANCE
        return same and server.status() != psutil.STATUS_ZOMBIE and "tmux" in server.name()
    except psutil.Error:
        return False


def lost_socket(record: ServerRecord) -> str:
    """Why a server that runs cannot be reached, and what to do about it."""
    return (
        f"tmux server pid {record.pid} is alive but its socket {record.path} is gone, and "
        "SIGUSR1 did not bring it back; nothing is started or stopped until it answers. Check "
        "that every command runs with the same TMUX_TMPDIR, or stop the server (its agents "
        f"with it) with `kill {record.pid}`"
    )


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _send_usr1(record: ServerRecord) -> bool:
    # tmux recreates the socket but not the folders above it.
    Path(record.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not is_running(record):
        return False
    os.kill(record.pid, signal.SIGUSR1)
    return True


def _write_record(path: Path, record: ServerRecord) -> None:
    # Lanes start agents in parallel and each may see the server first: a name of its own
    # per writer, or one writer's rename takes the file from under another's.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    temporary.write_text(json.dumps(asdict(record)))
    temporary.replace(path)


def no_server(stderr: str) -> bool:
    """Whether tmux's error means "no server is running" (an empty, *known* state)."""
    return NO_SERVER in stderr or ("error connecting to" in stderr and NO_SOCKET in stderr)


def _literal(item: str) -> str:
    """An argv item tmux passes on as it is: tmux ends a command at an argument ending in
    ``;`` (and turns a final ``\\;`` into ``;``), so a final ``;`` is written ``\\;``."""
    return item[:-1] + "\\;" if item.endswith(";") else item
