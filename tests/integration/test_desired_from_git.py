"""Desired state that git changes under the controller: stash, checkout, and desired refs.

A `git stash -u` or a checkout of a branch with an older `desired/` must not remove lanes
wholesale: the remembered Workspace keeps every guard, and `--desired-ref` / `desiredRef` read
desired state from a commit instead of the working tree.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controller.runtime import wiring
from controller.spec.state import DesiredState
from controller.spec.workspace import WorkspaceSpec
from tests.conftest import Repo, wait_until

pytestmark = pytest.mark.integration

GUARDED = """\
apiVersion: lanes/v1
kind: Workspace
metadata: {name: shop}
spec: {maxDeletionsPerPass: 1}
"""


def lanes_yaml(*names: str) -> str:
    return "---\n".join(
        f"apiVersion: lanes/v1\nkind: Lane\nmetadata: {{name: {n}}}\n" for n in names
    )


def once(repo: Repo, *args: str, code: int = 0) -> str:
    done = repo.ctl("--once", *args)
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout + done.stderr


def commit_desired(repo: Repo, files: dict[str, str], message: str) -> str:
    """Replace desired/ with ``files`` and commit it; the commit id."""
    for old in repo.desired.glob("*.yaml"):
        old.unlink()
    for name, text in files.items():
        repo.write(name, text)
    repo.git("add", "-A", "desired")
    repo.git("commit", "-q", "-m", message)
    return repo.git("rev-parse", "HEAD")


def commit_without_checkout(repo: Repo, branch: str, files: dict[str, str], tmp: Path) -> str:
    """Commit ``files`` under desired/ on ``branch`` without touching any working tree."""
    env = {**repo.env, "GIT_INDEX_FILE": str(tmp / "index")}

    def git(*args: str) -> str:
        argv = ("git", *args)
        done = subprocess.run(
            argv, cwd=repo.path, env=env, capture_output=True, text=True, check=True, timeout=60
        )
        return done.stdout.strip()

    git("read-tree", branch)
    for name, text in files.items():
        blob = tmp / "blob"
        blob.write_text(text)
        oid = git("hash-object", "-w", str(blob))
        git("update-index", "--add", "--cacheinfo", f"100644,{oid},desired/{name}")
    commit = git("commit-tree", git("write-tree"), "-p", branch, "-m", "desired via plumbing")
    git("update-ref", f"refs/heads/{branch}", commit)
    return commit


# -- the remembered Workspace keeps its guards ------------------------------------------------


def test_checkout_of_an_older_desired_without_workspace_keeps_its_guards(repo: Repo) -> None:
    commit_desired(repo, {"lanes.yaml": lanes_yaml("a")}, "old desired: one lane, no Workspace")
    repo.git("branch", "old")
    commit_desired(
        repo, {"workspace.yaml": GUARDED, "lanes.yaml": lanes_yaml("a", "b", "c")}, "guarded"
    )
    once(repo)
    assert len(repo.worktrees()) == 3
    repo.git("checkout", "-q", "old")  # desired/ flips: no Workspace, two lanes fewer
    out = once(repo)
    assert "using the last one declared here (shop" in out
    assert len(repo.worktrees()) == 2, "maxDeletionsPerPass of the remembered Workspace"
    assert "DeletionPending" in out
    plan = json.loads(repo.ctl("plan", "-o", "json").stdout)
    assert len(plan["actions"]) == 1 and plan["pending"] == []
    once(repo)
    assert repo.worktrees() == [str(repo.root / "a")]


def test_stash_of_every_desired_file_keeps_the_guards(repo: Repo) -> None:
    guarded = GUARDED.replace(
        "{maxDeletionsPerPass: 1}", "{maxDeletionsPerPass: 1, allowEmpty: true}"
    )
    repo.write("workspace.yaml", guarded)
    repo.write("lanes.yaml", lanes_yaml("a", "b", "c"))
    once(repo)
    repo.git("stash", "-q", "-u")  # desired/ was never committed: it is all gone now
    assert not repo.desired.exists()
    out = once(repo)
    assert "using the last one declared here (shop" in out
    assert len(repo.worktrees()) == 2  # allowEmpty came back too, and so did the limit


def test_the_whole_spec_is_remembered_and_rebuilt(repo: Repo) -> None:
    repo.write(
        "workspace.yaml",
        """\
