"""Reading what a lane's worktree holds that removal could lose, before anything is removed.

Beyond `git status`: edits to tracked files flagged skip-worktree or assume-unchanged (status
skips them), the commits of a branch whose ref was deleted (HEAD's reflog still names them),
and repositories inside the worktree: initialised submodules, whose git folders live in the
worktree's admin folder and go with it, and untracked nested repositories. Paths are read with
``-z`` and decoded with ``surrogateescape``, so a name that is not UTF-8 keeps its exact bytes
when it goes back into an argv or a file system call.
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import anyio

from controller import errors
from controller.system import git as gitseam
from controller.system import proc

TIMEOUT = 120.0  # status and hashing of a large worktree can take a while
PATHS = "surrogateescape"
MAX_DEPTH = 8  # repositories inside repositories inside ... the worktree
CHUNK = 200  # paths per `git hash-object` call
GITLINK = "160000"
SYMLINK = "120000"


class TooDeep(errors.ControllerError):
    """Repositories nest deeper inside the worktree than the controller inspects."""


class InnerKind(enum.StrEnum):
    """How a repository sits inside a lane's worktree."""

    SUBMODULE = "submodule"
    NESTED = "nested repository"


@dataclass(frozen=True, slots=True)
class WorktreeState:
    """What one working tree (the lane's, or a repository's inside it) could lose."""

    head: str | None  # None on an unborn branch
    branch: str | None  # None when detached
    changes: tuple[str, ...] = ()  # `git status` entries ("XY path"), names shown for people
    hidden: tuple[str, ...] = ()  # tracked files edited behind skip-worktree / assume-unchanged
    orphaned: str | None = None  # the commit HEAD's branch held before its ref was deleted
    nested: tuple[str, ...] = ()  # untracked repositories inside (exact paths, no slash)
    unmerged: bool = False  # the index holds a conflict: it cannot be written as a tree

    @property
    def base(self) -> str | None:
        """The commit the work sits on: HEAD, or the deleted branch's last commit."""
        return self.head or self.orphaned

    @property
    def dirty(self) -> bool:
        """Uncommitted changes, shown by `git status` or hidden from it."""
        return bool(self.changes or self.hidden)

    @property
    def needs_rescue(self) -> bool:
        """Uncommitted work, or commits that may be on no branch (detached or deleted)."""
        detached = self.branch is None and self.head is not None
        return self.dirty or detached or self.orphaned is not None


@dataclass(frozen=True, slots=True)
class InnerRepo:
    """A repository inside the lane's worktree; removal deletes it, git folder included."""

    path: str  # relative to the lane's worktree, exact bytes (surrogateescape)
    kind: InnerKind
    state: WorktreeState
    refs: tuple[tuple[str, str], ...] = ()  # its branches and stash: (refname, commit)
    unpushed: bool = False  # HEAD or one of ``refs`` holds a commit no remote-tracking ref has

    @property
    def needs_saving(self) -> bool:
        """Whether removal would lose something of it."""
        return self.state.dirty or self.unpushed


