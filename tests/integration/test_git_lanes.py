"""Lanes against real git repositories: provisioning, removal without loss, guards, orphans."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from tests.conftest import Repo

pytestmark = pytest.mark.integration


def once(repo: Repo, *args: str, code: int = 0) -> str:
    done = repo.ctl("--once", *args)
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_provision_lanes_and_converge(repo: Repo) -> None:
    repo.lanes("auth", "billing")
    out = once(repo)
    assert "Apply complete: 2 added" in out
    assert repo.worktrees() == [str(repo.root / "auth"), str(repo.root / "billing")]
    assert repo.git("rev-parse", "--abbrev-ref", "HEAD", cwd=repo.root / "auth") == "lane/auth"
    assert repo.git("status", "--porcelain", "--", ".", ":!desired") == ""  # main stays clean
    assert (repo.root / ".gitignore").is_file()
    assert "No changes" in once(repo)
    assert repo.ctl("plan", "--detailed-exitcode").returncode == 0


def test_existing_branch_is_reused_not_reset(repo: Repo) -> None:
    repo.git("branch", "lane/auth")
    repo.git("worktree", "add", "-q", str(repo.path.parent / "tmpwt"), "lane/auth")
    (repo.path.parent / "tmpwt" / "work.txt").write_text("precious\n")
    repo.git("add", ".", cwd=repo.path.parent / "tmpwt")
    repo.git("commit", "-q", "-m", "work on the lane", cwd=repo.path.parent / "tmpwt")
    tip = repo.git("rev-parse", "lane/auth")
    repo.git("worktree", "remove", str(repo.path.parent / "tmpwt"))
    repo.lanes("auth")
    once(repo)
    assert repo.git("rev-parse", "HEAD", cwd=repo.root / "auth") == tip
    assert (repo.root / "auth" / "work.txt").read_text() == "precious\n"


def test_branch_and_base(repo: Repo) -> None:
    first = repo.git("rev-parse", "HEAD")
    (repo.path / "later.txt").write_text("x")
    repo.git("add", ".")
    repo.git("commit", "-q", "-m", "later")
    repo.lanes("old", branch="feat/from-first", base=first)
    once(repo)
    tree = repo.root / "old"
    assert repo.git("rev-parse", "--abbrev-ref", "HEAD", cwd=tree) == "feat/from-first"
    assert repo.git("rev-parse", "HEAD", cwd=tree) == first
    assert repo.git("config", "--get", "branch.feat/from-first.merge", check=False) == ""


def test_dirty_removal_preserves_work_in_rescue_ref(repo: Repo) -> None:
    repo.lanes("auth", "keep")
    once(repo)
    tree = repo.root / "auth"
    (tree / "README.md").write_text("edited\n")
    (tree / "new.txt").write_text("untracked\n")
    (tree / "staged.txt").write_text("staged version\n")
    repo.git("add", "staged.txt", cwd=tree)
    (tree / "staged.txt").write_text("worktree version\n")
    repo.lanes("keep")
    out = once(repo)
    assert "work saved to refs/lanes/rescue/auth/" in out
    assert not tree.exists()
    assert "lane/auth" in repo.branches()  # the branch is kept
    refs = repo.git("for-each-ref", "--format=%(refname)", "refs/lanes/rescue/auth/").split()
    assert len(refs) == 1
    ref = refs[0]
    assert repo.git("show", f"{ref}:README.md") == "edited"
    assert repo.git("show", f"{ref}:new.txt") == "untracked"
    assert repo.git("show", f"{ref}:staged.txt") == "worktree version"
    assert repo.git("show", f"{ref}^2:staged.txt") == "staged version"  # the index, too
    assert repo.git("rev-parse", f"{ref}^1") == repo.git("rev-parse", "lane/auth")


def test_clean_removal_makes_no_rescue_ref(repo: Repo) -> None:
    repo.lanes("auth", "keep")
    once(repo)
    repo.lanes("keep")
    once(repo)
    assert repo.git("for-each-ref", "refs/lanes/") == ""
    assert repo.worktrees() == [str(repo.root / "keep")]


def test_detached_head_commits_are_rescued(repo: Repo) -> None:
    repo.lanes("auth", "keep")
    once(repo)
    tree = repo.root / "auth"
    repo.git("checkout", "-q", "--detach", cwd=tree)
    (tree / "lost.txt").write_text("only here\n")
    repo.git("add", ".", cwd=tree)
    repo.git("commit", "-q", "-m", "commit on no branch", cwd=tree)
    orphan = repo.git("rev-parse", "HEAD", cwd=tree)
    repo.lanes("keep")
    once(repo)
    ref = repo.git("for-each-ref", "--format=%(refname)", "refs/lanes/rescue/auth/")
    assert repo.git("rev-parse", f"{ref}^1") == orphan


def test_refuse_policy_blocks_and_keeps_worktree(repo: Repo) -> None:
    repo.lanes("auth", onDirtyCleanup="refuse")
    once(repo)
    (repo.root / "auth" / "wip.txt").write_text("wip\n")
    repo.write("lanes.yaml", "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: other}\n")
    out = once(repo, code=2)  # not converged: the refused cleanup needs a person
    assert "refused" in out and "Not converged" in out
    assert (repo.root / "auth" / "wip.txt").exists()
    status = json.loads(repo.ctl("status", "-o", "json").stdout)
    auth = next(lane for lane in status["lanes"] if lane["name"] == "auth")
    assert auth["phase"] == "blocked"
    assert auth["conditions"][0]["type"] == "CleanupRefused"
    assert "wip.txt" in auth["conditions"][0]["message"]
    (repo.root / "auth" / "wip.txt").unlink()
    once(repo)  # converged again: exit 0
    assert not (repo.root / "auth").exists()


def test_invalid_yaml_applies_nothing(repo: Repo) -> None:
    repo.lanes("auth")
    once(repo)
    repo.write("lanes.yaml", "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: newlane}\n")
    repo.write(
        "broken.yaml", "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: x}\nspec:\n  brnach: y\n"
    )
    done = repo.ctl("--once")
    assert done.returncode == 1
    assert "desired/broken.yaml:5:" in done.stderr and "brnach" in done.stderr
    assert repo.worktrees() == [str(repo.root / "auth")]  # auth not removed, newlane not created


def test_empty_desired_is_refused(repo: Repo) -> None:
    repo.lanes("auth")
    once(repo)
    (repo.desired / "lanes.yaml").unlink()
    out = once(repo, code=1)
    assert "--allow-empty" in out
    assert repo.worktrees() == [str(repo.root / "auth")]
    once(repo, "--allow-empty")
    assert repo.worktrees() == []


def test_missing_desired_folder_is_refused(repo: Repo) -> None:
    repo.lanes("auth")
    once(repo)
    (repo.desired / "lanes.yaml").unlink()
    repo.desired.rmdir()
    once(repo, code=1)
    assert repo.worktrees() == [str(repo.root / "auth")]


def test_max_deletions_per_pass(repo: Repo) -> None:
    names = [f"l{i}" for i in range(5)]
    repo.lanes(*names)
    once(repo)
    repo.write(
        "lanes.yaml",
        "apiVersion: lanes/v1\nkind: Workspace\nmetadata: {name: default}\n"
        "spec: {maxDeletionsPerPass: 2}\n",
    )
    once(repo, "--allow-empty")
    assert len(repo.worktrees()) == 3
    plan = json.loads(repo.ctl("plan", "-o", "json", "--allow-empty").stdout)
    assert len(plan["actions"]) == 2 and len(plan["pending"]) == 1
    once(repo, "--allow-empty")
    once(repo, "--allow-empty")
    assert repo.worktrees() == []


def test_vanished_directory_is_pruned_and_recreated(repo: Repo) -> None:
    repo.lanes("auth")
    once(repo)

    shutil.rmtree(repo.root / "auth")
    once(repo)
    assert repo.worktrees() == [str(repo.root / "auth")]
    assert "prunable" not in repo.git("worktree", "list", "--porcelain")


def test_directory_git_forgot_is_quarantined_not_deleted(repo: Repo) -> None:
    repo.lanes("auth")
    once(repo)
    (repo.root / "auth" / "notes.txt").write_text("mine\n")

    shutil.rmtree(repo.path / ".git" / "worktrees" / "auth")
    once(repo)
    quarantined = list((repo.path / ".lanes" / "quarantine").iterdir())
    assert len(quarantined) == 1
    assert (quarantined[0] / "notes.txt").read_text() == "mine\n"
    assert repo.worktrees() == [str(repo.root / "auth")]


def test_record_without_worktree_is_forgotten(repo: Repo) -> None:
    repo.lanes("auth", "keep")
    once(repo)
    repo.git("worktree", "remove", str(repo.root / "auth"))
    repo.lanes("keep")
    once(repo)
    status = json.loads(repo.ctl("status", "-o", "json").stdout)
    assert [lane["name"] for lane in status["lanes"]] == ["keep"]


def test_strays_are_left_alone(repo: Repo) -> None:
    repo.lanes("auth")
    once(repo)
    stray = repo.root / "not-mine"
    stray.mkdir()
    (stray / "file").write_text("x")
    occupied = repo.root / "taken"
    occupied.mkdir()
    repo.lanes("auth", "taken")
    out = once(repo, code=2)  # `taken` cannot be provisioned until someone moves the folder
    assert "not in the controller's inventory" in out
    assert "PathOccupied" in out
    assert (stray / "file").exists() and occupied.exists()


def test_failure_part_way_leaves_nothing_behind(repo: Repo) -> None:
    hook = repo.path / ".git" / "hooks" / "post-checkout"
    hook.write_text("#!/bin/sh\necho 'hook says no' >&2\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    repo.lanes("auth")
    out = once(repo, code=2)
    assert "hook says no" in out or "failed" in out
    assert repo.worktrees() == []
    assert "lane/auth" not in repo.branches()
    assert repo.root_entries() in ([], [".gitignore"])
    status = json.loads(repo.ctl("status", "-o", "json").stdout)
    auth = status["lanes"][0]
    assert auth["phase"] == "new"
    assert "BackingOff" in [c["type"] for c in auth["conditions"]]
    hook.unlink()


def test_unreadable_git_changes_nothing(repo: Repo, tmp_path: Path) -> None:
    repo.lanes("auth")
    once(repo)
    shim = tmp_path / "shim"
    shim.mkdir()
    real = shutil.which("git")
    (shim / "git").write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do\n'
        '  [ "$a" = list ] && { echo "fatal: disk on fire" >&2; exit 128; }\n'
        "done\n"
        f'exec {real} "$@"\n'
    )
    (shim / "git").chmod(0o755)
    repo.lanes("other")
    repo.env = {**repo.env, "PATH": f"{shim}:{repo.env['PATH']}"}
    out = once(repo, code=2)
    assert "ObservationUnknown" in out and "disk on fire" in out
    assert (repo.root / "auth").exists() and not (repo.root / "other").exists()


def test_store_is_private_sqlite_in_wal_mode(repo: Repo) -> None:
    repo.lanes("auth")
    once(repo)
    db = repo.path / ".lanes" / "state.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_events_are_recorded_with_correlation_ids(repo: Repo) -> None:
    repo.lanes("auth", "billing")
    once(repo)
    lines = repo.ctl("events", "-o", "json").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    provisioned = [e for e in events if e["kind"] == "LaneProvisioned"]
    assert {e["lane"] for e in provisioned} == {"auth", "billing"}
    assert len({e["correlationId"] for e in provisioned}) == 1
    only = [
        json.loads(x)
        for x in repo.ctl("events", "--lane", "auth", "-o", "json").stdout.splitlines()
    ]
    assert only and {e["lane"] for e in only} == {"auth"}


def test_plan_output_is_terraform_like(repo: Repo) -> None:
    repo.lanes("auth")
    done = repo.ctl("plan", "--detailed-exitcode")
    assert done.returncode == 2
    assert "+ auth: create worktree" in done.stdout
    assert "# lane is declared but has no worktree" in done.stdout
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in done.stdout
    assert repo.worktrees() == []  # plan changes nothing


def test_status_json_contract(repo: Repo) -> None:
    repo.lanes("auth")
    once(repo)
    status = json.loads(repo.ctl("status", "--output", "json").stdout)
    assert set(status) >= {"lanes", "participants", "triggers"}
    (lane,) = status["lanes"]
    assert lane["name"] == "auth" and lane["phase"] == "ready" and lane["branch"] == "lane/auth"
    assert lane["worktree"] == str(repo.root / "auth") and Path(lane["worktree"]).is_absolute()
    assert lane["conditions"] == [] and lane["agents"] == []


def _memory(repo: Repo, lane: str) -> tuple[int, str | None]:
    import sqlite3

    with sqlite3.connect(repo.path / ".lanes" / "state.db") as conn:
        row = conn.execute(
            "SELECT failures, last_error FROM lane_memory WHERE name = ?", (lane,)
        ).fetchone()
        conn.execute("UPDATE lane_memory SET next_attempt_at = '2000-01-01 00:00:00'")
    return (row[0], row[1]) if row else (0, None)


def test_failures_back_off_longer_and_stall(repo: Repo) -> None:
    repo.lanes("auth", base="no-such-tag")
    for attempt in (1, 2, 3):
        once(repo, code=2)
        failures, error = _memory(repo, "auth")  # (also makes the next attempt due now)
        assert failures == attempt and error and "no-such-tag" in error
    assert "Stalled" in repo.ctl("plan").stdout
    assert repo.worktrees() == [] and "lane/auth" not in repo.branches()


def test_lock_timeout_zero_fails_at_once(repo: Repo) -> None:
    import fcntl

    repo.lanes("auth")
    lock = repo.path / ".lanes" / "controller.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = repo.ctl("--once", "--lock-timeout", "0")
    assert done.returncode == 1 and "another controller pass" in done.stderr


def test_ignored_files_are_kept_on_removal(repo: Repo) -> None:
    (repo.path / ".gitignore").write_text(".env\nbuild/\n")
    repo.git("add", ".gitignore")
    repo.git("commit", "-q", "-m", "ignore")
    repo.lanes("a", "keep")
    once(repo)
    (repo.root / "a" / ".env").write_text("TOKEN=precious\n")
    (repo.root / "a" / "build").mkdir()
    (repo.root / "a" / "build" / "out.bin").write_text("artifact")
    repo.lanes("keep")
    once(repo)
    assert not (repo.root / "a").exists()
    (kept,) = (repo.path / ".lanes" / "quarantine").iterdir()
    assert (kept / ".env").read_text() == "TOKEN=precious\n"
    assert (kept / "build" / "out.bin").read_text() == "artifact"


def test_lanes_under_an_old_worktree_root_are_still_removed(repo: Repo) -> None:
    repo.lanes("a", "b")
    once(repo)
    repo.write(
        "workspace.yaml",
        "apiVersion: lanes/v1\nkind: Workspace\nmetadata: {name: default}\n"
        "spec: {worktreeRoot: .lanes/other}\n",
    )
    repo.lanes("b", "c")
    once(repo)
    assert repo.worktrees() == sorted(
        [str(repo.root / "b"), str(repo.path / ".lanes" / "other" / "c")]
    )


def test_refused_cleanup_is_not_repeated_in_events(repo: Repo) -> None:
    repo.lanes("a", "keep", onDirtyCleanup="refuse")
    once(repo)
    (repo.root / "a" / "wip.txt").write_text("wip")
    repo.lanes("keep", onDirtyCleanup="refuse")
    for _ in range(3):
        once(repo, code=2)
    kinds = [json.loads(x)["kind"] for x in repo.ctl("events", "-o", "json").stdout.splitlines()]
    assert kinds.count("CleanupRefused") == 1
    assert (repo.root / "a" / "wip.txt").exists()


def test_validate_missing_folder_is_an_error(repo: Repo) -> None:
    done = repo.ctl("validate", "--desired", "nope")
    assert done.returncode == 1 and "no such folder" in done.stderr
