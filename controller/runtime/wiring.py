"""The composition root: resolve the workspace and build every seam once.

This is the one module (with ``system/clock.py``) allowed to read the environment. Nothing is
built at import time or in default arguments.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pydantic

from controller import errors
from controller.spec import meta
from controller.spec.state import DesiredState
from controller.spec.workspace import Workspace, WorkspaceSpec
from controller.store import queries, sqlite
from controller.system import clock, proc, tmuxserver
from controller.system import git as gitseam

STATE_DIR = ".lanes"
DEFAULT_DESIRED = Path("desired")
DEFAULT_STATE = f"sqlite:///{STATE_DIR}/state.db"
WORKSPACE_MEMORY = "workspace.json"
DESIRED_REF_ENV = "CONTROLLER_DESIRED_REF"
HOST_ENV = "CONTROLLER_HOST"
LEASE_ENV = "CONTROLLER_LEASE_SECONDS"
LEASE_SECONDS = 15.0
GIT_TIMEOUT = 20.0
_WHERE = ("--path-format=absolute", "--git-dir", "--git-common-dir")  # a linked worktree?
GIT_ENV = {
    "LC_ALL": "C",  # git's messages (and lock reasons) in one language, for parsing
    "GIT_TERMINAL_PROMPT": "0",  # never wait for a password
    "GIT_OPTIONAL_LOCKS": "0",  # observing must not take locks a user's git would trip on
}


@dataclass(frozen=True, slots=True)
class Paths:
    """Where a workspace lives on disk, all absolute and resolved."""

    desired: Path
    repo: Path
    root: Path
    state_dir: Path
    state_url: str
    workspace: str
    tmux_socket: str = ""
    declared: bool = False  # a Workspace document names this workspace
    recalled: bool = False  # no Workspace document: the last declared one is used
    spec: WorkspaceSpec = field(default_factory=WorkspaceSpec)  # declared, or recalled
    desired_ref: str | None = None  # the git revision desired state is read from, if any
    host: str = ""  # this controller's host name (`--host`); matters with `hosts` only

    @property
    def hosted(self) -> bool:
        """Whether the workspace declares hosts (many hosts on one PostgreSQL store)."""
        return bool(self.spec.hosts)

    @property
    def lock(self) -> Path:
        """The workspace lock file."""
        return self.state_dir / "controller.lock"


@dataclass(slots=True)
class Wiring:
    """Everything a pass needs, built once."""

    paths: Paths
    runner: proc.SubprocessRunner
    clock: clock.Clock
    store: queries.Store
    tmux: tmuxserver.TmuxServer | None = None
    agent_env: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable

    def close(self) -> None:
        """Release the store."""
        self.store.close()

    def moved(self, paths: Paths) -> bool:
        """Whether ``paths`` is another workspace (rebuild) rather than new settings of this one."""
        same = replace(
            self.paths,
            spec=paths.spec,
            desired_ref=paths.desired_ref,
            declared=paths.declared,
            recalled=paths.recalled,
        )
        return same != paths

    def adopt(self, paths: Paths) -> None:
        """Take new settings of the same workspace (see ``moved``) without a rebuild.

        The daemon keeps its wiring (store, lane locks, launchers to reap) across edits of the
        Workspace's guards; the memory and the agents' desired ref must follow them.
        """
        self.paths = paths
        remember_workspace(paths)
        self.agent_env.pop(DESIRED_REF_ENV, None)
        if paths.desired_ref:
            self.agent_env[DESIRED_REF_ENV] = paths.desired_ref


def base_env() -> dict[str, str]:
    """The environment external programs run with."""
    env = dict(os.environ)
    for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR"):
        env.pop(key, None)  # an outer git hook's variables must not redirect our git
    return {**env, **GIT_ENV}


def resolve_paths(
    desired_dir: Path,
    desired: DesiredState,
    *,
    state_override: str | None = None,
    desired_ref: str | None = None,
    host: str | None = None,
) -> Paths:
    """Work out repo, worktree root and store URL from the Workspace and the desired folder."""
    desired_dir = desired_dir.resolve()
    spec = desired.workspace.spec
    repo = _repo(desired_dir, spec.repo)
    root = (repo / spec.worktree_root).resolve()
    if root == repo or not root.is_relative_to(repo):
        raise errors.ControllerError(f"worktreeRoot {spec.worktree_root} must be inside {repo}")
    state_dir = repo / STATE_DIR
    url = state_override or env_state() or spec.state_url or DEFAULT_STATE
    paths = Paths(
        desired=desired_dir,
        repo=repo,
        root=root,
        state_dir=state_dir,
        state_url=_absolute_sqlite(url, repo),
        workspace=desired.workspace.name,
        tmux_socket=spec.tmux_socket or default_socket(repo),
        declared=("Workspace", desired.workspace.name) in desired.locations,
        spec=spec,
        desired_ref=desired_ref,
        host=host_name(host),
    )
    paths = paths if paths.declared else _recalled(paths, state_override=state_override)
    _check_hosted_store(paths, desired)
    return paths


def host_name(given: str | None = None) -> str:
    """``--host``, else ``CONTROLLER_HOST``, else the machine's host name."""
    if given or os.environ.get(HOST_ENV):
        return given or os.environ[HOST_ENV]
    import socket  # not loaded by a pass that never needs the machine's name

    return socket.gethostname()


