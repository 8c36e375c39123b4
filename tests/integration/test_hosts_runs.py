"""Workflow runs across hosts: each connected part of a run's DAG is placed on a live host the
workflow allows, runs in that host's clone, and the run ends once for everyone (DESIGN §7, §9).

Two clones of one origin share a PostgreSQL store, each with its own daemon (`--host alpha`,
`--host beta`), as two machines would.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Repo, reap, wait_until
from tests.integration.test_hosts import LEASE, _daemon, _stop
from tests.integration.test_workflows import CATALOG, TASK

pytestmark = pytest.mark.integration

HOSTS = ("alpha", "beta")


@pytest.fixture
def origin(repo: Repo, postgres_url: str) -> Repo:
    """A workspace with hosts alpha and beta (no lanes of their own) and a model catalog."""
    name = f"runs-{secrets.token_hex(4)}"
    repo.write(
        "workspace.yaml",
        f"apiVersion: lanes/v1\nkind: Workspace\nmetadata: {{name: {name}}}\n"
        f"spec:\n  stateUrl: {postgres_url}\n  hosts:\n    - name: alpha\n    - name: beta\n",
    )
    repo.write("catalog.yaml", json.dumps(CATALOG) + "\n")
    return repo


def _task(name: str, marker: Path, *args: str, deps: tuple[str, ...] = ()) -> dict[str, Any]:
    # The test folder after `--` (ignored by the stub) lets the fixture reap every task.
    command = ["python3", TASK, *args, "--", str(marker)]
    spec: dict[str, Any] = {"name": name, "model": "sonnet", "command": command}
    return {**spec, "dependsOn": list(deps)} if deps else spec


def _workflow(repo: Repo, tasks: list[dict[str, Any]], **spec: Any) -> None:
    doc = {
        "apiVersion": "lanes/v1",
        "kind": "Workflow",
        "metadata": {"name": "w"},
        "spec": {"tasks": tasks, **spec},
    }
    repo.write("workflow.yaml", json.dumps(doc) + "\n")
    repo.git("add", ".")
    repo.git("commit", "-q", "-m", "desired")


@pytest.fixture
def hosts(origin: Repo, tmp_path: Path) -> Iterator[dict[str, Repo]]:
    """A clone per host, made by the test once desired state is committed (``clone``)."""
    found: dict[str, Repo] = {}
    yield found
    reap(str(tmp_path))


def _clone(origin: Repo, tmp_path: Path, found: dict[str, Repo]) -> dict[str, Repo]:
    env = {**origin.env, "CONTROLLER_LEASE_SECONDS": LEASE}
    for host in HOSTS:
        path = tmp_path / f"clone-{host}"
        origin.git("clone", "-q", str(origin.path), str(path))
        found[host] = Repo(path, env)
    return found


def _show(clone: Repo, run: str) -> dict[str, Any]:
    done = clone.ctl("runs", "show", run, "-o", "json", "--host", "alpha")
    assert done.returncode == 0, done.stderr
    view: dict[str, Any] = json.loads(done.stdout)
    return view


def _ended(clone: Repo, run: str) -> dict[str, Any] | None:
    view = _show(clone, run)
    return view if view["phase"] != "running" else None


def _live(clone: Repo) -> set[str]:
    """The hosts whose lease is held now (placement uses only those)."""
    done = clone.ctl("status", "--host", "alpha", "-o", "json")
    view = json.loads(done.stdout) if done.returncode == 0 else {"hosts": []}
    return {h["name"] for h in view["hosts"] if h["state"] == "live"}


def _run_to_end(clones: dict[str, Repo], timeout: float = 180) -> dict[str, Any]:
    """Both daemons up; submit on alpha; the run's view once it ended."""
    daemons = [_daemon(clones[host], host) for host in HOSTS]
    try:
        wait_until(lambda: _live(clones["alpha"]) == set(HOSTS), timeout=60)
        done = clones["alpha"].ctl("submit", "w", "--host", "alpha")
        assert done.returncode == 0, done.stdout + done.stderr
        run = done.stdout.splitlines()[0]
        wait_until(lambda: _ended(clones["beta"], run), timeout=timeout)
        return _show(clones["beta"], run)
    finally:
        for daemon in daemons:
            _stop(daemon)


def _tree(clones: dict[str, Repo], task: dict[str, Any], host: str) -> Path:
    """The task's worktree in ``host``'s clone (``worktree`` is under the viewer's root)."""
    relative = Path(task["worktree"]).relative_to(clones["beta"].path)
    return clones[host].path / relative


def test_independent_parts_spread_over_hosts_and_dependents_follow_their_commits(
    origin: Repo, hosts: dict[str, Repo], tmp_path: Path
) -> None:
    _workflow(
        origin,
        [
            _task("x", tmp_path, "--commit", "x.txt=x"),
            _task("y", tmp_path, "--commit", "y.txt=y", deps=("x",)),
            _task("p", tmp_path, "--commit", "p.txt=p"),
            _task("q", tmp_path, deps=("p",)),
        ],
        maxParallel=2,
    )
    view = _run_to_end(_clone(origin, tmp_path, hosts))
    assert view["phase"] == "succeeded", view
    tasks = {t["name"]: t for t in view["tasks"]}
    assert tasks["x"]["host"] == tasks["y"]["host"]
    assert tasks["p"]["host"] == tasks["q"]["host"]
    assert {tasks["x"]["host"], tasks["p"]["host"]} == set(HOSTS)
    for task in tasks.values():
        other = next(h for h in HOSTS if h != task["host"])
        assert _tree(hosts, task, task["host"]).is_dir(), task  # created in its host's clone
        assert not _tree(hosts, task, other).exists(), task  # and nowhere else
    assert (_tree(hosts, tasks["y"], tasks["y"]["host"]) / "x.txt").read_text().strip() == "x"
    assert (_tree(hosts, tasks["q"], tasks["q"]["host"]) / "p.txt").read_text().strip() == "p"


def test_a_workflow_runs_only_on_the_hosts_it_allows(
    origin: Repo, hosts: dict[str, Repo], tmp_path: Path
) -> None:
    _workflow(
        origin,
        [_task("one", tmp_path), _task("two", tmp_path), _task("three", tmp_path)],
        maxParallel=3,
        hosts=["beta"],
    )
    view = _run_to_end(_clone(origin, tmp_path, hosts))
    assert view["phase"] == "succeeded", view
    assert {t["host"] for t in view["tasks"]} == {"beta"}


def test_a_failure_on_one_host_stops_the_tasks_running_on_the_other(
    origin: Repo, hosts: dict[str, Repo], tmp_path: Path
) -> None:
    _workflow(
        origin,
        [
            _task("bad", tmp_path, "--sleep", "1", "--exit", "3"),
            _task("slow", tmp_path, "--sleep", "120"),
        ],
        maxParallel=2,
    )
    view = _run_to_end(_clone(origin, tmp_path, hosts))
    tasks = {t["name"]: t for t in view["tasks"]}
    assert view["phase"] == "failed" and view["reason"] == "task_failed", view
    assert tasks["bad"]["host"] != tasks["slow"]["host"]
    assert tasks["slow"]["phase"] == "aborted" and tasks["slow"]["reason"] == "fail_fast"

    def slow_running() -> bool:
        for proc in psutil.process_iter(["cmdline"]):
            line = proc.info["cmdline"] or []
            if str(tmp_path) in line and "120" in line:
                return True
        return False

    wait_until(lambda: not slow_running(), timeout=60)  # stopped by its own host
