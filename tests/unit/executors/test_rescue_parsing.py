"""Parsing what removal could lose, and the pure parts of rescues and quarantine moves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller import errors
from controller.executors import inspecting, quarantining, rescue
from controller.executors.inspecting import InnerKind, InnerRepo, WorktreeState
from controller.system import paths

OID = "cdadd44a11aec56a6d0a2a65938ccd06b83ac43b"
ZERO = "0" * 40
BAD = os.fsdecode(b"bad\xffname")  # a name that is not UTF-8, as Python keeps it


def test_branch_changes_renames_and_untracked() -> None:
    text = "\0".join(
        [
            f"# branch.oid {OID}",
            "# branch.head main",
            f"1 .M N... 100644 100644 100644 {OID} {OID} a file.txt",
            f"2 R. N... 100644 100644 100644 {OID} {OID} R100 new name",
            "old name",
            f"u UU N... 100644 100644 100644 100644 {OID} {OID} {OID} conflict",
            "? untracked dir/x",
            "",
        ]
    )
    state = inspecting.parse_status(text)
    assert state.head == OID and state.branch == "main"
    assert state.changes == (" M a file.txt", "R  new name", "UU conflict", "?? untracked dir/x")
    assert state.needs_rescue and state.unmerged


def test_clean_branch_needs_no_rescue() -> None:
    state = inspecting.parse_status(f"# branch.oid {OID}\0# branch.head main\0")
    assert state.changes == () and not state.needs_rescue and not state.unmerged


def test_detached_head_needs_rescue_and_unborn_has_no_head() -> None:
    detached = inspecting.parse_status(f"# branch.oid {OID}\0# branch.head (detached)\0")
    assert detached.branch is None and detached.needs_rescue
    unborn = inspecting.parse_status("# branch.oid (initial)\0# branch.head main\0? a\0")
    assert unborn.head is None and unborn.changes == ("?? a",)


def test_nested_repositories_are_kept_apart_with_exact_names() -> None:
    text = f"# branch.oid {OID}\0# branch.head main\0? tools/inner/\0? {BAD}/\0? {BAD}.txt\0"
    state = inspecting.parse_status(text)
    assert state.nested == ("tools/inner", BAD)
    assert state.changes == ("?? bad\ufffdname.txt",)  # shown for people, never raw bytes
    assert not state.needs_rescue or state.changes  # nested ones are judged on their own


def test_deleted_branch_and_hidden_edits_need_rescue() -> None:
    base = WorktreeState(head=None, branch="lane/a", orphaned=OID)
    assert base.base == OID and base.needs_rescue and not base.dirty
    hidden = WorktreeState(head=OID, branch="lane/a", hidden=("README.md",))
    assert hidden.dirty and hidden.needs_rescue


def test_parse_index_keeps_flagged_entries_and_gitlinks() -> None:
    lines = [
        f"H 100644 {OID} 0\tplain",
        f"S 100644 {OID} 0\tskipped",
        f"h 100644 {OID} 0\tassumed",
        f"s 120000 {OID} 0\tboth",
        f"H 160000 {OID} 0\tsub",
        f"S 100644 {OID} 0\t{BAD}",
    ]
    entries = inspecting.parse_index("\0".join([*lines, ""]))
    kept = [(e.path, e.flagged) for e in entries]
    assert kept == [
        ("skipped", True),
        ("assumed", True),
        ("both", True),
        ("sub", False),
        (BAD, True),
    ]
    assert entries[3].mode == inspecting.GITLINK


@pytest.mark.parametrize(
    ("text", "tip"),
    [
        ("", None),
        (f"{ZERO} {OID} A <a@b> 1 +0000\tcommit (initial): x\n", OID),
        (f"{ZERO} {OID} A <a@b> 1 +0000\tx\n{OID} {ZERO} A <a@b> 2 +0000\ty\n\n", None),
    ],
)
def test_parse_reflog_tip(text: str, tip: str | None) -> None:
    assert inspecting.parse_reflog_tip(text) == tip


def test_parse_local_refs() -> None:
    text = f"refs/heads/main\0{OID}\nrefs/stash\0{ZERO}\n\ngarbage\n"
    assert inspecting.parse_local_refs(text) == (("refs/heads/main", OID), ("refs/stash", ZERO))


def test_uncommitted_lists_own_changes_hidden_edits_and_dirty_inner_repositories() -> None:
    top = WorktreeState(head=OID, branch="a", changes=(" M sub",), hidden=(BAD,))
    dirty = WorktreeState(head=OID, branch="x", changes=("?? u",))
    inner = (
        InnerRepo("sub", InnerKind.SUBMODULE, dirty),
        InnerRepo("tools/n", InnerKind.NESTED, dirty),
        InnerRepo("clean", InnerKind.NESTED, WorktreeState(head=OID, branch="x")),
    )
    work = inspecting.LaneWork(top=top, inner=inner)
    assert work.uncommitted == ("sub", "bad\ufffdname", "tools/n (nested repository)")
    assert work.needs_rescue
    pushed = inspecting.LaneWork(top=WorktreeState(head=OID, branch="a"), inner=inner[2:])
    assert not pushed.needs_rescue and pushed.uncommitted == ()


# --- rescue ---------------------------------------------------------------------------------


def test_digest_is_the_content_not_the_time() -> None:
    top = rescue.Snapshot(tree="t1", staged="s1", base=OID)
    inner = InnerRepo("n", InnerKind.NESTED, WorktreeState(head=OID, branch="m"), unpushed=True)
    snap = rescue.Snapshot(tree="t2", staged="s2", base=OID)
    same = rescue.digest(top, [(inner, snap)])
    assert same == rescue.digest(top, [(inner, snap)])
    assert same != rescue.digest(top, [(inner, None)])
    assert same != rescue.digest(rescue.Snapshot("t1", None, OID), [(inner, snap)])
    moved = InnerRepo("m", InnerKind.NESTED, inner.state, unpushed=True)
    assert same != rescue.digest(top, [(moved, snap)])


def test_parse_snapshots_and_free_leaf() -> None:
    text = "refs/lanes/rescue/a/1 abc\nrefs/lanes/rescue/a/2 \nrefs/lanes/rescue/a/3 def\n"
    assert rescue.parse_snapshots(text) == {
        "abc": "refs/lanes/rescue/a/1",
        "def": "refs/lanes/rescue/a/3",
    }
    assert rescue.free_leaf("T", set()) == "T"
    assert rescue.free_leaf("T", {"T", "T-1"}) == "T-2"


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("sub", "1-sub"),
        ("tools/x y", "1-tools_x_y"),
        (".hidden", "1-hidden"),
        (BAD, "1-bad_name"),
        ("..", "1-repo"),
    ],
)
def test_inner_key_is_a_valid_ref_component(path: str, key: str) -> None:
    assert rescue.inner_key(1, path) == key


# --- quarantine moves -----------------------------------------------------------------------


def test_topmost_skips_entries_inside_moved_folders() -> None:
    entries = ["cfg/", "cfg/.env", "cfg-x", "a/b/", "a/b/c/d", "a/bc", f"{BAD}", "", "/"]
    assert quarantining.topmost(entries) == ["a/b", "a/bc", BAD, "cfg", "cfg-x"]


def test_entry_in_never_follows_the_entry_itself(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "link").symlink_to(tmp_path)  # points outside: it is moved, never followed
    assert paths.entry_in(root, "link") == root.resolve() / "link"
    assert paths.entry_in(root, "sub/x") == root.resolve() / "sub" / "x"
    for bad in ("../x", "/etc/passwd", "link/inside-the-target", "."):
        with pytest.raises(errors.OutsideRoot):
            paths.entry_in(root, bad)


def test_a_failed_move_leaves_no_empty_quarantine_folder(tmp_path: Path) -> None:
    base = tmp_path / "wt"
    (base / "deep").mkdir(parents=True)
    (base / "deep" / "a").write_text("a")
    with pytest.raises(FileNotFoundError):
        quarantining.move_entries(
            base, ["deep/a", "deep/missing"], folder=tmp_path / "q", name="lane"
        )
    moved = tmp_path / "q" / "lane" / "deep" / "a"
    assert moved.read_text() == "a"  # what was moved stays moved
    with pytest.raises(FileNotFoundError):
        quarantining.move_entries(base, ["missing/x"], folder=tmp_path / "q", name="other")
    assert not (tmp_path / "q" / "other").exists()