def lease_seconds() -> float:
    """How long a host lease lasts without renewal (``CONTROLLER_LEASE_SECONDS``, for tests)."""
    given = os.environ.get(LEASE_ENV)
    try:
        return max(1.0, float(given)) if given else LEASE_SECONDS
    except ValueError as exc:
        raise errors.ControllerError(f"{LEASE_ENV} must be a number of seconds") from exc


def _check_hosted_store(paths: Paths, desired: DesiredState) -> None:
    """`hosts` coordinate through a shared PostgreSQL store; a SQLite file is one machine's."""
    if not paths.hosted or not paths.state_url.partition(":")[0].startswith("sqlite"):
        return
    where = desired.locations.get(("Workspace", paths.workspace))
    at = f"{where}: " if where is not None else ""
    raise errors.ControllerError(
        f"{at}spec.hosts needs a PostgreSQL store shared by the hosts (stateUrl: "
        f"postgresql://...), but the store is SQLite ({paths.state_url}); set stateUrl, "
        "--state or CONTROLLER_STATE to a PostgreSQL URL, or remove hosts"
    )


def _recalled(paths: Paths, *, state_override: str | None) -> Paths:
    """Without a Workspace document, keep using the last one declared in this repository.

    Deleting every YAML file (the Workspace included), a `git stash -u` or a checkout of an
    older `desired/` must neither silently switch to another inventory (the lanes of the old
    one would never be cleaned up) nor drop its guards (`maxDeletionsPerPass`, `allowEmpty`).
    """
    last = _read_memory(paths.state_dir / WORKSPACE_MEMORY)
    if last is None:
        return paths
    return replace(
        paths,
        root=Path(last.get("root", paths.root)),
        state_url=state_override or env_state() or last.get("stateUrl", paths.state_url),
        workspace=last.get("workspace", paths.workspace),
        tmux_socket=last.get("tmuxSocket", paths.tmux_socket),
        spec=last["spec"],
        recalled=True,
    )


def _read_memory(memory: Path) -> dict[str, Any] | None:
    """The remembered Workspace, its spec validated; None if none was ever declared here.

    A file that cannot be understood is an error, not "nothing remembered": passing over it
    would drop the guards it holds.
    """
    try:
        text = memory.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise errors.ControllerError(f"cannot read {memory}: {exc}") from exc
    fix = f"declare a Workspace in desired state, or delete {memory} to forget the old one"
    try:
        last = json.loads(text)
        meta.check_name(last.get("workspace", "default"))
        # Written by an older release: identity only, no spec (its guards were not kept).
        spec = WorkspaceSpec.model_validate_json(json.dumps(last.get("spec", {})))
    except (ValueError, AttributeError, pydantic.ValidationError) as exc:
        detail = str(exc).splitlines()[0]
        message = f"{memory} is not a valid Workspace memory ({detail}); {fix}"
        raise errors.ControllerError(message) from exc
    return {**last, "spec": spec}


