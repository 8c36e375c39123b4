"""Rescues as values: the names of rescue refs and quarantine folders, what a rescue commit's
parents mean, and which files a restore may write or delete without losing anyone's work.

A rescue commit (``executors/rescue.py``) has the worktree's HEAD as first parent and a commit
of its index as second; on an unborn branch the index commit is its only parent, and when the
index held a conflict there is none. A restore writes a file only where the target still has
the first parent's version (or nothing), and deletes one only where it is unchanged. Pure:
never I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

RESCUE = "refs/lanes/rescue/"
INNER = "refs/lanes/rescue-inner/"
STAMP = "%Y%m%dT%H%M%SZ"
GITLINK = "160000"
NO_INDEX = "The index held a conflict"  # written in the message when there is no index commit
EMPTY_TREE = {
    40: "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    64: "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321",
}
_LEAF = re.compile(r"(?P<stamp>\d{8}T\d{6}Z)(?:-\d+)?")
_FOLDER = re.compile(r"(?P<lane>.+)-(?P<stamp>\d{8}T\d{6}Z)(?:-\d+)?")
_LANE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class Name:
    """What a rescue ref's name says: its lane and leaf (``<UTC time>[-n]``)."""

    lane: str
    leaf: str
    at: datetime | None

    @property
    def ref(self) -> str:
        """The rescue ref itself."""
        return f"{RESCUE}{self.lane}/{self.leaf}"


def parse_ref(ref: str) -> Name | None:
    """``refs/lanes/rescue/<lane>/<leaf>`` (or ``<lane>/<leaf>``), or None if it is not one."""
    lane, sep, leaf = ref.removeprefix(RESCUE).partition("/")
    if not sep or not _LANE.fullmatch(lane) or "/" in leaf or not leaf:
        return None
    return Name(lane, leaf, stamp_time(leaf))


def parse_inner(ref: str) -> Name | None:
    """The rescue ``refs/lanes/rescue-inner/<lane>/<leaf>/...`` belongs to, or None."""
    if not ref.startswith(INNER):
        return None
    parts = ref.removeprefix(INNER).split("/")
    if len(parts) < 3:
        return None
    return Name(parts[0], parts[1], stamp_time(parts[1]))


def parse_folder(name: str) -> tuple[str, datetime | None]:
    """The lane and time of a quarantine folder ``<lane>-<UTC time>[-n]`` (lane "" if odd)."""
    found = _FOLDER.fullmatch(name)
    if found is None:
        return "", None
    return found["lane"], _time(found["stamp"])


def stamp_time(leaf: str) -> datetime | None:
    """The time in a leaf ``<UTC time>[-n]``, or None."""
    found = _LEAF.fullmatch(leaf)
    return _time(found["stamp"]) if found else None


