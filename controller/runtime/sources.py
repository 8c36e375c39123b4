"""Reading desired state, the shell half of loading (the pure half is spec.loading).

The desired folder is read from the working tree, or, for GitOps, as committed at a git
revision (`--desired-ref`, or the Workspace's `desiredRef`), so that a `git stash` or a
checkout of another branch cannot change what the controller reconciles. Git is asked three
times whatever the number of files: `rev-parse`, `ls-tree` and one batched `cat-file`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath

from controller import errors
from controller.runtime import wiring
from controller.spec import loading
from controller.spec.loading import Problem
from controller.spec.state import DesiredState

SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 4 * 1024 * 1024
SYMLINK_MODE = "120000"
SYMLINK_PROBLEM = (
    "a symbolic link: desired state read from a commit does not follow links; commit the "
    "file itself"
)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where desired state was read: a folder, and the revision and commit when read from git."""

    folder: Path
    ref: str | None = None
    commit: str | None = None
    checkout: Path | None = None  # where git was asked (a revision like HEAD is per worktree)

    def to_json(self) -> dict[str, str | None]:
        """The ``desired`` object of ``plan``, ``--once`` and ``status`` JSON."""
        return {"folder": str(self.folder), "ref": self.ref, "commit": self.commit}

    def describe(self) -> str | None:
        """A line for people, or None for the working tree (the usual case needs no words)."""
        if self.ref is None or self.commit is None:
            return None
        return f"Desired state: {self.folder} as committed at {self.ref} ({self.commit[:12]})."


@dataclass(frozen=True, slots=True)
class Loaded:
    """A desired state or every problem found, and where it was read."""

    result: DesiredState | tuple[Problem, ...]
    origin: Origin


class RefSource(StrEnum):
    """Who asked for a revision: the Workspace in the working tree, or the remembered one."""

    DECLARED = "declared"
    REMEMBERED = "remembered"


@dataclass(frozen=True, slots=True)
class _Wanted:
    ref: str
    source: RefSource
    where: Problem  # where to report a Workspace at the revision that disagrees


@dataclass(slots=True)
class Cache:
    """The last desired state read from the working tree and from a commit, and what from.

    The daemon loads desired state before every pass; a resync that finds the same files
    (path, inode, size, modification and change times) or the same commit reuses what it
    parsed and validated last time, the very same object. Parsing is what costs: listing
    and stating the files is cheap. A file event (``fresh``) always reads again: two writes
    within one tick of the file system's clock can leave a file's times as they were.
    """

    tree: tuple[object, Loaded] | None = None
    commit: tuple[object, Loaded] | None = None
    parsed: int = 0
    """How many times desired state was actually parsed (what a hit saves)."""


def load(
    folder: Path,
    *,
    ref: str | None = None,
    follow: bool = True,
    cache: Cache | None = None,
    fresh: bool = False,
) -> Loaded:
    """Read and validate the desired folder, all or nothing (blocking: files and git).

    With ``ref`` (the option), read it at that revision. Otherwise read the working tree, and
    if ``follow`` and its Workspace (or, without one, the remembered Workspace) sets
    ``desiredRef``, read that revision instead; the Workspace found there must name it too.
    With a ``cache``, unchanged files or an unchanged commit are not parsed again (unless
    ``fresh``).
    """
    if cache is None:
        cache = Cache()
    elif fresh:
        cache.tree = cache.commit = None
    if ref is not None:
        return load_at(folder, ref, cache=cache)
    here = _load_tree(folder, cache)
    if not follow or not isinstance(here.result, DesiredState):
        return here
    wanted = _wanted(folder, here.result)
    if wanted is None:
        return here
    return _consistent(load_at(folder, wanted.ref, cache=cache), wanted)


