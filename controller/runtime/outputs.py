"""Where an agent's output is, and reading it: its tmux pane (history included) or the log
files of ``runtime: process`` (stdout, and stderr of workflow tasks), the last lines first,
then, when following, only what is new.

Reading changes nothing: no lock, no event. Everything shown is cleaned of escape sequences
and control characters (``core.scrollback``) unless the caller asks for the raw text.
"""

from __future__ import annotations

import codecs
import enum
import os
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import anyio

from controller import errors
from controller.core import scrollback, world
from controller.spec.state import DesiredState
from controller.system import tmuxserver

POLL = 0.5  # seconds between looks while following
FOLLOW_WINDOW = 200  # rows of pane history compared between looks while following
BLOCK = 64 * 1024  # bytes read backwards at a time to find a log's last lines
MAX_READ = 1024 * 1024  # bytes of a log read per look (a faster writer is caught up later)
STDOUT, STDERR = ".log", ".err"


class NoOutput(errors.ControllerError):
    """The lane or participant is unknown, ambiguous, or has no output to show."""


class Kind(enum.StrEnum):
    """Where a participant's output is."""

    PANE = "pane"
    FILES = "files"


@dataclass(frozen=True, slots=True)
class Source:
    """One participant's output: a pane by id, or log files (stdout first)."""

    lane: str
    participant: str
    kind: Kind
    pane_id: str | None = None
    files: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class Piece:
    """Text to show, from one origin (a pane id or a file); a note is the controller's."""

    origin: str
    text: str
    note: bool = False


@dataclass(frozen=True, slots=True)
class Known:
    """What the workspace knows of lanes and their participants' output."""

    agents: tuple[world.AgentRecord, ...] = ()
    bindings: Mapping[str, frozenset[str]] = field(default_factory=dict)  # lane -> participants
    logs: Mapping[str, Mapping[str, tuple[Path, ...]]] = field(default_factory=dict)
    lanes: frozenset[str] = frozenset()  # declared or recorded lanes (maybe without agents)

    def all_lanes(self) -> list[str]:
        """Every lane with a name anywhere: declared, recorded, with an agent or a log."""
        named = {*self.lanes, *self.bindings, *self.logs, *(a.lane for a in self.agents)}
        return sorted(named)

    def participants(self, lane: str) -> list[str]:
        """The lane's participants: bound, recorded or with a log."""
        recorded = {a.participant for a in self.agents if a.lane == lane}
        logged = set(self.logs.get(lane, {}))
        return sorted(recorded | self.bindings.get(lane, frozenset()) | logged)


def known(
    desired: DesiredState,
    *,
    agents: Iterable[world.AgentRecord],
    lanes: Iterable[str],
    logs_dir: Path,
) -> Known:
    """Gather what ``find`` chooses from (reads the logs folder)."""
    bindings: dict[str, set[str]] = {}
    for binding in desired.bindings.values():
        bindings.setdefault(binding.spec.lane, set()).add(binding.spec.participant)
    return Known(
        agents=tuple(agents),
        bindings={lane: frozenset(names) for lane, names in bindings.items()},
        logs=_log_files(logs_dir),
        lanes=frozenset([*desired.lanes, *lanes]),
    )


def _log_files(logs_dir: Path) -> dict[str, dict[str, tuple[Path, ...]]]:
    """``<lane>/<participant>.log`` (and ``.err``); an earlier attempt's rotated logs aside."""
    found: dict[str, dict[str, tuple[Path, ...]]] = {}
    if not logs_dir.is_dir():
        return found
    for lane in sorted(p for p in logs_dir.iterdir() if p.is_dir()):
        for log in sorted(lane.glob(f"*{STDOUT}")):
            if ".attempt-" not in log.stem:
                found.setdefault(lane.name, {})[log.stem] = files_of(log)
    return found


def files_of(log: Path) -> tuple[Path, ...]:
    """A log, and its stderr beside it when there is one (workflow tasks split them)."""
    err = log.with_suffix(STDERR)
    return (log, err) if err.exists() else (log,)


def find(lane: str, participant: str | None, *, known: Known) -> Source:
    """The output to show for ``participant`` (or the lane's only one), or ``NoOutput``."""
    lanes = known.all_lanes()
    if lane not in lanes:
        raise NoOutput(f"unknown lane {lane} (lanes: {', '.join(lanes) or 'none'})")
    names = known.participants(lane)
    if participant is None:
        if len(names) != 1:
            raise NoOutput(_choose(lane, names))
        participant = names[0]
    elif participant not in names:
        listed = ", ".join(names) or "none"
        raise NoOutput(f"{participant} has no agent in lane {lane} (participants: {listed})")
    return _source(lane, participant, known=known)


def _choose(lane: str, names: Sequence[str]) -> str:
    if not names:
        return f"lane {lane} has no agent: no Binding names it and no agent ran there"
    return (
        f"lane {lane} has {len(names)} participants ({', '.join(names)}); name one: "
        f"controller logs {lane} PARTICIPANT"
    )


def _source(lane: str, participant: str, *, known: Known) -> Source:
    record = next(
        (a for a in known.agents if a.lane == lane and a.participant == participant), None
    )
    base = Source(lane, participant, Kind.FILES)
    if record is not None and record.runtime == "tmux":
        if record.pane_id is None:
            raise NoOutput(
                f"{participant}'s pane in lane {lane} was closed when its agent stopped; "
                "tmux keeps no output after that"
            )
        return replace(base, kind=Kind.PANE, pane_id=record.pane_id)
    if record is not None and record.log_path:
        return replace(base, files=files_of(Path(record.log_path)))
    logged = known.logs.get(lane, {}).get(participant)
    if logged:
        return replace(base, files=logged)
    raise NoOutput(f"{participant} in lane {lane} has not started yet: no output")