def remember_workspace(paths: Paths) -> None:
    """Record the declared workspace for ``_recalled``: identity and whole spec (0600: a URL)."""
    if not paths.declared:
        return
    data = {
        "workspace": paths.workspace,
        "root": str(paths.root),
        "stateUrl": paths.state_url,
        "tmuxSocket": paths.tmux_socket,
        "spec": json.loads(paths.spec.model_dump_json(by_alias=True, exclude_defaults=True)),
    }
    target = paths.state_dir / WORKSPACE_MEMORY
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if target.exists() and target.read_text() == text:
        return
    # Written aside and renamed: a crash half way must not leave a memory that cannot be read.
    fd, temporary = tempfile.mkstemp(dir=paths.state_dir, prefix=".workspace-", suffix=".json")
    with os.fdopen(fd, "w") as out:  # mkstemp creates it 0600
        out.write(text)
    Path(temporary).replace(target)


def remembered_spec(desired_dir: Path) -> WorkspaceSpec | None:
    """The spec of the last Workspace declared in the desired folder's repository, if any."""
    try:
        repo = _repo(desired_dir.resolve(), None)
    except errors.ControllerError:
        return None  # no repository, no memory: `validate` works without git
    last = _read_memory(repo / STATE_DIR / WORKSPACE_MEMORY)
    return None if last is None else last["spec"]


def effective(paths: Paths, desired: DesiredState) -> DesiredState:
    """``desired`` with the Workspace its paths were resolved for.

    Without a Workspace document that is the remembered one, so its guards
    (`maxDeletionsPerPass`, `allowEmpty`, `maxParallelLanes`, ...) apply to the pass.
    """
    if not paths.recalled:
        return desired
    workspace = Workspace(metadata=meta.Metadata(name=paths.workspace), spec=paths.spec)
    return replace(desired, workspace=workspace)


def default_socket(repo: Path) -> str:
    """A tmux socket name unique to the repository (``lanes-`` and a digest of its path)."""
    return "lanes-" + hashlib.sha256(str(repo).encode()).hexdigest()[:10]