def _wanted(folder: Path, desired: DesiredState) -> _Wanted | None:
    name = desired.workspace.name
    location = desired.locations.get(("Workspace", name))
    if location is not None:
        ref = desired.workspace.spec.desired_ref
        where = Problem(location.path, location.line, "")
        return None if ref is None else _Wanted(ref, RefSource.DECLARED, where)
    spec = wiring.remembered_spec(folder)
    if spec is None or spec.desired_ref is None:
        return None
    memory = f"{wiring.STATE_DIR}/{wiring.WORKSPACE_MEMORY}"
    return _Wanted(spec.desired_ref, RefSource.REMEMBERED, Problem(memory, 1, ""))


def _consistent(at: Loaded, wanted: _Wanted) -> Loaded:
    """The Workspace read at the revision must name it: one source of truth, not two."""
    if not isinstance(at.result, DesiredState):
        return at
    workspace = at.result.workspace
    declared = ("Workspace", workspace.name) in at.result.locations
    if declared and workspace.spec.desired_ref == wanted.ref:
        return at
    if not declared:
        found = "declares no Workspace"
    elif workspace.spec.desired_ref is None:
        found = "has a Workspace without desiredRef"
    else:
        found = f"has a Workspace with desiredRef: {workspace.spec.desired_ref}"
    whose = "this Workspace" if wanted.source == RefSource.DECLARED else "the last Workspace"
    message = (
        f"{whose} reads desired state from {wanted.ref}, but desired state at {wanted.ref} "
        f"({(at.origin.commit or '')[:12]}) {found}; commit the Workspace with desiredRef: "
        f"{wanted.ref} there first, or pass --desired-ref {wanted.ref}"
    )
    problem = Problem(wanted.where.path, wanted.where.line, message)
    return Loaded((problem,), at.origin)


# -- the working tree -------------------------------------------------------------------------


def _load_tree(folder: Path, cache: Cache) -> Loaded:
    """Every ``*.yaml``/``*.yml`` file under ``folder`` (hidden folders skipped), validated.

    A missing folder reads as no files: the planner's empty-desired guard then refuses to
    remove anything unless explicitly allowed. Problems name files relative to the current
    directory.
    """
    files = sorted(_files(folder)) if folder.is_dir() else []
    origin, base = Origin(folder.resolve()), Path.cwd()
    key = (origin, base, tuple((path, _stamp(path)) for path in files))
    if cache.tree is not None and cache.tree[0] == key:
        return cache.tree[1]
    texts = {_display(path, base): _read(path) for path in files}
    loaded = Loaded(loading.load(texts), origin)
    cache.tree, cache.parsed = (key, loaded), cache.parsed + 1
    return loaded