@dataclass(frozen=True, slots=True)
class LaneWork:
    """A lane's worktree and every repository inside it, as removal would find them."""

    top: WorktreeState
    inner: tuple[InnerRepo, ...] = ()

    @property
    def needs_rescue(self) -> bool:
        """Whether anything would be lost without a rescue."""
        return self.top.needs_rescue or any(r.needs_saving for r in self.inner)

    @property
    def uncommitted(self) -> tuple[str, ...]:
        """The paths holding uncommitted work, for people (what ``refuse`` refuses on)."""
        named = [c[3:] for c in self.top.changes] + [shown(h) for h in self.top.hidden]
        for repo in self.inner:
            if repo.state.dirty and shown(repo.path) not in named:
                named.append(f"{shown(repo.path)} ({repo.kind})")
        return tuple(named)


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One entry of ``git ls-files -v -s -z`` that matters for removal."""

    tag: str
    mode: str
    sha: str
    path: str

    @property
    def flagged(self) -> bool:
        """Skip-worktree (``S``) or assume-unchanged (a lower-case tag): status skips it."""
        return self.tag == "S" or self.tag.islower()


def shown(path: str) -> str:
    """A path for people and logs: bytes that are not UTF-8 become U+FFFD."""
    return path.encode("utf-8", PATHS).decode("utf-8", "replace")


def parse_status(text: str) -> WorktreeState:
    """Parse ``git status --porcelain=v2 --branch -z`` (decoded with ``surrogateescape``)."""
    head: str | None = None
    branch: str | None = None
    changes: list[str] = []
    nested: list[str] = []
    unmerged = False
    fields = iter(text.split("\0"))
    for entry in fields:
        if entry.startswith("# branch.oid "):
            oid = entry.removeprefix("# branch.oid ")
            head = None if oid == "(initial)" else oid
        elif entry.startswith("# branch.head "):
            name = entry.removeprefix("# branch.head ")
            branch = None if name == "(detached)" else name
        elif entry[:2] in ("1 ", "2 ", "u "):
            parts = entry.split(" ", {"1": 8, "2": 9, "u": 10}[entry[0]])
            changes.append(f"{parts[1].replace('.', ' ')} {shown(parts[-1])}")
            unmerged = unmerged or entry[0] == "u"
            if entry[0] == "2":
                next(fields, None)  # a rename's original path
        elif entry.startswith("? ") and entry.endswith("/"):
            nested.append(entry[2:-1])  # git shows a repository inside as one folder
        elif entry.startswith("? "):
            changes.append(f"?? {shown(entry[2:])}")
    return WorktreeState(
        head=head, branch=branch, changes=tuple(changes), nested=tuple(nested), unmerged=unmerged
    )


def parse_index(text: str) -> tuple[IndexEntry, ...]:
    """Parse ``git ls-files -v -s -z``, keeping flagged entries and gitlinks only."""
    kept = []
    for item in text.split("\0"):
        info, tab, path = item.partition("\t")
        parts = info.split(" ")
        if not tab or len(parts) != 4:
            continue
        entry = IndexEntry(tag=parts[0], mode=parts[1], sha=parts[2], path=path)
        if entry.flagged or entry.mode == GITLINK:
            kept.append(entry)
    return tuple(kept)


def parse_reflog_tip(text: str) -> str | None:
    """The commit the newest line of a reflog file moved to (None if none or all zeros)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    fields = lines[-1].split(" ", 2)
    new = fields[1] if len(fields) > 1 else ""
    return new if new.strip("0") else None


def parse_local_refs(text: str) -> tuple[tuple[str, str], ...]:
    """Parse ``for-each-ref --format=%(refname)%00%(objectname)`` lines."""
    refs = []
    for line in text.splitlines():
        name, sep, sha = line.partition("\0")
        if sep:
            refs.append((name, sha))
    return tuple(refs)


async def status(runner: proc.Runner, path: Path) -> WorktreeState:
    """HEAD, branch and the changes `git status` shows (one git call)."""
    return parse_status(await git(runner, path).status("--ignore-submodules=none"))


async def inspect(runner: proc.Runner, path: Path) -> LaneWork:
    """Everything the worktree at ``path`` holds that removal could lose."""
    top, submodules = await _inspect_repo(runner, path)
    inner = await _inner_repos(
        runner, path, prefix="", nested=top.nested, submodules=submodules, depth=1
    )
    return LaneWork(top=top, inner=inner)


async def _inspect_repo(runner: proc.Runner, path: Path) -> tuple[WorktreeState, list[str]]:
    """One repository's state, and the paths of its populated submodules."""
    state = await status(runner, path)
    index = parse_index(await git(runner, path).ls_files("-v", "-s"))
    hidden = await _hidden_edits(runner, path, flagged=[e for e in index if e.flagged])
    orphaned = await _orphaned_head(runner, path) if state.head is None and state.branch else None
    links = [e.path for e in index if e.mode == GITLINK]
    populated = await anyio.to_thread.run_sync(_populated, path, links)
    return replace(state, hidden=hidden, orphaned=orphaned), populated


async def _inner_repos(
    runner: proc.Runner,
    lane: Path,
    *,
    prefix: str,
    nested: Iterable[str],
    submodules: Iterable[str],
    depth: int,
) -> tuple[InnerRepo, ...]:
    found: list[InnerRepo] = []
    kinds = [(p, InnerKind.SUBMODULE) for p in submodules] + [(p, InnerKind.NESTED) for p in nested]
    for relative, kind in sorted(kinds):
        path = f"{prefix}{relative}"
        if depth > MAX_DEPTH:
            raise TooDeep(
                f"{shown(path)} is a repository nested more than {MAX_DEPTH} deep in {lane}"
            )
        state, inner_submodules = await _inspect_repo(runner, lane / path)
        refs, unpushed = await _local_refs(runner, lane / path, base=state.base)
        found.append(InnerRepo(path, kind, state, refs, unpushed))
        more = await _inner_repos(
            runner,
            lane,
            prefix=f"{path}/",
            nested=state.nested,
            submodules=inner_submodules,
            depth=depth + 1,
        )
        found.extend(more)
    return tuple(found)


