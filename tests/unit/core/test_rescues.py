"""Rescue names, what a rescue commit's parents mean, and what a restore may touch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.core import rescues
from controller.core.rescues import Conflict, Entry, Found, Restore, Seen

AT = datetime(2026, 11, 21, 14, 49, 47, tzinfo=UTC)
EMPTY = rescues.EMPTY_TREE[40]
Z = "0" * 40
B, C, D = "b" * 40, "c" * 40, "d" * 40


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("refs/lanes/rescue/auth/20261121T144947Z", rescues.Name("auth", "20261121T144947Z", AT)),
        ("auth/20261121T144947Z-2", rescues.Name("auth", "20261121T144947Z-2", AT)),
        ("refs/lanes/rescue/a-b/odd", rescues.Name("a-b", "odd", None)),
        ("refs/lanes/rescue/auth/20261399T999999Z", rescues.Name("auth", "20261399T999999Z", None)),
        ("refs/lanes/rescue/auth", None),
        ("refs/lanes/rescue/Auth/20261121T144947Z", None),
        ("refs/lanes/rescue/auth/x/y", None),
        ("refs/lanes/rescue/auth/", None),
        ("main", None),
    ],
)
def test_parse_ref(ref: str, name: rescues.Name | None) -> None:
    assert rescues.parse_ref(ref) == name


def test_a_name_gives_its_ref() -> None:
    assert rescues.Name("auth", "x", None).ref == "refs/lanes/rescue/auth/x"


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        (
            "refs/lanes/rescue-inner/a/20261121T144947Z/1-sub/work",
            rescues.Name("a", "20261121T144947Z", AT),
        ),
        ("refs/lanes/rescue-inner/a/20261121T144947Z", None),
        ("refs/lanes/rescue/a/20261121T144947Z", None),
    ],
)
def test_parse_inner(ref: str, name: rescues.Name | None) -> None:
    assert rescues.parse_inner(ref) == name


@pytest.mark.parametrize(
    ("folder", "lane", "at"),
    [
        ("auth-20261121T144947Z", "auth", AT),
        ("my-lane-20261121T144947Z-3", "my-lane", AT),
        ("something", "", None),
    ],
)
def test_parse_folder(folder: str, lane: str, at: datetime | None) -> None:
    assert rescues.parse_folder(folder) == (lane, at)


@pytest.mark.parametrize(
    ("listed", "message", "expected"),
    [
        ((B, C), "", (B, C)),  # HEAD, and the index commit
        ((B,), f"x\n\n{rescues.NO_INDEX}: the files are saved, the index is not.", (B, None)),
        ((C,), "lanes rescue: a", (EMPTY, C)),  # an unborn branch: only the index commit
        ((), "", (EMPTY, None)),  # unborn, and the index held a conflict
    ],
)
def test_parents(listed: tuple[str, ...], message: str, expected: tuple[str, str | None]) -> None:
    assert rescues.parents(D, listed, message=message) == expected


def test_parents_of_a_sha256_rescue_use_its_empty_tree() -> None:
    assert rescues.parents("e" * 64, (), message="") == (rescues.EMPTY_TREE[64], None)


@pytest.mark.parametrize(
    ("message", "branch"),
    [
        ("lanes rescue: a\n\nBranch: lane/a\nRestore with: ...", "lane/a"),
        ("Branch: lane/a (its ref was deleted; its commits are ...)", "lane/a"),
        ("Branch: (detached HEAD)", None),
        ("no such line", None),
    ],
)
def test_branch_of(message: str, branch: str | None) -> None:
    assert rescues.branch_of(message) == branch


def test_parse_raw() -> None:
    text = (
        f":100644 100755 {B} {C} M\0a b\0"
        f":000000 120000 {Z} {C} A\0link\0"
        f":100644 000000 {B} {Z} D\0gone\0"
        "garbage\0x\0"
    )
    assert rescues.parse_raw(text) == (
        Entry("M", "100644", "100755", B, C, "a b"),
        Entry("A", "000000", "120000", Z, C, "link"),
        Entry("D", "100644", "000000", B, Z, "gone"),
    )


def test_leading() -> None:
    assert rescues.leading("a/b/c") == ("a", "a/b")
    assert rescues.leading("top") == ()


def modified(path: str) -> Entry:
    return Entry("M", "100644", "100644", B, C, path)


def added(path: str) -> Entry:
    return Entry("A", "000000", "100644", Z, C, path)


def deleted(path: str) -> Entry:
    return Entry("D", "100644", "000000", B, Z, path)


BASE = Seen(Found.FILE, "100644", B)  # the target has the first parent's version
RESCUED = Seen(Found.FILE, "100644", C)  # ... the rescued version
OTHER = Seen(Found.FILE, "100644", D)  # ... someone else's
MISSING = Seen(Found.MISSING)


@pytest.mark.parametrize(
    ("entry", "seen", "restore"),
    [
        (modified("f"), BASE, Restore(write=("f",))),
        (modified("f"), MISSING, Restore(write=("f",))),
        (modified("f"), RESCUED, Restore(unchanged=("f",))),
        (
            modified("f"),
            Seen(Found.FILE, "100755", B),  # the mode changed there
            Restore(
                conflicts=(Conflict("f", "changed in the target since the rescue's first parent"),)
            ),
        ),
        (added("f"), MISSING, Restore(write=("f",))),
        (added("f"), RESCUED, Restore(unchanged=("f",))),
        (
            added("f"),
            OTHER,
            Restore(conflicts=(Conflict("f", "exists in the target with other content"),)),
        ),
        (deleted("f"), BASE, Restore(delete=("f",))),
        (deleted("f"), MISSING, Restore(unchanged=("f",))),
        (
            deleted("f"),
            OTHER,
            Restore(
                conflicts=(Conflict("f", "changed in the target since the rescue's first parent"),)
            ),
        ),
        (
            deleted("f"),
            Seen(Found.DIR, inside=("f/x",)),
            Restore(conflicts=(Conflict("f", "is a folder in the target"),)),
        ),
        (
            modified("f"),
            Seen(Found.OTHER),
            Restore(conflicts=(Conflict("f", "is neither a file nor a symlink in the target"),)),
        ),
        (
            added("f"),
            Seen(Found.DIR, inside=("f/x",)),
            Restore(conflicts=(Conflict("f", "a folder holding other files is in the way"),)),
        ),
        (Entry("A", "000000", "160000", Z, C, "sub"), MISSING, Restore(skipped=("sub",))),
    ],
)
def test_decide_one_path(entry: Entry, seen: Seen, restore: Restore) -> None:
    assert rescues.decide([entry], {entry.path: seen}, folders={}) == restore


def test_a_file_in_the_way_of_a_folder_is_a_conflict_unless_the_restore_deletes_it() -> None:
    entries = [added("a/b")]
    folders = {"a": Found.FILE}
    reason = "a is a file in the target, not a folder"
    assert rescues.decide(entries, {"a/b": MISSING}, folders=folders).conflicts == (
        Conflict("a/b", reason),
    )
    entries.append(deleted("a"))
    both = rescues.decide(entries, {"a/b": MISSING, "a": BASE}, folders=folders)
    assert both == Restore(write=("a/b",), delete=("a",))


def test_a_symlink_where_a_folder_was_is_a_conflict() -> None:
    restore = rescues.decide([added("d/x")], {"d/x": MISSING}, folders={"d": Found.LINK})
    assert restore.conflicts == (Conflict("d/x", "d is a symlink in the target, not a folder"),)


def test_a_fifo_where_a_folder_was_is_a_conflict() -> None:
    restore = rescues.decide([added("d/x")], {"d/x": MISSING}, folders={"d": Found.OTHER})
    assert restore.conflicts == (Conflict("d/x", "d is not a folder in the target"),)


def test_nothing_to_do_under_a_symlink_is_no_conflict() -> None:
    restore = rescues.decide([deleted("d/x")], {"d/x": MISSING}, folders={"d": Found.LINK})
    assert restore == Restore(unchanged=("d/x",))


def test_a_folder_the_restore_empties_may_become_a_file() -> None:
    entries = [deleted("f/x"), added("f")]
    seen = {"f/x": BASE, "f": Seen(Found.DIR, inside=("f/x",))}
    restore = rescues.decide(entries, seen, folders={"f": Found.DIR})
    assert restore == Restore(write=("f",), delete=("f/x",))


def test_folders_that_exist_are_no_conflict() -> None:
    restore = rescues.decide([added("a/b/c")], {"a/b/c": MISSING}, folders={"a": Found.DIR})
    assert restore == Restore(write=("a/b/c",))
