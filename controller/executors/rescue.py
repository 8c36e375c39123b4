"""Saving a worktree's work before it is removed: nothing is ever lost.

A rescue commit is built without touching the worktree, its index or its branch: a temporary
index receives every tracked and untracked (not ignored) file, and the commit has the worktree's
HEAD (or, if its branch ref was deleted, the branch's last commit) as first parent and a commit
of the real index as second parent, like ``git stash``. It is stored at
``refs/lanes/rescue/<lane>/<UTC timestamp>``.

Repositories inside the worktree (submodules, nested repositories) get the same commit inside
themselves; their work and branches are then fetched into the main repository under
``refs/lanes/rescue-inner/<lane>/<leaf>/<n>-<name>/``, and the rescue commit's message says
which. A ``Lanes-Snapshot`` trailer identifies the content: a retried removal that finds an
identical snapshot reuses that rescue instead of writing another.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import anyio

from controller.executors import inspecting
from controller.executors.inspecting import InnerRepo, LaneWork, WorktreeState, shown
from controller.system import git as gitseam
from controller.system import proc

TRAILER = "Lanes-Snapshot"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The trees a rescue commit is made of (content-addressed: equal trees, equal content)."""

    tree: str  # the working files
    staged: str | None  # the index (None while it holds a conflict)
    base: str | None  # the first parent


@dataclass(frozen=True, slots=True)
class InnerSave:
    """Where one inner repository's work went, or why nothing had to go anywhere."""

    path: str
    kind: inspecting.InnerKind
    prefix: str | None  # the refs under this prefix hold it; None when nothing was lost
    refs: tuple[str, ...] = ()  # its branches and stash, as named under ``prefix``


@dataclass(frozen=True, slots=True)
class Saved:
    """The result of a rescue: its ref, and whether an identical earlier one was reused."""

    ref: str
    reused: bool
    inner: tuple[InnerSave, ...] = ()


async def inspect(runner: proc.Runner, path: Path) -> WorktreeState:
    """HEAD, branch and the changes `git status` shows of the worktree at ``path``."""
    return await inspecting.status(runner, path)


def rescue_ref(lane: str, now: datetime, *, suffix: str = "") -> str:
    """The ref a lane's work is saved under at ``now``."""
    return f"refs/lanes/rescue/{lane}/{now.strftime('%Y%m%dT%H%M%SZ')}{suffix}"


def inner_key(number: int, path: str) -> str:
    """A ref-safe name for an inner repository: its number and its path, flattened."""
    flat = re.sub(r"[^A-Za-z0-9_-]+", "_", shown(path)).strip("_")[:48]
    return f"{number}-{flat or 'repo'}"


def digest(top: Snapshot, inner: Sequence[tuple[InnerRepo, Snapshot | None]]) -> str:
    """The identity of everything a rescue would hold: equal digests, equal content.

    ``inner`` lists every inner repository (with the snapshot of its files when it has
    uncommitted work), so that the numbering of their refs is the same for equal digests.
    """
    lines = [f"top {top.tree} {top.staged} {top.base}"]
    for repo, snap in inner:
        tree = f"{snap.tree} {snap.staged}" if snap else "-"
        refs = sorted(repo.refs)
        lines.append(f"inner {repo.path!r} {repo.needs_saving} {tree} {repo.state.base} {refs}")
    text = "\n".join(lines).encode("utf-8", inspecting.PATHS)
    return hashlib.sha256(text).hexdigest()[:32]


def parse_snapshots(text: str) -> dict[str, str]:
    """Parse ``for-each-ref --format='%(refname) %(trailers:...,separator=%x20)'``."""
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if value.strip():
            found[value.split()[0]] = name
    return found


def free_leaf(stamp: str, taken: set[str]) -> str:
    """The first of ``stamp``, ``stamp-1``, ... that no rescue ref of the lane uses yet."""
    leaf, n = stamp, 0
    while leaf in taken:
        n += 1
        leaf = f"{stamp}-{n}"
    return leaf


async def save(
    runner: proc.Runner,
    path: Path,
    *,
    repo: Path,
    lane: str,
    work: LaneWork,
    now: datetime,
    scratch: Path,
) -> Saved:
    """Save everything removal could lose; return the rescue ref (an identical one is reused)."""
    await anyio.Path(scratch).mkdir(mode=0o700, parents=True, exist_ok=True)
    inner = [(r, await _inner_snapshot(runner, path, inner=r, scratch=scratch)) for r in work.inner]
    top = await _snapshot(runner, path, state=work.top, scratch=scratch)
    identity = digest(top, inner)
    earlier = await _earlier(runner, repo, lane=lane)
    if identity in earlier:
        ref = earlier[identity]
        saves = _inner_saves(lane, ref.rsplit("/", 1)[1], inner=work.inner)
        return Saved(ref, reused=True, inner=saves)
    leaf = free_leaf(now.strftime("%Y%m%dT%H%M%SZ"), await _taken(runner, repo, lane=lane))
    saves = _inner_saves(lane, leaf, inner=work.inner)
    for (r, snap), where in zip(inner, saves, strict=True):
        if where.prefix is not None:
            await _fetch_inner(
                runner, path / r.path, repo=repo, inner=r, snap=snap, lane=lane, prefix=where.prefix
            )
    message = _message(lane, work, saves=saves, now=now, identity=identity)
    commit = await _commit(runner, path, snap=top, message=message, lane=lane)
    ref = f"refs/lanes/rescue/{lane}/{leaf}"
    await inspecting.git(runner, repo).create_ref(ref, commit)  # never overwrites a rescue
    return Saved(ref, reused=False, inner=saves)


