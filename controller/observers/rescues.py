"""Observe what removals saved: rescue refs (``refs/lanes/rescue/``, and the refs of
repositories that were inside lanes, ``refs/lanes/rescue-inner/``) and the folders under
``.lanes/quarantine/``, with what each holds.

One ``git for-each-ref`` lists every rescue; each costs two ``git diff-tree`` calls (against
its first parent; against its index commit, for the untracked files), a few at a time; one
``git rev-list`` finds, for all of them at once, the commits that are on no branch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import anyio

from controller.core import rescues
from controller.system import git as gitseam
from controller.system import proc

TIMEOUT = 120.0
PARALLEL = 4  # git calls at a time
FORMAT = "--format=%(refname)%00%(objectname)%00%(parent)%00%(contents)%00"


@dataclass(frozen=True, slots=True)
class Change:
    """One path a rescue changed against its first parent: ``A``, ``M``, ``D`` or ``T``."""

    status: str
    path: str


@dataclass(frozen=True, slots=True)
class Rescue:
    """One rescue ref and what it holds."""

    name: rescues.Name
    commit: str
    base: str  # the first parent (the worktree's HEAD), or the empty tree
    index: str | None  # the commit of the worktree's index; None when it held a conflict
    branch: str | None  # as the rescue's message names it; None when detached
    changes: tuple[Change, ...] = ()
    untracked: tuple[str, ...] | None = ()  # None: unknown (no index commit)
    commits: int = 0  # commits of its first parent's history that are on no branch
    inner: tuple[str, ...] = ()  # refs of repositories that were inside the worktree


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A folder of ``.lanes/quarantine/``: ignored files, or a folder git no longer knew."""

    path: Path
    lane: str
    at: datetime | None
    files: int
    size: int  # bytes (symlinks count as themselves, never followed)


@dataclass(frozen=True, slots=True)
class Found:
    """Every rescue and quarantine folder (of one lane, or all)."""

    refs: tuple[Rescue, ...]
    quarantine: tuple[Quarantined, ...]
    stray_inner: tuple[str, ...] = ()  # inner refs of no rescue (a removal cut short)


@dataclass(frozen=True, slots=True)
class Listed:
    """One line of ``for-each-ref``: a ref, its commit, parents and message."""

    ref: str
    commit: str
    parents: tuple[str, ...]
    message: str


def parse_refs(text: str) -> tuple[Listed, ...]:
    """Parse ``for-each-ref`` with ``FORMAT`` (records end with NUL and a line break)."""
    found = []
    for record in text.split("\0\n"):
        fields = record.split("\0")
        if len(fields) >= 4:
            ref, commit, parents = fields[0], fields[1], fields[2]
            found.append(Listed(ref, commit, tuple(parents.split()), "\0".join(fields[3:])))
    return tuple(found)


def parse_name_status(text: str) -> tuple[Change, ...]:
    """Parse ``git diff-tree -r -z --name-status`` (status and path, NUL apart)."""
    fields = text.split("\0")
    return tuple(
        Change(status[:1], path)
        for status, path in zip(fields[::2], fields[1::2], strict=False)
        if status
    )


