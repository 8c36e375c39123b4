"""`controller rescues` and `rescues restore` against real git: listing what removals saved,
restoring it byte for byte (binary files, odd and non-UTF-8 names, symlinks, executable bits)
into a lane or a new folder, and refusing, changing nothing, where the target has other work.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Repo

pytestmark = pytest.mark.integration

ODD = b"odd \xff name\t.bin"  # not UTF-8, a tab, a space
BINARY = bytes(range(256)) * 4

Snapshot = dict[bytes, tuple[str, bytes, bool]]


def once(repo: Repo, *args: str) -> str:
    done = repo.ctl("--once", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def ctl(repo: Repo, *args: str, code: int = 0) -> str:
    done = repo.ctl(*args)
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout if code == 0 else done.stderr


def snapshot(root: Path) -> Snapshot:
    """Every file and symlink under ``root`` (``.git`` and the ignored ``.env`` aside): its
    kind, exact bytes (or link target) and executable bit, by exact name."""
    found: Snapshot = {}
    for folder, dirs, files in os.walk(root):
        links = [d for d in dirs if (Path(folder) / d).is_symlink()]
        dirs[:] = [d for d in dirs if d != ".git" and d not in links]
        for name in (*files, *links):
            full = Path(folder) / name
            rel = os.fsencode(full.relative_to(root))
            if rel in (b".git", b".env"):
                continue
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                # Bytes: Path.readlink() would normalise the target.
                found[rel] = ("link", os.readlink(os.fsencode(full)), False)  # noqa: PTH115
            else:
                found[rel] = ("file", full.read_bytes(), bool(mode & stat.S_IXUSR))
    return found


def base_commit(repo: Repo) -> None:
    """Tracked files of every kind on main: the lanes branch from here."""
    (repo.path / "bin.dat").write_bytes(BINARY)
    (repo.path / "run.sh").write_text("#!/bin/sh\necho run\n")
    (repo.path / "run.sh").chmod(0o755)
    (repo.path / "gone.txt").write_text("deleted in the lane\n")
    (repo.path / "docs").mkdir()
    (repo.path / "docs" / "guide.md").write_text("guide\n")
    (repo.path / "link").symlink_to("README.md")
    (repo.path / ".gitignore").write_text(".env\n")
    repo.git("add", ".")
    repo.git("commit", "-q", "-m", "files of every kind")


def work(lane: Path) -> None:
    """Unsaved work of every kind: edits, a staged file, deletions, untracked files."""
    (lane / "README.md").write_text("edited in the lane\n")
    (lane / "bin.dat").write_bytes(BINARY[::-1])
    (lane / "run.sh").chmod(0o644)  # the executable bit dropped
    (lane / "gone.txt").unlink()
    (lane / "link").unlink()
    (lane / "link").symlink_to("docs/guide.md")  # a symlink pointed elsewhere
    (lane / "staged.txt").write_text("staged\n")
    Repo(lane, {**os.environ}).git("add", "staged.txt")
    (lane / "new dir").mkdir()
    (lane / "new dir" / os.fsdecode(ODD)).write_bytes(BINARY[:100] + b"\0\r\n")
    (lane / "new dir" / "tool").write_text("#!/bin/sh\n")
    (lane / "new dir" / "tool").chmod(0o755)
    (lane / "to-readme").symlink_to("README.md")  # an untracked symlink
    (lane / ".env").write_text("API_KEY=dev\n")  # ignored: moved to the quarantine


def rescued(repo: Repo) -> tuple[str, Snapshot]:
    """Lane ``a`` with work of every kind, removed: its rescue ref and its files before."""
    base_commit(repo)
    repo.lanes("a", "keep")
    once(repo)
    lane = repo.root / "a"
    work(lane)
    before = snapshot(lane)
    repo.lanes("keep")
    once(repo)
    assert not lane.exists()
    (ref,) = repo.git("for-each-ref", "--format=%(refname)", "refs/lanes/rescue/a/").split()
    return ref, before


def refs(repo: Repo) -> str:
    return repo.git("for-each-ref", "--format=%(refname) %(objectname)")


def events(repo: Repo, kind: str) -> list[dict[str, Any]]:
    found = [json.loads(x) for x in ctl(repo, "events", "-o", "json").splitlines()]
    return [e for e in found if e["kind"] == kind]


def test_rescues_lists_every_rescue_and_quarantine_folder_with_what_it_holds(
    repo: Repo,
) -> None:
    ref, _ = rescued(repo)
    view = json.loads(ctl(repo, "rescues", "-o", "json"))
    (found,) = view["rescues"]
    assert found["ref"] == ref and found["lane"] == "a" and found["branch"] == "lane/a"
    assert found["time"] == (
        f"{ref[-16:-12]}-{ref[-12:-10]}-{ref[-10:-8]}T{ref[-7:-5]}:{ref[-5:-3]}:{ref[-3:-1]}Z"
    )
    assert found["base"] == repo.git("rev-parse", "lane/a")
    changes = {(c["status"], c["path"]) for c in found["changes"]}
    odd = (
        os.fsdecode(b"new dir/" + ODD).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    )
    assert changes == {
        ("M", "README.md"),
        ("M", "bin.dat"),
        ("M", "run.sh"),
        ("D", "gone.txt"),
        ("M", "link"),
        ("A", "staged.txt"),
        ("A", odd),
        ("A", "new dir/tool"),
        ("A", "to-readme"),
    }
    assert sorted(found["untracked"]) == sorted([odd, "new dir/tool", "to-readme"])
    assert found["files"] == {
        "changed": 9,
        "added": 4,
        "modified": 4,
        "deleted": 1,
        "untracked": 3,
    }
    assert found["commitsOnNoBranch"] == 0 and found["inner"] == []
    (folder,) = view["quarantine"]
    assert folder["lane"] == "a" and folder["files"] == 1
    assert folder["bytes"] == len("API_KEY=dev\n") and folder["time"] == found["time"]
    text = ctl(repo, "rescues")
    assert ref in text and "lane/a" in text and "QUARANTINE" in text
    assert "\t" not in ctl(repo, "rescues", "a", "-v")  # odd names are shown escaped
    assert ctl(repo, "rescues", "keep") == "No rescue refs and no quarantine folders.\n"


def test_commits_on_no_branch_are_counted(repo: Repo) -> None:
    repo.lanes("d", "keep")
    once(repo)
    lane = repo.root / "d"
    repo.git("checkout", "-q", "--detach", cwd=lane)
    (lane / "x.txt").write_text("committed on a detached HEAD\n")
    repo.git("add", "x.txt", cwd=lane)
    repo.git("commit", "-q", "-m", "detached work", cwd=lane)
    repo.lanes("keep")
    once(repo)
    (found,) = json.loads(ctl(repo, "rescues", "d", "-o", "json"))["rescues"]
    assert found["commitsOnNoBranch"] == 1 and found["branch"] is None
    assert found["files"]["changed"] == 0


def test_restore_into_a_new_folder_gives_back_every_file_byte_for_byte(repo: Repo) -> None:
    ref, before = rescued(repo)
    lane, leaf = ref.split("/")[-2:]
    out = ctl(repo, "rescues", "restore", f"{lane}/{leaf}", "--into", "./restored")
    assert f"restored {ref} into {repo.path / 'restored'}" in out
    assert snapshot(repo.path / "restored") == before
    (event,) = events(repo, "RescueRestored")
    assert event["lane"] == "a" and event["data"]["target"] == "new folder"
    assert event["data"]["by"] and event["data"]["written"] == len(before)


def test_restore_into_the_lane_again_changes_only_its_files(repo: Repo) -> None:
    ref, before = rescued(repo)
    repo.lanes("a", "keep")
    once(repo)  # the lane again, on its kept branch
    lane = repo.root / "a"
    head, index_tree = repo.git("rev-parse", "HEAD", cwd=lane), repo.git("write-tree", cwd=lane)
    known = refs(repo)
    dry = ctl(repo, "rescues", "restore", ref, "--into", "a", "--dry-run")
    assert "  delete gone.txt" in dry and "Nothing was changed" in dry
    assert (lane / "gone.txt").exists() and not events(repo, "RescueRestored")
    out = ctl(repo, "rescues", "restore", ref, "--into", "a")
    assert "8 written, 1 deleted, 0 already as rescued" in out
    assert snapshot(lane) == before
    assert repo.git("rev-parse", "HEAD", cwd=lane) == head  # HEAD, index and refs untouched
    assert repo.git("write-tree", cwd=lane) == index_tree and refs(repo) == known
    again = json.loads(ctl(repo, "rescues", "restore", ref, "--into", "a", "-o", "json"))
    assert again["written"] == [] and again["deleted"] == [] and len(again["unchanged"]) == 9
    assert [e["data"]["intoLane"] for e in events(repo, "RescueRestored")] == ["a", "a"]


def test_restore_refuses_on_any_conflict_and_changes_nothing(repo: Repo) -> None:
    ref, _ = rescued(repo)
    repo.lanes("a", "keep")
    once(repo)
    lane = repo.root / "a"
    (lane / "README.md").write_text("someone else's edit\n")
    (lane / "staged.txt").write_text("another file of the same name\n")
    (lane / "gone.txt").write_text("edited, where the rescue deleted it\n")
    before = snapshot(lane)
    err = ctl(repo, "rescues", "restore", ref, "--into", "a", code=1)
    assert "would overwrite work there; nothing was changed" in err
    assert "README.md: changed in the target since the rescue's first parent" in err
    assert "staged.txt: exists in the target with other content" in err
    assert "gone.txt: changed in the target" in err
    assert "Commit or stash those changes" in err and "--into ./a-restored" in err
    assert snapshot(lane) == before and not events(repo, "RescueRestored")


def test_restore_refuses_a_folder_that_is_neither_empty_nor_a_checkout(repo: Repo) -> None:
    ref, _ = rescued(repo)
    (repo.path / "full").mkdir()
    (repo.path / "full" / "x").write_text("x\n")
    assert "neither the top folder of a git checkout nor empty" in ctl(
        repo, "rescues", "restore", ref, "--into", "./full", code=1
    )
    assert "unknown lane nope" in ctl(repo, "rescues", "restore", ref, "--into", "nope", code=1)
    assert "is not a rescue ref" in ctl(repo, "rescues", "restore", "main", "--into", "./n", code=1)
    assert "no rescue refs/lanes/rescue/a/19990101T000000Z" in ctl(
        repo, "rescues", "restore", "a/19990101T000000Z", "--into", "./n", code=1
    )
    assert not (repo.path / "n").exists()


def test_a_folder_that_became_a_file_is_restored_and_a_symlinked_folder_is_never_followed(
    repo: Repo, tmp_path: Path
) -> None:
    (repo.path / "docs").mkdir()
    (repo.path / "docs" / "guide.md").write_text("guide\n")
    repo.git("add", ".")
    repo.git("commit", "-q", "-m", "a folder")
    repo.lanes("a", "keep")
    once(repo)
    lane = repo.root / "a"
    repo.git("rm", "-q", "-r", "docs", cwd=lane)
    (lane / "docs").write_text("now a file\n")
    (lane / "docs-new").mkdir()
    (lane / "docs-new" / "x.md").write_text("new\n")
    before = snapshot(lane)
    repo.lanes("keep")
    once(repo)
    (ref,) = repo.git("for-each-ref", "--format=%(refname)", "refs/lanes/rescue/a/").split()
    repo.lanes("a", "keep")
    once(repo)
    assert (lane / "docs" / "guide.md").exists()
    ctl(repo, "rescues", "restore", ref, "--into", "a")
    assert snapshot(lane) == before  # the folder emptied and removed, the file written
    # A symlink where the rescue needs a folder is never written through.
    outside = tmp_path / "outside"
    outside.mkdir()
    (lane / "docs").unlink()
    repo.git("checkout", "-q", "--", ".", cwd=lane)  # docs/ is a folder again
    (lane / "docs-new").rename(tmp_path / "moved")
    (lane / "docs-new").symlink_to(outside)
    err = ctl(repo, "rescues", "restore", ref, "--into", "a", code=1)
    assert "docs-new/x.md: docs-new is a symlink in the target, not a folder" in err
    assert list(outside.iterdir()) == [] and (lane / "docs" / "guide.md").exists()
