"""Parsing `git status --porcelain=v2 --branch -z`: what removal could lose."""

from __future__ import annotations

from controller.executors import rescue

OID = "cdadd44a11aec56a6d0a2a65938ccd06b83ac43b"
ZERO = "0" * 40


def test_branch_changes_renames_and_untracked() -> None:
    text = "\0".join([
        f"# branch.oid {OID}", "# branch.head main",
        f"1 .M N... 100644 100644 100644 {OID} {OID} a file.txt",
        f"2 R. N... 100644 100644 100644 {OID} {OID} R100 new name", "old name",
        f"u UU N... 100644 100644 100644 100644 {OID} {OID} {OID} conflict",
        "? untracked dir/x", "",
    ])  # fmt: skip
    state = rescue.parse_status(text)
    assert state.head == OID and state.branch == "main"
    assert state.changes == (" M a file.txt", "R  new name", "UU conflict", "?? untracked dir/x")
    assert state.needs_rescue


def test_clean_branch_needs_no_rescue() -> None:
    state = rescue.parse_status(f"# branch.oid {OID}\0# branch.head main\0")
    assert state.changes == () and not state.needs_rescue


def test_detached_head_needs_rescue_and_unborn_has_no_head() -> None:
    detached = rescue.parse_status(f"# branch.oid {OID}\0# branch.head (detached)\0")
    assert detached.branch is None and detached.needs_rescue
    unborn = rescue.parse_status("# branch.oid (initial)\0# branch.head main\0? a\0")
    assert unborn.head is None and unborn.changes == ("?? a",)
