"""Parsing what git says about rescue refs (the listing runs against real git elsewhere)."""

from __future__ import annotations

from controller.observers import rescues

B, C, D = "b" * 40, "c" * 40, "d" * 40


def test_parse_refs_keeps_messages_with_line_breaks() -> None:
    text = (
        f"refs/lanes/rescue/a/1\0{D}\0{B} {C}\0lanes rescue: a\n\nBranch: lane/a\n\0\n"
        f"refs/lanes/rescue-inner/a/1/1-sub/work\0{C}\0\0inner\0\n"
    )
    assert rescues.parse_refs(text) == (
        rescues.Listed("refs/lanes/rescue/a/1", D, (B, C), "lanes rescue: a\n\nBranch: lane/a\n"),
        rescues.Listed("refs/lanes/rescue-inner/a/1/1-sub/work", C, (), "inner"),
    )
    assert rescues.parse_refs("") == ()


def test_parse_name_status() -> None:
    text = "M\0a b\0A\0new\0D\0gone\0"
    assert rescues.parse_name_status(text) == (
        rescues.Change("M", "a b"),
        rescues.Change("A", "new"),
        rescues.Change("D", "gone"),
    )
    assert rescues.parse_name_status("") == ()


def test_commits_on_no_branch_are_counted_per_tip() -> None:
    graph = rescues.parse_graph(f"{D} {C}\n{C} {B}\n{B}\n")
    assert graph == {D: (C,), C: (B,), B: ()}
    # B's parent is on a branch (not listed); a tip on a branch counts nothing.
    assert rescues.count_unique([D, C, "e" * 40], graph) == {D: 3, C: 2, "e" * 40: 0}
