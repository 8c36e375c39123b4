"""Moving things out of a worktree into ``.lanes/quarantine/``, content intact, never deleted.

Ignored files (``.env``, build output) are not in rescue commits; before a worktree goes they
are renamed into ``.lanes/quarantine/<lane>-<UTC time>/`` at their relative paths. Git lists
them with ``-z`` (names are exact bytes, read with ``surrogateescape``), sometimes a folder and
its own content both: only top-most entries are moved. A symlink is moved as the link itself,
never followed; only the folder it sits in must lie inside the worktree.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

import anyio

from controller.executors import inspecting
from controller.executors.context import Context
from controller.system import paths

IGNORED = ("--others", "--ignored", "--exclude-standard", "--directory")


def topmost(entries: Iterable[str]) -> list[str]:
    """Entries (trailing slash dropped) not inside another entry, in order."""
    kept: list[str] = []
    seen: set[str] = set()
    for entry in sorted({e.rstrip("/") for e in entries if e.rstrip("/")}):
        parts = entry.split("/")
        if any("/".join(parts[:i]) in seen for i in range(1, len(parts))):
            continue
        kept.append(entry)
        seen.add(entry)
    return kept


async def keep_ignored(
    ctx: Context, lane: str, *, path: Path, inner: Sequence[str], now: datetime
) -> bool:
    """Move the ignored files of the worktree and of the repositories inside it to quarantine.

    Returns whether anything was moved. Git's rescue commit does not take them (they may be
    huge, or secret); a rename keeps them instead.
    """
    entries = await _ignored(ctx, path)
    for folder in inner:
        entries += [f"{folder}/{e}" for e in await _ignored(ctx, path / folder)]
    moving = topmost(entries)
    if not moving:
        return False
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    move = functools.partial(move_entries, folder=ctx.quarantine, name=f"{lane}-{stamp}")
    target = await anyio.to_thread.run_sync(move, path, moving)
    await ctx.emit(
        "IgnoredFilesKept",
        "ignored files moved out before removal",
        lane=lane,
        movedTo=str(target),
        entries=len(moving),
    )
    return True


async def _ignored(ctx: Context, path: Path) -> list[str]:
    out = await inspecting.git(ctx.runner, path).ls_files(*IGNORED)
    return [e for e in out.split("\0") if e]


def move_entries(base: Path, entries: Sequence[str], *, folder: Path, name: str) -> Path:
    """Move each entry of ``base`` to the same relative path under a new folder; return it.

    If a move fails, what was moved stays moved, and folders left empty are removed again, so
    a failed attempt leaves no empty quarantine folder behind.
    """
    target = free_folder(folder, name)
    try:
        for entry in entries:
            source = paths.entry_in(base, entry)
            destination = target / entry
            destination.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            rename(source, destination)
    except BaseException:
        _drop_empty(target)
        raise
    return target


def move_aside(path: Path, folder: Path, *, name: str) -> Path:
    """Move ``path`` into ``folder`` under a free name; return where it went."""
    target = free_folder(folder, name)
    rename(path, target)
    return target


def free_folder(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name-1``, ``name-2``, ... if taken (``folder`` is created)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target, n = folder / name, 0
    while os.path.lexists(target):
        n += 1
        target = folder / f"{name}-{n}"
    return target


def rename(source: Path, destination: Path) -> None:
    """Rename without following a symlink; copy-and-delete only across file systems."""
    try:
        source.rename(destination)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(source, destination)  # keeps symlinks as links


def _drop_empty(target: Path) -> None:
    """Remove folders under (and including) ``target`` that hold nothing."""
    if not target.is_dir() or target.is_symlink():
        return
    for root, dirs, _ in os.walk(target, topdown=False):
        for name in dirs:
            with contextlib.suppress(OSError):
                (Path(root) / name).rmdir()  # only succeeds when empty
    with contextlib.suppress(OSError):
        target.rmdir()