def _time(stamp: str) -> datetime | None:
    try:
        return datetime.strptime(stamp, STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def parents(commit: str, listed: Sequence[str], *, message: str) -> tuple[str, str | None]:
    """The first parent (HEAD, or the empty tree on an unborn branch) and the index commit."""
    empty = EMPTY_TREE.get(len(commit), EMPTY_TREE[40])
    if len(listed) >= 2:
        return listed[0], listed[1]
    if not listed:
        return empty, None
    if NO_INDEX in message:
        return listed[0], None
    return empty, listed[0]


def branch_of(message: str) -> str | None:
    """The branch a rescue message names (``Branch: lane/auth``), None when detached."""
    for line in message.splitlines():
        if line.startswith("Branch: "):
            name = line.removeprefix("Branch: ").split(" (", 1)[0].strip()
            return None if name.startswith("(") else name
    return None


# -- restore ----------------------------------------------------------------------------------


class Found(enum.StrEnum):
    """What a target folder has at a path."""

    MISSING = "missing"
    FILE = "file"
    LINK = "symlink"
    DIR = "folder"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Entry:
    """One change of a rescue against its first parent (``git diff-tree --raw``)."""

    status: str  # A, M, D or T
    old_mode: str
    new_mode: str
    old_sha: str
    new_sha: str
    path: str

    @property
    def base(self) -> tuple[str, str] | None:
        """Mode and object of the first parent's version (None: it had none)."""
        return None if self.status == "A" else (self.old_mode, self.old_sha)

    @property
    def wanted(self) -> tuple[str, str] | None:
        """Mode and object of the rescued version (None: the rescue deleted it)."""
        return None if self.status == "D" else (self.new_mode, self.new_sha)


@dataclass(frozen=True, slots=True)
class Seen:
    """A target's entry at a path: its kind, and for files and links mode and object."""

    kind: Found
    mode: str = ""
    sha: str = ""
    inside: tuple[str, ...] = ()  # a folder's files (paths relative to the target)


@dataclass(frozen=True, slots=True)
class Conflict:
    """A path a restore would overwrite or delete someone's work at, and why."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class Restore:
    """What a restore writes, deletes, leaves (already as rescued), skips, or refuses on."""

    write: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # submodules: inner repositories are not restored
    conflicts: tuple[Conflict, ...] = ()


def parse_raw(text: str) -> tuple[Entry, ...]:
    """Parse ``git diff-tree -r -z --no-renames`` (raw format)."""
    fields = text.split("\0")
    entries = []
    for info, path in zip(fields[::2], fields[1::2], strict=False):
        parts = info.lstrip(":").split(" ")
        if len(parts) == 5:
            old_mode, new_mode, old_sha, new_sha, status = parts
            entries.append(Entry(status[:1], old_mode, new_mode, old_sha, new_sha, path))
    return tuple(entries)


def leading(path: str) -> tuple[str, ...]:
    """The folders a path lies in, outermost first (``a/b/c`` -> ``a``, ``a/b``)."""
    parts = path.split("/")
    return tuple("/".join(parts[:i]) for i in range(1, len(parts)))


class Verdict(enum.StrEnum):
    """What a restore does at one path (a conflict is a reason instead)."""

    WRITE = "write"
    DELETE = "delete"
    SAME = "same"  # already as rescued


def decide(
    entries: Sequence[Entry], seen: Mapping[str, Seen], *, folders: Mapping[str, Found]
) -> Restore:
    """Which files to write and delete to bring the rescued work back, or why not.

    ``seen`` is the target at each entry's path, ``folders`` at each folder they lie in. A
    file is written where the target has the first parent's version or nothing, deleted where
    it has the first parent's version; one already as rescued is left. Anything else is the
    target's own work: a conflict. A folder in the way is a conflict unless the restore
    deletes every file in it; a file or symlink where a folder should be, unless it deletes it.
    """
    verdicts = {e.path: _verdict(e, seen[e.path]) for e in entries if not _submodule(e)}
    delete = {path for path, verdict in verdicts.items() if verdict is Verdict.DELETE}
    conflicts = []
    for path, verdict in verdicts.items():
        if not isinstance(verdict, Verdict):
            conflicts.append(Conflict(path, verdict))
            continue
        if verdict is Verdict.SAME:
            continue  # nothing is done there
        writes = verdict is Verdict.WRITE
        reason = _in_the_way(path, seen[path], folders=folders, delete=delete, writes=writes)
        if reason is not None:
            conflicts.append(Conflict(path, reason))

    refused = {c.path for c in conflicts}

    def having(verdict: Verdict) -> tuple[str, ...]:
        return tuple(sorted(p for p, v in verdicts.items() if v is verdict and p not in refused))

    return Restore(
        write=having(Verdict.WRITE),
        delete=having(Verdict.DELETE),
        unchanged=having(Verdict.SAME),
        skipped=tuple(sorted(e.path for e in entries if _submodule(e))),
        conflicts=tuple(sorted(conflicts, key=lambda c: c.path)),
    )


def _submodule(entry: Entry) -> bool:
    return GITLINK in (entry.old_mode, entry.new_mode)


def _verdict(entry: Entry, seen: Seen) -> Verdict | str:
    """What to do at the entry's path, or why nothing may be done there (a conflict)."""
    if seen.kind is Found.MISSING:
        return Verdict.WRITE if entry.wanted else Verdict.SAME
    if seen.kind is Found.DIR:
        return Verdict.WRITE if entry.wanted else "is a folder in the target"
    if seen.kind is Found.OTHER:
        return "is neither a file nor a symlink in the target"
    current = (seen.mode, seen.sha)
    if current == entry.wanted:
        return Verdict.SAME
    if current == entry.base:
        return Verdict.WRITE if entry.wanted else Verdict.DELETE
    if entry.base is None:
        return "exists in the target with other content"
    return "changed in the target since the rescue's first parent"


def _in_the_way(
    path: str,
    seen: Seen,
    *,
    folders: Mapping[str, Found],
    delete: set[str],
    writes: bool,
) -> str | None:
    for folder in leading(path):
        kind = folders.get(folder, Found.MISSING)
        if kind in (Found.FILE, Found.LINK) and folder in delete:
            return None  # deleted first; nothing deeper exists yet
        if kind in (Found.FILE, Found.LINK):
            return f"{folder} is a {kind} in the target, not a folder"
        if kind is Found.OTHER:
            return f"{folder} is not a folder in the target"
    if writes and seen.kind is Found.DIR and not set(seen.inside) <= delete:
        return "a folder holding other files is in the way"
    return None
