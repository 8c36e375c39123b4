"""Observe git: one ``git worktree list --porcelain -z``, one ``git for-each-ref``, and one
scan of the worktree root per pass, however many lanes there are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import anyio

from controller import errors
from controller.core import world
from controller.system import git as gitseam
from controller.system import proc

TIMEOUT = 20.0


def parse_worktree_list(text: str) -> tuple[world.GitWorktree, ...]:
    """Parse ``git worktree list --porcelain -z`` output into snapshots."""
    records: list[world.GitWorktree] = []
    fields: dict[str, str | None] = {}
    for item in text.split("\0"):
        if item:
            name, _, value = item.partition(" ")
            fields[name] = value
        elif fields:
            records.append(_worktree(fields))
            fields = {}
    if fields:
        records.append(_worktree(fields))
    return tuple(records)


def _worktree(fields: Mapping[str, str | None]) -> world.GitWorktree:
    branch = fields.get("branch")
    return world.GitWorktree(
        path=str(fields.get("worktree") or ""),
        head=fields.get("HEAD"),
        branch=branch.removeprefix("refs/heads/") if branch else None,
        bare="bare" in fields,
        detached="detached" in fields,
        locked=fields.get("locked"),
        prunable=fields.get("prunable"),
    )


def parse_refs(text: str) -> dict[str, str]:
    """Parse ``git for-each-ref --format=%(refname:lstrip=2)%00%(objectname)`` output."""
    refs: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, sha = line.partition("\0")
        if sep:
            refs[name] = sha
    return refs


async def observe_worktrees(
    runner: proc.Runner, repo: Path
) -> tuple[world.GitWorktree, ...] | world.Unknown:
    """Every worktree git knows of in ``repo``, or Unknown if git cannot tell."""
    try:
        listed = await gitseam.Git(runner, repo, timeout=TIMEOUT).worktree_list()
    except errors.CommandFailed as exc:
        return world.Unknown(str(exc))
    return parse_worktree_list(listed)


async def observe_branches(runner: proc.Runner, repo: Path) -> Mapping[str, str] | world.Unknown:
    """Every local branch and the commit it points at, or Unknown."""
    try:
        tips = await gitseam.Git(runner, repo, timeout=TIMEOUT).branch_tips()
    except errors.CommandFailed as exc:
        return world.Unknown(str(exc))
    return parse_refs(tips)


async def observe_root(root: Path) -> tuple[world.RootEntry, ...] | world.Unknown:
    """The entries directly under the worktree root (none if it does not exist yet)."""
    try:
        return await anyio.to_thread.run_sync(_scan, root)
    except OSError as exc:
        return world.Unknown(f"cannot list {root}: {exc.strerror or exc}")


def _scan(root: Path) -> tuple[world.RootEntry, ...]:
    if not root.exists():
        return ()
    with os.scandir(root) as entries:
        found = [_root_entry(e) for e in entries]
    return tuple(sorted(found, key=lambda e: e.name))


def _root_entry(entry: os.DirEntry[str]) -> world.RootEntry:
    is_dir = entry.is_dir(follow_symlinks=False)
    elsewhere = misrecorded(Path(entry.path)) if is_dir else None
    return world.RootEntry(entry.name, is_dir, entry.is_symlink(), misrecorded=elsewhere)


def misrecorded(folder: Path) -> str | None:
    """Where git's record of the worktree in ``folder`` says it is, when that is elsewhere.

    A linked worktree's ``.git`` file names its admin folder, whose ``gitdir`` file names the
    worktree back. When that second link points elsewhere (a moved repository, a copied admin
    folder), git lists the worktree at the wrong path; ``git worktree repair`` fixes it.
    """
    own = folder / ".git"
    try:
        pointer = own.read_text(errors="surrogateescape")
        if not pointer.startswith("gitdir: "):
            return None
        admin = folder / pointer.removeprefix("gitdir: ").strip()
        recorded = (admin / "gitdir").read_text(errors="surrogateescape").strip()
    except OSError:  # a folder .git (not a linked worktree), or nothing readable
        return None
    if not recorded or _same(admin / recorded, own):
        return None
    return recorded.removesuffix("/.git")


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
