"""Removal never loses work, against real git: inner repositories, work `git status` does not
show, odd ignored files, retried removals, and damaged worktree records.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Repo

pytestmark = pytest.mark.integration


def once(repo: Repo, *args: str, code: int = 0) -> str:
    done = repo.ctl("--once", *args)
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout + done.stderr


def rescue_refs(repo: Repo, lane: str) -> list[str]:
    return repo.git("for-each-ref", "--format=%(refname)", f"refs/lanes/rescue/{lane}/").split()


def inner_refs(repo: Repo, lane: str) -> list[str]:
    prefix = f"refs/lanes/rescue-inner/{lane}/"
    return repo.git("for-each-ref", "--format=%(refname)", prefix).split()


def quarantined(repo: Repo) -> list[Path]:
    folder = repo.path / ".lanes" / "quarantine"
    return sorted(folder.iterdir()) if folder.exists() else []


def reachable(repo: Repo, sha: str) -> bool:
    """Whether a ref of the main repository keeps ``sha`` (it survives `git gc`)."""
    return bool(repo.git("for-each-ref", "--contains", sha, "refs/lanes/"))


def make_due(repo: Repo) -> None:
    """Let a lane that backs off after a failure be tried again at once."""
    with sqlite3.connect(repo.path / ".lanes" / "state.db") as conn:
        conn.execute("UPDATE lane_memory SET next_attempt_at = '2000-01-01 00:00:00'")


def one_inner_ref(repo: Repo, lane: str, name: str) -> str:
    """The inner ref ``refs/lanes/rescue-inner/<lane>/<leaf>/<n>-<path>/<name>``."""
    (ref,) = [r for r in inner_refs(repo, lane) if "/".join(r.split("/")[6:]) == name]
    return ref


# --- inner repositories ---------------------------------------------------------------------


def with_submodule(repo: Repo, tmp_path: Path) -> None:
    """A submodule ``sub`` (cloned from a local repository) initialised in the main checkout."""
    repo.git("config", "--global", "protocol.file.allow", "always")  # a local-path submodule
    inner = tmp_path / "inner"
    inner.mkdir()
    repo.git("init", "-q", "-b", "main", cwd=inner)
    (inner / "i.txt").write_text("inner\n")
    repo.git("add", ".", cwd=inner)
    repo.git("commit", "-q", "-m", "inner", cwd=inner)
    repo.git("submodule", "add", "-q", str(inner), "sub")
    repo.git("commit", "-q", "-m", "add sub")


def test_new_worktrees_initialise_the_submodules_the_main_checkout_has(
    repo: Repo, tmp_path: Path
) -> None:
    with_submodule(repo, tmp_path)
    repo.lanes("a")
    out = once(repo)
    assert (repo.root / "a" / "sub" / "i.txt").read_text() == "inner\n", out


def test_a_submodule_that_cannot_be_checked_out_keeps_the_lane_and_says_so(
    repo: Repo, tmp_path: Path
) -> None:
    with_submodule(repo, tmp_path)
    repo.git("config", "submodule.sub.url", str(tmp_path / "gone"))
    repo.lanes("a")
    out = once(repo)
    assert "submodules not checked out" in out and "submodule update --init" in out
    assert repo.worktrees() == [str(repo.root / "a")]
    kinds = [json.loads(x)["kind"] for x in repo.ctl("events", "-o", "json").stdout.splitlines()]
    assert "SubmodulesNotCheckedOut" in kinds
    assert "No changes" in once(repo)


def test_submodule_commits_and_files_are_rescued(repo: Repo, tmp_path: Path) -> None:
    with_submodule(repo, tmp_path)
    repo.lanes("a", "keep")
    once(repo)
    sub = repo.root / "a" / "sub"
    repo.git("submodule", "update", "--init", "-q", cwd=repo.root / "a")
    repo.git("checkout", "-q", "-b", "work", cwd=sub)
    (sub / "c.txt").write_text("committed in the submodule\n")
    repo.git("add", "c.txt", cwd=sub)
    repo.git("commit", "-q", "-m", "inner work", cwd=sub)
    inner_commit = repo.git("rev-parse", "HEAD", cwd=sub)
    (sub / "i.txt").write_text("edited\n")
    (sub / "u.txt").write_text("untracked\n")
    repo.lanes("keep")
    out = once(repo)
    assert "work saved to refs/lanes/rescue/a/" in out
    assert not (repo.root / "a").exists()
    assert reachable(repo, inner_commit)
    work = one_inner_ref(repo, "a", "work")
    assert repo.git("show", f"{work}:i.txt") == "edited"
    assert repo.git("show", f"{work}:u.txt") == "untracked"
    assert repo.git("show", f"{work}:c.txt") == "committed in the submodule"
    assert repo.git("rev-parse", f"{work}^1") == inner_commit
    assert repo.git("rev-parse", one_inner_ref(repo, "a", "heads/work")) == inner_commit
    (outer,) = rescue_refs(repo, "a")
    message = repo.git("log", "-1", "--format=%B", outer)  # says what was saved where
    assert f"sub (submodule): {work.removesuffix('work')}" in message


def test_a_clean_lane_with_a_submodule_is_removed(repo: Repo, tmp_path: Path) -> None:
    with_submodule(repo, tmp_path)
    repo.lanes("a", "keep")
    once(repo)
    repo.git("submodule", "update", "--init", "-q", cwd=repo.root / "a")
    repo.lanes("keep")
    out = once(repo)
    assert not (repo.root / "a").exists(), out
    assert rescue_refs(repo, "a") == [] and inner_refs(repo, "a") == []  # nothing to lose


def test_nested_repository_commits_and_files_are_rescued(repo: Repo) -> None:
    repo.lanes("a", "keep")
    once(repo)
    nested = repo.root / "a" / "tools" / "nested"
    nested.mkdir(parents=True)
    repo.git("init", "-q", "-b", "trunk", cwd=nested)
    (nested / "n.txt").write_text("first\n")
    (nested / ".gitignore").write_text(".env\n")
    repo.git("add", ".", cwd=nested)
    repo.git("commit", "-q", "-m", "nested work", cwd=nested)
    nested_commit = repo.git("rev-parse", "HEAD", cwd=nested)
    (nested / "n.txt").write_text("edited\n")
    (nested / "u.txt").write_text("untracked\n")
    (nested / ".env").write_text("SECRET=1\n")  # ignored by the nested repository
    repo.lanes("keep")
    out = once(repo)
    assert "work saved to refs/lanes/rescue/a/" in out
    assert reachable(repo, nested_commit)
    work = one_inner_ref(repo, "a", "work")
    assert repo.git("show", f"{work}:n.txt") == "edited"
    assert repo.git("show", f"{work}:u.txt") == "untracked"
    assert repo.git("rev-parse", one_inner_ref(repo, "a", "heads/trunk")) == nested_commit
    (kept,) = quarantined(repo)
    assert (kept / "tools" / "nested" / ".env").read_text() == "SECRET=1\n"


def test_nested_repository_without_a_commit_is_rescued(repo: Repo) -> None:
    repo.lanes("a", "keep")
    once(repo)
    nested = repo.root / "a" / "scratch"
    nested.mkdir()
    repo.git("init", "-q", cwd=nested)
    (nested / "idea.txt").write_text("only here\n")
    repo.lanes("keep")
    out = once(repo)
    assert "work saved to refs/lanes/rescue/a/" in out
    assert not (repo.root / "a").exists()
    assert repo.git("show", f"{one_inner_ref(repo, 'a', 'work')}:idea.txt") == "only here"


def test_repositories_nested_too_deep_refuse_the_removal_with_a_clear_condition(
    repo: Repo,
) -> None:
    repo.lanes("a", "keep")
    once(repo)
    folder = repo.root / "a"
    for level in range(9):  # one deeper than the controller looks
        folder = folder / f"r{level}"
        folder.mkdir()
        repo.git("init", "-q", cwd=folder)
    (folder / "deep.txt").write_text("deep\n")
    repo.lanes("keep")
    out = once(repo, code=2)  # a refused removal is drift that needs a person: exit 2
    assert "refused" in out and "nested more than 8 deep" in out
    assert (folder / "deep.txt").exists()
    status = json.loads(repo.ctl("status", "-o", "json").stdout)
    (lane,) = [x for x in status["lanes"] if x["name"] == "a"]
    assert lane["phase"] == "blocked"
    assert [(c["type"], c["reason"]) for c in lane["conditions"]] == [
        ("CleanupRefused", "RepositoriesTooDeep")
    ]


# --- work that `git status` does not show ---------------------------------------------------


@pytest.mark.parametrize("flag", ["--skip-worktree", "--assume-unchanged"])
def test_edits_hidden_from_git_status_are_rescued(repo: Repo, flag: str) -> None:
    repo.lanes("a", "keep")
    once(repo)
    tree = repo.root / "a"
    repo.git("update-index", flag, "README.md", cwd=tree)
    (tree / "README.md").write_text("hidden edit\n")
    assert repo.git("status", "--porcelain", cwd=tree) == ""  # git status shows nothing
    repo.lanes("keep")
    out = once(repo)
    assert "work saved to refs/lanes/rescue/a/" in out
    (ref,) = rescue_refs(repo, "a")
    assert repo.git("show", f"{ref}:README.md") == "hidden edit"


def test_hidden_edits_count_as_uncommitted_for_refuse(repo: Repo) -> None:
    repo.lanes("a", "keep", onDirtyCleanup="refuse")
    once(repo)
    tree = repo.root / "a"
    repo.git("update-index", "--skip-worktree", "README.md", cwd=tree)
    (tree / "README.md").write_text("hidden edit\n")
    repo.lanes("keep", onDirtyCleanup="refuse")
    out = once(repo, code=2)  # a refused removal is drift that needs a person: exit 2
    assert "refused" in out and "README.md" in out
    assert (tree / "README.md").read_text() == "hidden edit\n"


def test_commits_whose_branch_ref_was_deleted_stay_reachable(repo: Repo) -> None:
    repo.lanes("a", "keep")
    once(repo)
    tree = repo.root / "a"
    (tree / "work.txt").write_text("committed\n")
    repo.git("add", "work.txt", cwd=tree)
    repo.git("commit", "-q", "-m", "lane work", cwd=tree)
    lane_commit = repo.git("rev-parse", "HEAD", cwd=tree)
    repo.git("update-ref", "-d", "refs/heads/lane/a")
    repo.lanes("keep")
    out = once(repo)
    assert "work saved to refs/lanes/rescue/a/" in out
    (ref,) = rescue_refs(repo, "a")
    assert repo.git("rev-parse", f"{ref}^1") == lane_commit
    assert reachable(repo, lane_commit)


def test_a_lane_in_the_middle_of_a_conflict_is_removed_with_its_files(repo: Repo) -> None:
    repo.lanes("a", "keep")
    once(repo)
    tree = repo.root / "a"
    repo.git("branch", "side")
    (tree / "README.md").write_text("lane version\n")
    repo.git("commit", "-q", "-am", "lane", cwd=tree)
    repo.git("worktree", "add", "-q", str(repo.path.parent / "side"), "side")
    (repo.path.parent / "side" / "README.md").write_text("side version\n")
    repo.git("commit", "-q", "-am", "side", cwd=repo.path.parent / "side")
    repo.git("merge", "-q", "side", cwd=tree, check=False)
    assert "UU README.md" in repo.git("status", "--porcelain", cwd=tree)
    repo.lanes("keep")
    out = once(repo)
    assert "work saved to refs/lanes/rescue/a/" in out
    (ref,) = rescue_refs(repo, "a")
    assert "<<<<<<<" in repo.git("show", f"{ref}:README.md")  # the files as they were


# --- odd ignored files ----------------------------------------------------------------------


def ignore(repo: Repo, *patterns: str) -> None:
    (repo.path / ".gitignore").write_text("".join(f"{p}\n" for p in patterns))
    repo.git("add", ".gitignore")
    repo.git("commit", "-q", "-m", "ignore")


def test_a_folder_of_only_ignored_files_is_moved_once(repo: Repo) -> None:
    ignore(repo, "cfg/.env")
    repo.lanes("a", "keep")
    once(repo)
    (repo.root / "a" / "cfg").mkdir()
    (repo.root / "a" / "cfg" / ".env").write_text("TOKEN=1\n")
    repo.lanes("keep")
    once(repo)
    assert not (repo.root / "a").exists()
    (kept,) = quarantined(repo)
    assert (kept / "cfg" / ".env").read_text() == "TOKEN=1\n"


def test_an_ignored_file_whose_name_is_not_utf8_is_moved(repo: Repo) -> None:
    ignore(repo, "*.log")
    repo.lanes("a", "keep")
    once(repo)
    name = os.fsdecode(b"bad\xffname.log")  # the exact bytes, as Python spells them
    (repo.root / "a" / name).write_bytes(b"log\n")
    repo.lanes("keep")
    once(repo)
    assert not (repo.root / "a").exists()
    (kept,) = quarantined(repo)
    assert [p.name for p in kept.iterdir()] == [name]
    assert (kept / name).read_bytes() == b"log\n"


def test_an_ignored_symlink_is_moved_as_a_link_never_followed(repo: Repo, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big.bin").write_text("not ours\n")
    ignore(repo, "data")
    repo.lanes("a", "keep")
    once(repo)
    (repo.root / "a" / "data").symlink_to(outside)
    repo.lanes("keep")
    once(repo)
    assert not (repo.root / "a").exists()
    (kept,) = quarantined(repo)
    assert (kept / "data").is_symlink() and (kept / "data").readlink() == outside
    assert (outside / "big.bin").read_text() == "not ours\n"  # the target is untouched


def test_a_retried_removal_reuses_its_rescue(repo: Repo) -> None:
    ignore(repo, ".env")
    repo.lanes("a", "keep")
    once(repo)
    (repo.root / "a" / "wip.txt").write_text("wip\n")
    (repo.root / "a" / ".env").write_text("TOKEN=1\n")
    blocker = repo.path / ".lanes" / "quarantine"
    blocker.write_text("a file where the quarantine folder goes: moving fails\n")
    repo.lanes("keep")
    once(repo, code=2)
    assert len(rescue_refs(repo, "a")) == 1 and (repo.root / "a").exists()
    blocker.unlink()
    make_due(repo)
    out = once(repo)
    assert not (repo.root / "a").exists()
    (ref,) = rescue_refs(repo, "a")  # the same one, not a second
    assert f"work saved to {ref}" in out
    assert repo.git("show", f"{ref}:wip.txt") == "wip"
    (kept,) = quarantined(repo)
    assert (kept / ".env").read_text() == "TOKEN=1\n"


# --- damaged worktree records ---------------------------------------------------------------


def damage(repo: Repo, lane: str, tmp_path: Path) -> None:
    """Point git's record of the lane's worktree somewhere else (as a moved repository does)."""
    (repo.path / ".git" / "worktrees" / lane / "gitdir").write_text(
        f"{tmp_path / 'elsewhere' / '.git'}\n"
    )


def test_a_damaged_worktree_record_is_repaired_not_quarantined(repo: Repo, tmp_path: Path) -> None:
    repo.lanes("a")
    once(repo)
    (repo.root / "a" / "wip.txt").write_text("wip\n")
    damage(repo, "a", tmp_path)
    plan = repo.ctl("plan").stdout
    assert "repair" in plan and "quarantine" not in plan, plan
    once(repo)
    assert repo.worktrees() == [str(repo.root / "a")]
    assert (repo.root / "a" / "wip.txt").read_text() == "wip\n"
    assert quarantined(repo) == []
    assert repo.ctl("plan", "--detailed-exitcode").returncode == 0
    kinds = [json.loads(x)["kind"] for x in repo.ctl("events", "-o", "json").stdout.splitlines()]
    assert "WorktreeRepaired" in kinds


def test_an_undeclared_lane_with_a_damaged_record_is_removed_with_its_work(
    repo: Repo, tmp_path: Path
) -> None:
    repo.lanes("a", "keep")
    once(repo)
    (repo.root / "a" / "wip.txt").write_text("wip\n")
    damage(repo, "a", tmp_path)
    repo.lanes("keep")
    once(repo)
    assert not (repo.root / "a").exists()
    (ref,) = rescue_refs(repo, "a")
    assert repo.git("show", f"{ref}:wip.txt") == "wip"
    assert repo.worktrees() == [str(repo.root / "keep")]
    assert repo.ctl("plan", "--detailed-exitcode").returncode == 0