def agents_env() -> dict[str, str]:
    """The environment agents inherit: the controller's, minus what would confuse them."""
    env = dict(os.environ)
    for key in ("TMUX", "TMUX_PANE", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", DESIRED_REF_ENV):
        env.pop(key, None)
    return env


def env_state() -> str | None:
    """``CONTROLLER_STATE`` from the environment (set for agents started in a lane)."""
    return os.environ.get("CONTROLLER_STATE") or None


def _repo(desired_dir: Path, declared: str | None) -> Path:
    if declared:
        repo = (desired_dir / declared).resolve()
        if not repo.is_dir():
            raise errors.ControllerError(f"Workspace repo {declared} ({repo}) does not exist")
        return _toplevel(repo)
    start = desired_dir if desired_dir.is_dir() else Path.cwd()
    return _toplevel(start)


def _toplevel(start: Path) -> Path:
    """The main checkout's top level, also from a linked worktree (a lane) of the repository.

    From inside a lane, git's own top level is the lane: the workspace found there would be a
    new, empty one with its own `.lanes/`. git's common directory leads to the main checkout.
    """
    try:
        git_dir, common, top = _git(start, "rev-parse", *_WHERE, "--show-toplevel").splitlines()
    except GitFailed as exc:
        raise errors.ControllerError(
            f"{start} is not inside a git repository ({exc}); run the controller from a "
            "checkout or set spec.repo in the Workspace"
        ) from exc
    except ValueError as exc:  # fewer lines than asked for: a git that does not know them
        raise errors.ControllerError(f"git rev-parse answered unexpectedly in {start}") from exc
    if Path(git_dir) == Path(common):  # the main checkout itself (or a submodule)
        return Path(top).resolve()
    return _main_checkout(start) or Path(top).resolve()


def _main_checkout(start: Path) -> Path | None:
    """The repository's main worktree (listed first by git), or None for a bare repository."""
    records = _git(start, "worktree", "list", "--porcelain", "-z").split("\0\0")
    fields = records[0].split("\0")
    if "bare" in fields or not fields[0].startswith("worktree "):
        return None
    return Path(fields[0].removeprefix("worktree ")).resolve()


@functools.lru_cache(maxsize=8)
def default_desired(cwd: Path) -> Path:
    """``./desired``; inside a linked worktree of a repository, the main checkout's ``desired/``.

    A person who `cd`s into a lane means the workspace's desired state, not the copy of
    `desired/` on the lane's branch (which may be older).
    """
    try:
        git_dir, common = _git(cwd, "rev-parse", *_WHERE).splitlines()
        main = None if Path(git_dir) == Path(common) else _main_checkout(cwd)
    except (errors.ControllerError, ValueError):
        return DEFAULT_DESIRED  # not a repository (or no git): `validate` works without one
    return DEFAULT_DESIRED if main is None else main / DEFAULT_DESIRED


GitFailed = gitseam.GitFailed


def run_git(start: Path, *args: str, stdin: bytes | None = None) -> bytes:
    """One git call outside the Runner (before the event loop exists, or with input on stdin),
    with the environment every external program gets."""
    return gitseam.run_sync(start, *args, env=base_env(), stdin=stdin, timeout=GIT_TIMEOUT)


def _git(start: Path, *args: str) -> str:
    return run_git(start, *args).decode("utf-8", "replace")


def _absolute_sqlite(url: str, repo: Path) -> str:
    plain = sqlite.file_of(url)
    if plain is not None:  # the usual case, understood without loading SQLAlchemy
        return url if plain.is_absolute() else f"sqlite:///{repo / plain}"
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return url
    if parsed.database == ":memory:" or Path(parsed.database).is_absolute():
        return url
    return parsed.set(database=str(repo / parsed.database)).render_as_string(hide_password=False)


def build(paths: Paths) -> Wiring:
    """Build the runner, clock and store for ``paths``."""
    _ignore_state_dir(paths.state_dir)
    remember_workspace(paths)
    store = queries.Store.open(paths.state_url, paths.workspace)
    store.host = paths.host if paths.hosted else None
    runner = proc.SubprocessRunner(base_env())
    tmux = tmux_server(paths, runner)
    tmux.write_config()
    agent_env = agents_env()
    if paths.desired_ref:
        # An agent's `controller post` must check membership against the same desired state.
        agent_env[DESIRED_REF_ENV] = paths.desired_ref
    return Wiring(
        paths=paths,
        runner=runner,
        clock=clock.SystemClock(),
        store=store,
        tmux=tmux,
        agent_env=agent_env,
    )


def tmux_server(paths: Paths, runner: proc.Runner) -> tmuxserver.TmuxServer:
    """The workspace's tmux server: its socket name and configuration file."""
    return tmuxserver.TmuxServer(runner, paths.tmux_socket, paths.state_dir / "tmux.conf")


def open_store(paths: Paths) -> queries.Store:
    """Just the store, for commands that only read it."""
    _ignore_state_dir(paths.state_dir)
    store = queries.Store.open(paths.state_url, paths.workspace)
    store.host = paths.host if paths.hosted else None
    return store


def _ignore_state_dir(state_dir: Path) -> None:
    """``.lanes/`` never shows up in the main checkout's ``git status``."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ignore = state_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# Created by the lane controller: local state, never committed.\n*\n")


@dataclass(frozen=True, slots=True)
class LaneIdentity:
    """Who is calling, when a command runs inside a lane (from the LANE_* environment)."""

    lane: str | None
    participant: str | None
    state_url: str | None
    workspace: str | None


def lane_identity() -> LaneIdentity:
    """Read the identity the controller gave an agent it started."""
    env = os.environ
    return LaneIdentity(
        lane=env.get("LANE_NAME") or None,
        participant=env.get("LANE_PARTICIPANT") or None,
        state_url=env.get("CONTROLLER_STATE") or None,
        workspace=env.get("CONTROLLER_WORKSPACE") or None,
    )


def who() -> str:
    """The operator behind an audited override."""
    return os.environ.get("USER") or os.environ.get("LOGNAME") or f"uid {os.getuid()}"


def color_environment() -> tuple[str | None, str | None]:
    """``NO_COLOR`` and ``FORCE_COLOR`` as set (https://no-color.org, https://force-color.org)."""
    return os.environ.get("NO_COLOR"), os.environ.get("FORCE_COLOR")
