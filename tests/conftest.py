"""Shared fixtures: real programs on private, reaped resources.

With ``CONTROLLER_REQUIRE_TOOLS=1`` (set by CI) a missing git, tmux or PostgreSQL fails the
test instead of skipping it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REQUIRE_TOOLS = os.environ.get("CONTROLLER_REQUIRE_TOOLS") == "1"


def need(tool: str) -> None:
    """Skip (or, in CI, fail) when an external program is missing."""
    if shutil.which(tool) is None:
        if REQUIRE_TOOLS:
            pytest.fail(f"{tool} is required (CONTROLLER_REQUIRE_TOOLS=1)")
        pytest.skip(f"{tool} is not installed")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment where git reads no user or system config and has an identity."""
    need("git")
    home = tmp_path / "home"
    home.mkdir()
    config = home / ".gitconfig"
    config.write_text("[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
    values = {
        "HOME": str(home),
        "GIT_CONFIG_GLOBAL": str(config),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test Author",
        "GIT_AUTHOR_EMAIL": "author@example.invalid",
        "GIT_COMMITTER_NAME": "Test Committer",
        "GIT_COMMITTER_EMAIL": "committer@example.invalid",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    for key in (
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "CONTROLLER_STATE",
        "TMUX",
        "CONTROLLER_DESIRED",
        "CONTROLLER_WORKSPACE",
        "LANE_NAME",
        "LANE_PARTICIPANT",
    ):
        monkeypatch.delenv(key, raising=False)
    return {**os.environ, **values}


class Repo:
    """A real git repository in a temporary folder, with a desired/ folder and helpers."""

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        self.env = env
        self.desired = path / "desired"
        self.root = path / ".lanes" / "worktrees"

    def git(self, *args: str, cwd: Path | None = None, check: bool = True) -> str:
        done = subprocess.run(
            ("git", *args),
            cwd=cwd or self.path,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
        return done.stdout.strip()

    def write(self, name: str, text: str) -> Path:
        path = self.desired / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def lanes(self, *names: str, **spec: str) -> None:
        """Declare exactly these lanes (in desired/lanes.yaml), all with the same spec."""
        body = "".join(f"  {k}: {v}\n" for k, v in spec.items())
        docs = [
            f"apiVersion: lanes/v1\nkind: Lane\nmetadata:\n  name: {n}\n"
            + (f"spec:\n{body}" if body else "")
            for n in names
        ]
        self.write("lanes.yaml", "---\n".join(docs))

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the real command line in the repository."""
        return subprocess.run(
            (sys.executable, "-m", "controller", *args),
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    def worktrees(self) -> list[str]:
        """Paths of the lane worktrees git knows (the main checkout excluded)."""
        out = self.git("worktree", "list", "--porcelain")
        paths = [line[9:] for line in out.splitlines() if line.startswith("worktree ")]
        return sorted(p for p in paths if Path(p) != self.path)

    def root_entries(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir()) if self.root.exists() else []

    def branches(self) -> list[str]:
        return self.git("for-each-ref", "--format=%(refname:short)", "refs/heads/").split()


@pytest.fixture
def repo(tmp_path: Path, git_env: dict[str, str]) -> Repo:
    """A git repository with one commit and an empty desired/ folder."""
    path = (tmp_path / "repo").resolve()
    path.mkdir()
    r = Repo(path, git_env)
    r.git("init", "-q", "-b", "main")
    (path / "README.md").write_text("hello\n")
    (path / ".gitignore").write_text("")
    r.git("add", ".")
    r.git("commit", "-q", "-m", "initial")
    r.desired.mkdir()
    return r


def wait_until(
    predicate: Callable[[], object], *, timeout: float = 30, every: float = 0.05
) -> None:
    """Poll ``predicate`` until it is truthy; fail with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s: {predicate}")


def stays_true(predicate: Callable[[], object], seconds: float, *, every: float = 0.05) -> None:
    """Check ``predicate`` for ``seconds``; fail as soon as it is false.

    For what must *not* happen within a time: the bound is explicit, and a violation fails at
    once instead of after a sleep. Use ``wait_until`` for anything that can be observed.
    """
    deadline = time.monotonic() + seconds
    while True:
        started = time.monotonic()
        assert predicate(), f"condition stopped holding within {seconds}s: {predicate}"
        if time.monotonic() >= deadline:
            return
        time.sleep(max(every, time.monotonic() - started))  # as wait_until, for the same reason


def git_children_of(repo: Path) -> list[int]:
    """PIDs of git processes still working in ``repo`` (e.g. orphaned by a SIGKILL)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["name"] == "git" and any(str(repo) in part for part in cmd):
            found.append(proc.pid)
    return found


@pytest.fixture(scope="session")
def _worker_database() -> str | None:
    """This test process's database on the throwaway server, created on first use.

    Run alone, the tests use the database scripts/with-postgres made. Run by pytest-xdist,
    each worker gets its own (``lanes_test_gw0``, ...), so no two workers ever migrate one
    schema at the same moment; tests within a worker keep apart by workspace name.
    """
    url = os.environ.get("CONTROLLER_TEST_POSTGRES_URL")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not url or not worker:
        return url
    import urllib.parse

    import psycopg

    parts = urllib.parse.urlsplit(url)
    name = f"{parts.path.lstrip('/')}_{worker}"
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')  # name: letters, digits and _ only
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def postgres_url(_worker_database: str | None) -> str:
    """The throwaway PostgreSQL started by scripts/with-postgres (CI always has one)."""
    if not _worker_database:
        if REQUIRE_TOOLS:
            pytest.fail("CONTROLLER_TEST_POSTGRES_URL is not set (scripts/with-postgres sets it)")
        pytest.skip("no PostgreSQL (run through scripts/with-postgres)")
    return _worker_database


@pytest.fixture
def tmux_socket(repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private tmux server name for the test (short TMUX_TMPDIR), killed and reaped after.

    Every process whose command line mentions the test's tmp_path is killed afterwards too, so
    an agent that outlived a failing test cannot leak into the next one.
    """
    import secrets
    import tempfile

    need("tmux")
    name = f"ctl-{secrets.token_hex(4)}"
    tmpdir = tempfile.mkdtemp(prefix="ctl-", dir="/tmp")  # socket paths are limited to 107 bytes
    repo.env = {**repo.env, "TMUX_TMPDIR": tmpdir}
    monkeypatch.setenv("TMUX_TMPDIR", tmpdir)  # for libtmux, which tests use to look
    yield name
    subprocess.run(
        ("tmux", "-L", name, "kill-server"),
        env=repo.env,
        capture_output=True,
        check=False,
        timeout=10,
    )
    reap(str(tmp_path))
    shutil.rmtree(tmpdir, ignore_errors=True)


def reap(marker: str) -> list[int]:
    """Kill every process whose command line contains ``marker``; return their pids."""
    import psutil

    killed = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid != os.getpid() and any(marker in part for part in proc.info["cmdline"] or ()):
            with contextlib.suppress(psutil.Error):
                proc.kill()
                killed.append(proc.pid)
    return killed


def ended(pid: int) -> bool:
    """Whether process ``pid`` has ended: gone, or a zombie not yet reaped (it may be reaped
    between the two looks, which is an end too)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def alive_with(marker: str) -> list[int]:
    """PIDs of live (non-zombie) agent processes whose command line contains ``marker``.

    The tmux server is not counted: its argv is the command of the session that started it.
    """
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = proc.info["cmdline"] or ()
        if proc.info["status"] == psutil.STATUS_ZOMBIE or cmdline[:1] == ["tmux"]:
            continue
        if any(marker in part for part in cmdline):
            found.append(proc.pid)
    return found


@pytest.fixture
def cpu_load() -> Iterator[int]:
    """Busy-loop neighbours, one per core, for the test's whole length (reaped after).

    Races between concurrent programs hide on an idle machine; a loaded one shows them. Under
    pytest-xdist the other workers load the machine too: one loop less for each of them, and
    always one.
    """
    others = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) - 1
    count = max(1, (os.cpu_count() or 2) - others)
    busy = [
        subprocess.Popen(
            (sys.executable, "-c", "while True: pass"),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    try:
        yield count
    finally:
        for proc in busy:
            proc.kill()
            proc.wait(timeout=10)