apiVersion: lanes/v1
kind: Workspace
metadata: {name: shop}
spec:
  worktreeRoot: .lanes/trees
  tmuxSocket: shop-sock
  allowEmpty: true
  maxDeletionsPerPass: 2
  maxParallelLanes: 3
  resyncSeconds: 7s
  desiredRef: main
""",
    )
    repo.git("add", "-A", "desired")
    repo.git("commit", "-q", "-m", "workspace")
    declared = wiring.resolve_paths(repo.desired, _loaded(repo))
    wiring.build(declared).close()  # remembers it
    memory = repo.path / ".lanes" / "workspace.json"
    assert memory.stat().st_mode & 0o777 == 0o600
    recalled = wiring.resolve_paths(repo.desired, DesiredState.empty())
    assert recalled.recalled and recalled.spec == declared.spec
    assert (recalled.root, recalled.tmux_socket) == (declared.root, declared.tmux_socket)
    effective = wiring.effective(recalled, DesiredState.empty()).workspace
    assert effective.name == "shop" and effective.spec == declared.spec


def test_a_memory_of_the_previous_release_is_still_used(repo: Repo) -> None:
    memory = repo.path / ".lanes" / "workspace.json"
    memory.parent.mkdir()
    root = repo.path / ".lanes" / "old-root"
    memory.write_text(json.dumps({"workspace": "shop", "root": str(root), "tmuxSocket": "s"}))
    recalled = wiring.resolve_paths(repo.desired, DesiredState.empty())
    assert recalled.recalled and (recalled.workspace, recalled.root) == ("shop", root)
    assert recalled.spec == WorkspaceSpec()  # identity only: default settings


def _loaded(repo: Repo) -> DesiredState:
    from controller.runtime import sources

    loaded = sources.load(repo.desired, follow=False).result
    assert isinstance(loaded, DesiredState)
    return loaded


def test_an_unreadable_memory_applies_nothing(repo: Repo) -> None:
    repo.write("workspace.yaml", GUARDED)
    repo.write("lanes.yaml", lanes_yaml("a", "b"))
    once(repo)
    (repo.desired / "workspace.yaml").unlink()
    repo.write("lanes.yaml", lanes_yaml("a"))
    memory = repo.path / ".lanes" / "workspace.json"
    memory.write_text('{"workspace": "shop", "spec": {"maxDeletionsPerPass": 0}}')
    out = once(repo, code=1)
    assert "workspace.json is not a valid Workspace memory" in out
    assert len(repo.worktrees()) == 2


# -- --desired-ref and desiredRef -------------------------------------------------------------


def test_desired_ref_reads_the_commit_not_the_working_tree(repo: Repo) -> None:
    commit = commit_desired(repo, {"lanes.yaml": lanes_yaml("a", "b")}, "two lanes")
    repo.write("lanes.yaml", lanes_yaml("c"))  # uncommitted: must not count
    repo.write(".hidden/x.yaml", "not: yaml: at: all")  # hidden folders are skipped, as on disk
    plan = json.loads(repo.ctl("plan", "--desired-ref", "main", "-o", "json").stdout)
    assert plan["desired"] == {"folder": str(repo.desired), "ref": "main", "commit": commit}
    assert sorted(a["lane"] for a in plan["actions"]) == ["a", "b"]
    out = once(repo, "--desired-ref", "main")
    assert f"as committed at main ({commit[:12]})" in out
    assert repo.worktrees() == [str(repo.root / "a"), str(repo.root / "b")]
    done = repo.ctl("--once", "--desired-ref", "main", "-o", "json")
    assert json.loads(done.stdout)["desired"]["commit"] == commit
    repo.env = {**repo.env, "CONTROLLER_DESIRED_REF": "main"}  # the option's variable
    status = json.loads(repo.ctl("status", "-o", "json").stdout)
    assert status["desired"] == {"folder": str(repo.desired), "ref": "main", "commit": commit}
    assert [lane["name"] for lane in status["lanes"]] == ["a", "b"]


def test_problems_at_a_ref_name_the_path_in_the_tree(repo: Repo) -> None:
    broken = "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: x}\nspec:\n  brnach: y\n"
    commit_desired(repo, {"lanes.yaml": lanes_yaml("a"), "sub/broken.yaml": broken}, "a typo")
    (repo.desired / "sub" / "broken.yaml").unlink()  # fixed in the working tree, not committed
    done = repo.ctl("--once", "--desired-ref", "main")
    assert done.returncode == 1
    assert "desired/sub/broken.yaml:5:" in done.stderr and "brnach" in done.stderr
    assert "as committed at main" in done.stderr
    assert repo.worktrees() == []
    bad = repo.ctl("validate", "--desired-ref", "main", "-o", "json")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["problems"][0]["path"] == "desired/sub/broken.yaml"
    assert repo.ctl("validate").returncode == 0  # the working tree is what validate checks


def test_an_unknown_ref_is_an_error(repo: Repo) -> None:
    repo.lanes("a")
    done = repo.ctl("--once", "--desired-ref", "no-such-branch")
    assert done.returncode == 1 and "does not name a commit" in done.stderr
    usage = repo.ctl("plan", "--desired-ref", "--output=json")
    assert usage.returncode == 2 and "must be a git revision" in usage.stderr
    assert repo.worktrees() == []


def test_workspace_desired_ref_survives_stash_and_checkout(repo: Repo) -> None:
    ws = GUARDED.replace("maxDeletionsPerPass: 1", "desiredRef: main")
    commit_desired(repo, {"lanes.yaml": lanes_yaml("a")}, "old: no Workspace")
    repo.git("branch", "old")
    commit_desired(repo, {"workspace.yaml": ws, "lanes.yaml": lanes_yaml("a", "b", "c")}, "ref")
    repo.write("lanes.yaml", lanes_yaml("a"))  # an edit not committed yet
    out = once(repo)
    assert "as committed at main" in out
    assert len(repo.worktrees()) == 3
    repo.git("stash", "-q", "-u")
    repo.git("checkout", "-q", "old")  # the working tree now has one lane and no Workspace
    out = once(repo)
    assert "as committed at main" in out and "No changes" in out
    assert len(repo.worktrees()) == 3


def test_workspace_at_the_ref_must_name_the_ref(repo: Repo) -> None:
    commit_desired(repo, {"workspace.yaml": GUARDED, "lanes.yaml": lanes_yaml("a")}, "no ref")
    repo.write("workspace.yaml", GUARDED.replace("maxDeletionsPerPass: 1", "desiredRef: main"))
    repo.write("lanes.yaml", lanes_yaml("b"))
    done = repo.ctl("--once")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "desired/workspace.yaml:1: this Workspace reads desired state from main" in done.stderr
    assert "has a Workspace without desiredRef" in done.stderr
    assert repo.worktrees() == []
    once(repo, "--desired-ref", "main")  # the option wins over the field, without the check
    assert repo.worktrees() == [str(repo.root / "a")]


def test_daemon_follows_the_ref_not_the_working_tree(repo: Repo, tmp_path: Path) -> None:
    commit_desired(repo, {"lanes.yaml": lanes_yaml("a")}, "one lane")
    repo.git("branch", "deploy")
    argv = (sys.executable, "-m", "controller", "run", "--desired-ref", "deploy")
    daemon = subprocess.Popen(
        (*argv, "--resync", "600"),
        cwd=repo.path,
        env=repo.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: repo.worktrees() == [str(repo.root / "a")])
        repo.lanes("x")  # the working tree is not what the daemon reads
        commit_without_checkout(repo, "deploy", {"lanes.yaml": lanes_yaml("a", "b")}, tmp_path)
        wait_until(lambda: len(repo.worktrees()) == 2)
        assert repo.worktrees() == [str(repo.root / "a"), str(repo.root / "b")]
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert "desired ref moved" in err


def test_daemon_remembers_a_guard_edited_while_it_runs(repo: Repo) -> None:
    repo.write("workspace.yaml", GUARDED.replace("{maxDeletionsPerPass: 1}", "{}"))
    repo.lanes("a", "b", "c")
    argv = (sys.executable, "-m", "controller", "run", "--resync", "1", "--debounce", "0.1")
    daemon = subprocess.Popen(
        argv, cwd=repo.path, env=repo.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    memory = repo.path / ".lanes" / "workspace.json"
    try:
        wait_until(lambda: len(repo.worktrees()) == 3)
        repo.write("workspace.yaml", GUARDED)  # the same workspace, a new guard
        wait_until(lambda: '"maxDeletionsPerPass": 1' in memory.read_text())
        (repo.desired / "workspace.yaml").unlink()  # then it goes, and two lanes with it
        repo.lanes("a")
        wait_until(lambda: repo.worktrees() == [str(repo.root / "a")])
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    lines = repo.ctl("events", "-o", "json").stdout.splitlines()
    removed = [json.loads(x) for x in lines if '"LaneRemoved"' in x]
    assert len({e["correlationId"] for e in removed}) == 2  # one removal per pass