def _stamp(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _files(folder: Path) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix in SUFFIXES and path.is_file():
            found.append(path)
    return found


def _read(path: Path) -> str:
    if path.stat().st_size > MAX_FILE_BYTES:
        return _too_large(path.stat().st_size)
    return path.read_bytes().decode("utf-8", errors="replace")


def _too_large(size: int) -> str:
    # Loading reports it as a problem at line 1 rather than reading gigabytes.
    return f"!!too-large {size} bytes"


def _display(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


# -- a commit ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Blob:
    path: str  # as in the tree, which is how problems name it
    mode: str
    oid: str
    size: int


def load_at(folder: Path, ref: str, *, cache: Cache | None = None) -> Loaded:
    """Read and validate the desired folder as committed at ``ref``, all or nothing.

    With a ``cache`` holding the same commit, only the ref is resolved (one git call).
    """
    folder = folder.resolve()
    checkout, commit = _resolve(folder, ref)
    inside = _inside(folder, checkout)
    key = (checkout, commit, inside, ref)
    if cache is not None and cache.commit is not None and cache.commit[0] == key:
        return cache.commit[1]
    blobs = _ls_tree(checkout, commit, inside)
    problems = [Problem(b.path, 1, SYMLINK_PROBLEM) for b in blobs if b.mode == SYMLINK_MODE]
    texts = _cat(checkout, [b for b in blobs if b.mode != SYMLINK_MODE])
    result = loading.load(texts)
    if problems:
        found = problems + (list(result) if isinstance(result, tuple) else [])
        result = tuple(sorted(set(found)))
    loaded = Loaded(result, Origin(folder, ref, commit, checkout))
    if cache is not None:
        cache.commit, cache.parsed = (key, loaded), cache.parsed + 1
    return loaded


def _resolve(folder: Path, ref: str) -> tuple[Path, str]:
    """The checkout holding ``folder`` and the commit ``ref`` names there, in one git call."""
    start = next((p for p in (folder, *folder.parents) if p.is_dir()), Path.cwd())
    try:
        out = wiring.run_git(
            start,
            "rev-parse",
            "--show-toplevel",
            "--verify",
            "--end-of-options",
            f"{ref}^{{commit}}",
        )
    except wiring.GitFailed as exc:
        raise errors.ControllerError(
            f"desired ref {ref!r} does not name a commit in {start} ({exc}); check "
            "--desired-ref, CONTROLLER_DESIRED_REF or the Workspace's desiredRef"
        ) from exc
    top, commit = out.decode().split()
    return Path(top).resolve(), commit


def _inside(folder: Path, checkout: Path) -> str:
    try:
        inside = folder.relative_to(checkout).as_posix()
    except ValueError as exc:
        raise errors.ControllerError(
            f"{folder} is not inside the checkout {checkout}: a desired ref reads the desired "
            "folder from the repository that holds it"
        ) from exc
    return "" if inside == "." else inside


def _ls_tree(checkout: Path, commit: str, inside: str) -> list[_Blob]:
    """The YAML files under ``inside`` at ``commit``, hidden folders skipped, with sizes."""
    spec = ("--", inside) if inside else ()
    out = wiring.run_git(checkout, "ls-tree", "-r", "-z", "-l", "--full-tree", commit, *spec)
    blobs = []
    for entry in out.decode("utf-8", "surrogateescape").split("\0"):
        meta_part, _, path = entry.partition("\t")
        fields = meta_part.split()
        if len(fields) != 4 or fields[1] != "blob" or not _wanted_path(path, inside):
            continue  # submodules (commits) are folders of another repository
        blobs.append(_Blob(path, fields[0], fields[2], int(fields[3])))
    return sorted(blobs, key=lambda b: b.path)


def _wanted_path(path: str, inside: str) -> bool:
    if inside and not path.startswith(inside + "/"):
        return False
    relative = PurePosixPath(path).relative_to(inside) if inside else PurePosixPath(path)
    hidden = any(part.startswith(".") for part in relative.parts)
    return not hidden and relative.suffix in SUFFIXES


def _cat(checkout: Path, blobs: list[_Blob]) -> dict[str, str]:
    """Every blob's text in one ``cat-file --batch``; too large ones are not read at all."""
    small = [b for b in blobs if b.size <= MAX_FILE_BYTES]
    texts = {b.path: _too_large(b.size) for b in blobs if b.size > MAX_FILE_BYTES}
    if not small:
        return texts
    request = "".join(f"{b.oid}\n" for b in small).encode()
    out = wiring.run_git(checkout, "cat-file", "--batch", stdin=request)
    at = 0
    for blob in small:
        header_end = out.index(b"\n", at)
        header = out[at:header_end].split()
        if len(header) != 3:  # `<oid> missing`: the object store changed under us
            raise errors.ControllerError(f"git cat-file could not read {blob.path} ({blob.oid})")
        size = int(header[2])
        body = out[header_end + 1 : header_end + 1 + size]
        texts[blob.path] = body.decode("utf-8", errors="replace")
        at = header_end + 1 + size + 1  # the content is followed by a newline
    return texts


def commit_of(origin: Origin) -> str | None:
    """The commit ``origin.ref`` names now (blocking: run it in a thread), None if unknown."""
    if origin.ref is None or origin.checkout is None:
        return None
    argv = ("rev-parse", "--verify", "--end-of-options", f"{origin.ref}^{{commit}}")
    try:
        return wiring.run_git(origin.checkout, *argv).decode().strip()
    except errors.ControllerError:
        return None
