"""Bringing a rescue's work back into a checkout (or a new folder), touching nothing else.

The rescue's changes against its first parent (``git diff-tree --raw``) are applied path by
path, as ``core.rescues.decide`` allows: nothing is done when any path conflicts. Files are
written by git from a temporary index (``read-tree`` of the rescue, then ``checkout-index``
into the target), so content, executable bits, symlinks and names that are not UTF-8 come
back exact; the target's HEAD, index and refs are never touched (the files show as changes).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from controller import errors
from controller.core import rescues
from controller.core.rescues import Found, Seen
from controller.system import git as gitseam
from controller.system import paths, proc

TIMEOUT = 300.0  # writing a large rescue can take a while
CHUNK = 200  # paths per git call


class Target(enum.StrEnum):
    """Where the work goes."""

    CHECKOUT = "checkout"  # an existing checkout: the rescue's changes, where nothing conflicts
    NEW = "new folder"  # a folder that did not exist (or was empty): every file of the rescue


class RestoreRefused(errors.ControllerError):
    """A restore that would overwrite or delete work in the target; nothing was changed."""


@dataclass(frozen=True, slots=True)
class Rescued:
    """A rescue ref resolved: its commit, first parent and lane."""

    name: rescues.Name
    commit: str
    base: str


async def resolve(runner: proc.Runner, repo: Path, *, ref: str) -> Rescued:
    """The rescue ``ref`` names (``refs/lanes/rescue/<lane>/<leaf>`` or ``<lane>/<leaf>``)."""
    if ref.startswith(rescues.INNER):
        raise errors.ControllerError(
            f"{ref} holds a repository that was inside a lane; the controller does not restore "
            f"those. Fetch it into that repository: git -C <its folder> fetch {repo} "
            f"{ref}:refs/heads/recovered"
        )
    name = rescues.parse_ref(ref)
    if name is None:
        raise errors.ControllerError(
            f"{ref} is not a rescue ref (refs/lanes/rescue/<lane>/<time>); "
            "list them with `controller rescues`"
        )
    commit = await _in(runner, repo).commit_of(name.ref)
    if commit is None:
        raise errors.ControllerError(f"no rescue {name.ref}; list them with `controller rescues`")
    shown = await _git(runner, repo, "log", "-1", "--format=%P%x00%B", commit)
    listed, _, message = shown.partition("\0")
    base, _ = rescues.parents(commit, listed.split(), message=message)
    return Rescued(name, commit, base)


async def plan(
    runner: proc.Runner, repo: Path, *, rescued: Rescued, target: Path, kind: Target
) -> rescues.Restore:
    """What restoring ``rescued`` into ``target`` would do (nothing is changed)."""
    if kind is Target.NEW:
        return await _everything(runner, repo, rescued=rescued)
    raw = await _git(
        runner, repo, "diff-tree", "-r", "-z", "--no-renames", rescued.base, rescued.commit
    )
    entries = rescues.parse_raw(raw)
    folders, seen = await anyio.to_thread.run_sync(_look, target, entries)
    files = [path for path, s in seen.items() if s.kind is Found.FILE]
    hashes = await _hashes(runner, target, files=files)
    seen.update({path: Seen(Found.FILE, seen[path].mode, sha) for path, sha in hashes.items()})
    return rescues.decide(entries, seen, folders=folders)


async def apply(
    runner: proc.Runner,
    repo: Path,
    *,
    rescued: Rescued,
    target: Path,
    restore: rescues.Restore,
    scratch: Path,
) -> None:
    """Delete, then write, what ``restore`` says (refused as a whole on any conflict)."""
    if restore.conflicts:
        raise RestoreRefused(f"{len(restore.conflicts)} conflicting file(s); nothing was changed")
    await anyio.to_thread.run_sync(_delete, target, restore.delete)
    if restore.write:
        await _checkout(
            runner, repo, rescued=rescued, target=target, files=restore.write, scratch=scratch
        )


# -- a new folder -----------------------------------------------------------------------------


async def _everything(runner: proc.Runner, repo: Path, *, rescued: Rescued) -> rescues.Restore:
    """Every file of the rescue (its submodules skipped)."""
    listing = await _git(runner, repo, "ls-tree", "-r", "-z", "--full-tree", rescued.commit)
    files: list[str] = []
    skipped: list[str] = []
    for item in listing.split("\0"):
        info, tab, path = item.partition("\t")
        if tab:
            (skipped if info.startswith(rescues.GITLINK) else files).append(path)
    return rescues.Restore(write=tuple(sorted(files)), skipped=tuple(sorted(skipped)))


# -- looking at the target --------------------------------------------------------------------


def _look(
    target: Path, entries: Sequence[rescues.Entry]
) -> tuple[dict[str, Found], dict[str, Seen]]:
    """The target's folders along each path, and what it has at each path (files unhashed)."""
    folders: dict[str, Found] = {}
    seen: dict[str, Seen] = {}
    for entry in entries:
        around = rescues.leading(entry.path)
        for folder in around:
            if folder not in folders:
                folders[folder] = _kind(target / folder)
        # Below a file or a symlink nothing is looked at: a link may lead out of the target.
        inside = all(folders[f] is Found.DIR for f in around)
        length = len(entry.new_sha)
        seen[entry.path] = (
            _seen(target, entry.path, length=length) if inside else Seen(Found.MISSING)
        )
    return folders, seen