def count_unique(tips: Iterable[str], graph: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """For each tip, how many commits of ``graph`` (those on no branch) it reaches."""
    counts = {}
    for tip in tips:
        seen: set[str] = set()
        todo = [tip]
        while todo:
            commit = todo.pop()
            if commit in graph and commit not in seen:
                seen.add(commit)
                todo.extend(graph[commit])
        counts[tip] = len(seen)
    return counts


def parse_graph(text: str) -> dict[str, tuple[str, ...]]:
    """Parse ``git rev-list --parents`` (a commit, then its parents, per line)."""
    graph = {}
    for line in text.splitlines():
        commit, *parents = line.split()
        graph[commit] = tuple(parents)
    return graph


async def observe(runner: proc.Runner, repo: Path, *, quarantine: Path, lane: str | None) -> Found:
    """Every rescue ref and quarantine folder of ``lane`` (or of every lane)."""
    listed = parse_refs(await _git(runner, repo, "for-each-ref", FORMAT, *_patterns(lane)))
    outer = [_rescue(item) for item in listed if item.ref.startswith(rescues.RESCUE)]
    found = [r for r in outer if r is not None]
    inner = [item.ref for item in listed if item.ref.startswith(rescues.INNER)]
    found, stray = _with_inner(found, inner)
    limiter = anyio.CapacityLimiter(PARALLEL)
    filled: list[Rescue] = []

    async def fill(rescue: Rescue) -> None:
        async with limiter:
            filled.append(await _contents(runner, repo, rescue=rescue))

    async with anyio.create_task_group() as group:
        for rescue in found:
            group.start_soon(fill, rescue)
    counted = await _commits(runner, repo, found=filled)
    folders = await anyio.to_thread.run_sync(_folders, quarantine, lane)
    ordered = sorted(counted, key=lambda r: (r.name.lane, r.name.leaf))
    return Found(tuple(ordered), folders, tuple(sorted(stray)))


def _patterns(lane: str | None) -> tuple[str, str]:
    suffix = f"{lane}/" if lane else ""
    return f"{rescues.RESCUE}{suffix}", f"{rescues.INNER}{suffix}"


def _rescue(item: Listed) -> Rescue | None:
    name = rescues.parse_ref(item.ref)
    if name is None:
        return None
    base, index = rescues.parents(item.commit, item.parents, message=item.message)
    branch = rescues.branch_of(item.message)
    return Rescue(name, item.commit, base, index, branch)


def _with_inner(found: list[Rescue], inner: Sequence[str]) -> tuple[list[Rescue], list[str]]:
    """Each rescue with the inner refs of its lane and leaf; and those of no rescue."""
    by_name = {(r.name.lane, r.name.leaf): r for r in found}
    owned: dict[tuple[str, str], list[str]] = {}
    stray = []
    for ref in inner:
        name = rescues.parse_inner(ref)
        key = (name.lane, name.leaf) if name else None
        if key is not None and key in by_name:
            owned.setdefault(key, []).append(ref)
        else:
            stray.append(ref)
    kept = [replace(r, inner=tuple(sorted(owned.get(key, ())))) for key, r in by_name.items()]
    return kept, stray


async def _contents(runner: proc.Runner, repo: Path, *, rescue: Rescue) -> Rescue:
    diff = ("diff-tree", "-r", "-z", "--no-renames")
    changed = await _git(runner, repo, *diff, "--name-status", rescue.base, rescue.commit)
    untracked: tuple[str, ...] | None = None
    if rescue.index is not None:
        added = ("--name-only", "--diff-filter=A", rescue.index, rescue.commit)
        untracked = tuple(p for p in (await _git(runner, repo, *diff, *added)).split("\0") if p)
    return replace(rescue, changes=parse_name_status(changed), untracked=untracked)


async def _commits(runner: proc.Runner, repo: Path, *, found: Sequence[Rescue]) -> list[Rescue]:
    """Each rescue with the number of commits its first parent reaches that no branch has."""
    tips = sorted({r.base for r in found if r.base not in rescues.EMPTY_TREE.values()})
    if not tips:
        return list(found)
    listing = await _git(runner, repo, "rev-list", "--parents", *tips, "--not", "--branches")
    counts = count_unique(tips, parse_graph(listing))
    return [replace(r, commits=counts.get(r.base, 0)) for r in found]


def _folders(quarantine: Path, lane: str | None) -> tuple[Quarantined, ...]:
    if not quarantine.is_dir():
        return ()
    found = []
    for entry in sorted(quarantine.iterdir()):
        owner, at = rescues.parse_folder(entry.name)
        if lane is None or owner == lane:
            files, size = _size(entry)
            found.append(Quarantined(entry, owner, at, files, size))
    return tuple(found)


def _size(path: Path) -> tuple[int, int]:
    """Files (symlinks included, never followed) and bytes under ``path``."""
    if not path.is_dir() or path.is_symlink():
        return 1, path.lstat().st_size
    files, size = 0, 0
    for root, dirs, names in os.walk(path):
        links = [d for d in dirs if (Path(root) / d).is_symlink()]  # listed, not walked
        for name in (*names, *links):
            files += 1
            size += (Path(root) / name).lstat().st_size
    return files, size


async def _git(runner: proc.Runner, repo: Path, *args: str) -> str:
    return await gitseam.Git(runner, repo, timeout=TIMEOUT).text(*args, strip=False)