# -- reading ----------------------------------------------------------------------------------


async def stream(
    source: Source,
    *,
    tmux: tmuxserver.TmuxServer | None,
    lines: int,
    raw: bool,
    follow: bool,
    poll: float = POLL,
) -> AsyncIterator[Piece]:
    """The last ``lines`` lines of the output, then (following) what is new, until cancelled."""
    if source.kind is Kind.PANE:
        assert source.pane_id is not None
        assert tmux is not None
        pane = _Pane(tmux, source.pane_id, raw=raw, window=max(lines, FOLLOW_WINDOW))
        async for piece in pane.stream(lines=lines, follow=follow, poll=poll):
            yield piece
    else:
        async for piece in _files(source.files, lines=lines, raw=raw, follow=follow, poll=poll):
            yield piece


async def _files(
    files: Sequence[Path], *, lines: int, raw: bool, follow: bool, poll: float
) -> AsyncIterator[Piece]:
    logs = [_Log(path, raw=raw) for path in files]
    for log in logs:
        last = await anyio.to_thread.run_sync(log.tail, lines)
        if last is not None:
            yield last
    while follow:
        await anyio.sleep(poll)
        for log in logs:
            for piece in await anyio.to_thread.run_sync(log.more):
                yield piece


@dataclass(slots=True)
class _Pane:
    """Captures of one pane, compared look after look."""

    tmux: tmuxserver.TmuxServer
    pane_id: str
    raw: bool
    window: int
    shown: tuple[str, ...] = ()
    top: int = 0

    async def stream(self, *, lines: int, follow: bool, poll: float) -> AsyncIterator[Piece]:
        first = await self._capture(self.window if follow else lines)
        if first is None:
            raise NoOutput(f"pane {self.pane_id} is gone (or its tmux server is not running)")
        last = first[-lines:] if lines else ()
        if last:
            yield Piece(self.pane_id, _joined(last))
        while follow:
            await anyio.sleep(poll)
            before, top = self.shown, self.top
            current = await self._capture(self.window)
            if current is None:
                yield Piece(self.pane_id, f"pane {self.pane_id} is gone", note=True)
                return
            moved = self.top - top
            new = scrollback.fresh(before, current, scrolled=moved if moved >= 0 else None)
            if new.skipped:
                yield Piece(self.pane_id, "more lines scrolled by than one look holds", note=True)
            if new.lines:
                yield Piece(self.pane_id, _joined(new.lines))

    async def _capture(self, rows: int) -> tuple[str, ...] | None:
        capture = await self.tmux.capture_pane(self.pane_id, lines=rows, escapes=self.raw)
        if capture is None:
            return None
        text = capture.text if self.raw else scrollback.clean(capture.text)
        self.shown = scrollback.screen_lines(text)
        self.top = scrollback.window_top(capture.history, rows)
        return self.shown


def _joined(lines: Sequence[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


@dataclass(slots=True)
class _Log:
    """One log file read from where the last read stopped (in a worker thread)."""

    path: Path
    raw: bool
    offset: int = 0
    inode: int | None = None
    pending: str = ""  # the end of the last read: an escape sequence cut in two
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace")
    )

    def tail(self, count: int) -> Piece | None:
        """The file's last ``count`` lines (None if it does not exist yet)."""
        try:
            with self.path.open("rb") as handle:
                self.inode = os.fstat(handle.fileno()).st_ino
                data, self.offset = _last_bytes(handle, count)
        except FileNotFoundError:
            return None
        decoded = self._decoded(data)
        last = scrollback.last_lines(decoded, count)
        if not last:
            return None
        # A last line not ended yet is continued by what follows: no line break of our own.
        ended = decoded.endswith("\n")
        return Piece(str(self.path), "\n".join(last) + ("\n" if ended else ""))

    def more(self) -> list[Piece]:
        """What was appended since the last read; a replaced or truncated file from its start."""
        try:
            with self.path.open("rb") as handle:
                return self._read(handle)
        except FileNotFoundError:
            return []

    def _read(self, handle: BinaryIO) -> list[Piece]:
        pieces: list[Piece] = []
        status = os.fstat(handle.fileno())
        if self.inode is not None and (status.st_ino != self.inode or status.st_size < self.offset):
            note = f"{self.path} was replaced or truncated; reading it from its start"
            pieces.append(Piece(str(self.path), note, note=True))
            self.offset, self.pending = 0, ""
            self.decoder.reset()
        self.inode = status.st_ino
        if status.st_size > self.offset:
            handle.seek(self.offset)
            data = handle.read(min(status.st_size - self.offset, MAX_READ))
            self.offset += len(data)
            text = self._decoded(data)
            if text:
                pieces.append(Piece(str(self.path), text))
        return pieces

    def _decoded(self, data: bytes) -> str:
        text = self.pending + self.decoder.decode(data)
        if self.raw:
            self.pending = ""
            return text
        cut = scrollback.complete(text)
        self.pending = text[cut:]
        return scrollback.clean(text[:cut])


def _last_bytes(handle: BinaryIO, count: int) -> tuple[bytes, int]:
    """Enough of the end of an open file to hold its last ``count`` lines, and its size."""
    end = handle.seek(0, os.SEEK_END)
    start, data = end, b""
    while start > 0 and data.count(b"\n") <= count:
        step = min(BLOCK, start)
        start -= step
        handle.seek(start)
        data = handle.read(step) + data
    return data, end