def _kind(path: Path) -> Found:
    try:
        mode = path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return Found.MISSING
    if stat.S_ISDIR(mode):
        return Found.DIR
    if stat.S_ISLNK(mode):
        return Found.LINK
    return Found.FILE if stat.S_ISREG(mode) else Found.OTHER


def _seen(target: Path, relative: str, *, length: int) -> Seen:
    path = target / relative
    kind = _kind(path)
    if kind is Found.FILE:
        executable = path.lstat().st_mode & stat.S_IXUSR
        return Seen(kind, "100755" if executable else "100644")
    if kind is Found.LINK:
        # Bytes, not Path.readlink(): a Path normalises the target ("a//b", "./x").
        target_bytes = os.readlink(os.fsencode(path))  # noqa: PTH115
        return Seen(kind, "120000", blob_id(target_bytes, length=length))
    if kind is Found.DIR:
        return Seen(kind, inside=_files_under(target, relative))
    return Seen(kind)


def blob_id(data: bytes, *, length: int = 40) -> str:
    """The id git gives a blob of ``data`` (SHA-1, or SHA-256 for 64-digit ids)."""
    digest = hashlib.sha256 if length == 64 else hashlib.sha1
    return digest(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _files_under(target: Path, relative: str) -> tuple[str, ...]:
    found = []
    for root, dirs, names in os.walk(target / relative):
        links = [d for d in dirs if (Path(root) / d).is_symlink()]  # listed, not walked
        found += [str((Path(root) / n).relative_to(target)) for n in (*names, *links)]
    return tuple(sorted(found))


async def _hashes(runner: proc.Runner, target: Path, *, files: Sequence[str]) -> dict[str, str]:
    """Blob ids of the target's files, as ``git add`` would store them (its filters apply)."""
    found: dict[str, str] = {}
    for start in range(0, len(files), CHUNK):
        chunk = files[start : start + CHUNK]
        hashes = await _in(runner, target).hash_objects(chunk)
        found.update(zip(chunk, hashes, strict=True))
    return found


# -- changing the target ----------------------------------------------------------------------


def _delete(target: Path, files: Sequence[str]) -> None:
    """Delete each file (a symlink as itself), then the folders that left empty."""
    for relative in files:
        paths.entry_in(target, relative).unlink(missing_ok=True)
    for relative in files:
        for folder in reversed(rescues.leading(relative)):
            with contextlib.suppress(OSError):  # not empty (or already gone): stop there
                (target / folder).rmdir()
                continue
            break


async def _checkout(
    runner: proc.Runner,
    repo: Path,
    *,
    rescued: Rescued,
    target: Path,
    files: Sequence[str],
    scratch: Path,
) -> None:
    """Write ``files`` as the rescue has them, through a temporary index (never the target's)."""
    await anyio.Path(scratch).mkdir(mode=0o700, parents=True, exist_ok=True)
    index = anyio.Path(scratch / f"restore-{secrets.token_hex(8)}.index")
    common = await _in(runner, repo).common_dir()
    where = ("--git-dir", common, "--work-tree", str(target))
    env = {"GIT_INDEX_FILE": str(index)}
    try:
        await _git(runner, target, *where, "read-tree", rescued.commit, env=env)
        for start in range(0, len(files), CHUNK):
            chunk = files[start : start + CHUNK]
            await _git(runner, target, *where, "checkout-index", "-f", "--", *chunk, env=env)
    finally:
        await index.unlink(missing_ok=True)


def _in(runner: proc.Runner, where: Path) -> gitseam.Git:
    return gitseam.Git(runner, where, timeout=TIMEOUT)


async def _git(
    runner: proc.Runner, where: Path, *args: str, env: dict[str, str] | None = None
) -> str:
    return await _in(runner, where).text(*args, env=env, strip=False)