def _inner_saves(lane: str, leaf: str, *, inner: Sequence[InnerRepo]) -> tuple[InnerSave, ...]:
    """Where each inner repository's work goes (or went) for the rescue named ``leaf``."""
    return tuple(
        InnerSave(r.path, r.kind, _prefix(lane, leaf, number=n, repo=r), tuple(_names(r)))
        if r.needs_saving
        else InnerSave(r.path, r.kind, None)
        for n, r in enumerate(inner, start=1)
    )


def _names(inner: InnerRepo) -> list[str]:
    """The names an inner repository's refs get under its prefix (``heads/x``, ``stash``)."""
    return [name.removeprefix("refs/") for name, _ in inner.refs]


async def _inner_snapshot(
    runner: proc.Runner, path: Path, *, inner: InnerRepo, scratch: Path
) -> Snapshot | None:
    if not inner.state.dirty:
        return None
    return await _snapshot(runner, path / inner.path, state=inner.state, scratch=scratch)


def _prefix(lane: str, leaf: str, *, number: int, repo: InnerRepo) -> str:
    return f"refs/lanes/rescue-inner/{lane}/{leaf}/{inner_key(number, repo.path)}"


async def _snapshot(
    runner: proc.Runner, path: Path, *, state: WorktreeState, scratch: Path
) -> Snapshot:
    """Write the trees of the working files and of the index, changing neither."""
    index = scratch / f"rescue-{secrets.token_hex(8)}.index"
    git = inspecting.git(runner, path)
    try:
        await git.read_tree(state.base, cwd=path, index=index)
        # Nested repositories are saved on their own.
        await git.add_all(cwd=path, index=index, excluding=state.nested)
        tree = await git.write_tree(cwd=path, index=index)
    finally:
        await anyio.Path(index).unlink(missing_ok=True)
    staged = None if state.unmerged else await git.write_tree(cwd=path)
    return Snapshot(tree=tree, staged=staged, base=state.base)


async def _commit(
    runner: proc.Runner, path: Path, *, snap: Snapshot, message: str, lane: str
) -> str:
    git = inspecting.git(runner, path)
    parents = [snap.base] if snap.base else []
    if snap.staged is not None:
        note = f"index of lane {lane}"
        parents.append(await git.commit_tree(snap.staged, parents, note, cwd=path))
    return await git.commit_tree(snap.tree, parents, message, cwd=path)


async def _fetch_inner(
    runner: proc.Runner,
    source: Path,
    *,
    repo: Path,
    inner: InnerRepo,
    snap: Snapshot | None,
    lane: str,
    prefix: str,
) -> None:
    """Commit the inner repository's work inside it, then fetch that and its branches."""
    message = f"lanes rescue: {lane}, work in {shown(inner.path)} ({inner.kind})"
    tip = await _commit(runner, source, snap=snap, message=message, lane=lane) if snap else None
    tip = tip or inner.state.base
    specs = [f"{tip}:{prefix}/work"] if tip else []
    specs += [
        f"{sha}:{prefix}/{name}" for name, (_, sha) in zip(_names(inner), inner.refs, strict=True)
    ]
    await gitseam.Git(runner, repo).fetch(source, specs)


async def _earlier(runner: proc.Runner, repo: Path, *, lane: str) -> dict[str, str]:
    """The lane's rescue refs by the snapshot they hold."""
    fmt = f"%(refname) %(trailers:key={TRAILER},valueonly,separator=%x20)"
    out = await inspecting.git(runner, repo).for_each_ref(fmt, f"refs/lanes/rescue/{lane}/")
    return parse_snapshots(out)


async def _taken(runner: proc.Runner, repo: Path, *, lane: str) -> set[str]:
    """Leaves already used by the lane's rescue refs, outer or inner."""
    outer = f"refs/lanes/rescue/{lane}/"
    inner = f"refs/lanes/rescue-inner/{lane}/"
    out = await inspecting.git(runner, repo).for_each_ref("%(refname)", outer, inner)
    return {ref.removeprefix(outer).removeprefix(inner).split("/")[0] for ref in out.split()}


def _message(
    lane: str, work: LaneWork, *, saves: Sequence[InnerSave], now: datetime, identity: str
) -> str:
    top = work.top
    shown_changes = "\n".join(top.changes[:50])
    more = f"\n... and {len(top.changes) - 50} more" if len(top.changes) > 50 else ""
    sections = [
        f"lanes rescue: {lane} at {now.isoformat(timespec='seconds')}",
        "Work saved by the lane controller before removing the worktree.\n"
        f"Branch: {_branch_line(top)}\n"
        "Restore with: git checkout -b <new-branch> <this commit>  (files as they were)",
    ]
    if top.changes:
        sections.append(shown_changes + more)
    if top.hidden:
        hidden = "\n".join(f"  {shown(p)}" for p in top.hidden[:50])
        sections.append(
            f"Edits git status does not show (skip-worktree, assume-unchanged):\n{hidden}"
        )
    if top.unmerged:
        sections.append("The index held a conflict: the files are saved, the index is not.")
    if saves:
        sections.append(
            "Repositories inside the worktree:\n" + "\n".join(_inner_line(s) for s in saves)
        )
    sections.append(f"{TRAILER}: {identity}")
    return "\n\n".join(sections) + "\n"


def _branch_line(state: WorktreeState) -> str:
    if state.orphaned is not None:
        return f"{state.branch} (its ref was deleted; its commits are this commit's first parent)"
    return state.branch or "(detached HEAD)"


def _inner_line(save: InnerSave) -> str:
    if save.prefix is None:
        return (
            f"  {shown(save.path)} ({save.kind}): nothing to save (clean, commits on its remotes)"
        )
    refs = "".join(f", {shown(name)}" for name in save.refs)
    return f"  {shown(save.path)} ({save.kind}): {save.prefix}/ (work: its files and HEAD{refs})"