async def _local_refs(
    runner: proc.Runner, path: Path, *, base: str | None
) -> tuple[tuple[tuple[str, str], ...], bool]:
    """The repository's branches and stash, and whether any commit of them (or of HEAD) is on
    no remote-tracking branch: what exists nowhere else once the repository is deleted."""
    repo = git(runner, path)
    out = await repo.for_each_ref("%(refname)%00%(objectname)", "refs/heads/", "refs/stash")
    refs = parse_local_refs(out)
    tips = ([base] if base else []) + [sha for _, sha in refs]
    if not tips:
        return refs, False
    return refs, bool(await repo.first_unpushed(tips))


def _populated(path: Path, links: Sequence[str]) -> list[str]:
    """Submodules that are checked out (their folder holds a ``.git``)."""
    return [link for link in links if os.path.lexists(path / link / ".git")]


class _Kind(enum.Enum):
    MISSING = "missing"
    FILE = "file"
    LINK = "link"
    OTHER = "other"


def _kinds(path: Path, names: Sequence[str]) -> list[_Kind]:
    kinds = []
    for name in names:
        try:
            mode = os.lstat(path / name).st_mode
        except FileNotFoundError:
            kinds.append(_Kind.MISSING)
            continue
        if stat.S_ISREG(mode):
            kinds.append(_Kind.FILE)
        else:
            kinds.append(_Kind.LINK if stat.S_ISLNK(mode) else _Kind.OTHER)
    return kinds


async def _hidden_edits(
    runner: proc.Runner, path: Path, *, flagged: Sequence[IndexEntry]
) -> tuple[str, ...]:
    """Flagged files whose content on disk differs from the index (status cannot tell)."""
    if not flagged:
        return ()
    kinds = await anyio.to_thread.run_sync(_kinds, path, [e.path for e in flagged])
    changed: list[str] = []
    files: list[IndexEntry] = []
    for entry, kind in zip(flagged, kinds, strict=True):
        if kind is _Kind.MISSING:
            continue  # a sparse checkout, or a deletion: HEAD has the content
        if entry.mode == SYMLINK:
            if kind is not _Kind.LINK or await _link_changed(runner, path, entry=entry):
                changed.append(entry.path)
        elif kind is _Kind.FILE and entry.mode != GITLINK:
            files.append(entry)
        elif entry.mode != GITLINK:
            changed.append(entry.path)  # a file that became a folder or a link
    changed.extend(await _changed_files(runner, path, files=files))
    return tuple(sorted(changed))


async def _changed_files(
    runner: proc.Runner, path: Path, *, files: Sequence[IndexEntry]
) -> list[str]:
    changed: list[str] = []
    for start in range(0, len(files), CHUNK):
        chunk = files[start : start + CHUNK]
        hashes = await git(runner, path).hash_objects([e.path for e in chunk])
        changed.extend(e.path for e, sha in zip(chunk, hashes, strict=True) if sha != e.sha)
    return changed


async def _link_changed(runner: proc.Runner, path: Path, *, entry: IndexEntry) -> bool:
    target = await anyio.to_thread.run_sync(os.readlink, path / entry.path)
    recorded = await git(runner, path).object_text(entry.sha)
    return recorded != target


async def _orphaned_head(runner: proc.Runner, path: Path) -> str | None:
    """The commit HEAD's branch pointed at before the branch's ref was deleted, if any.

    With its ref gone, HEAD looks unborn, but the worktree's own HEAD reflog (in its admin
    folder, deleted with it) still names the last commit.
    """
    log = await git(runner, path).git_path("logs/HEAD")
    try:
        text = await anyio.Path(log).read_text(errors="replace")
    except OSError:
        return None
    tip = parse_reflog_tip(text)
    if tip is None:
        return None
    return tip if await git(runner, path).has_commit(tip) else None


def git(runner: proc.Runner, path: Path) -> gitseam.Git:
    """git in ``path``, with time for the status and hashing of a large worktree."""
    return gitseam.Git(runner, path, timeout=TIMEOUT)
