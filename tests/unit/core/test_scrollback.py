"""Cleaning what agents print, and finding the new lines between two captures of a pane."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core import scrollback


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("plain\ttext\n", "plain\ttext\n"),
        ("\x1b[31mred\x1b[0m", "red"),  # CSI (colours)
        ("\x1b]0;title\x07after", "after"),  # OSC ended by BEL
        ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC ended by ST
        ("\x1bPq#0;2;0;0;0\x1b\\img", "img"),  # DCS (sixel)
        ("\x1b]no end\nnext line\n", "\nnext line\n"),  # an unended string stops at the line
        ("\x1bcreset", "reset"),  # two-byte escape
        ("\x9b2Jclear", "clear"),  # 8-bit CSI
        ("crlf\r\nline", "crlf\nline"),
        ("10%\r20%\r", "10%\n20%\n"),  # a progress bar: one line per state
        ("bell\x07back\x08space\x00nul\x7f", "bellbackspacenul"),
        ("abc\u202edcba\u2066", "abcdcba"),  # bidirectional overrides
        ("héllo ✓ 日本", "héllo ✓ 日本"),
    ],
)
def test_clean_removes_escapes_and_control_characters(text: str, cleaned: str) -> None:
    assert scrollback.clean(text) == cleaned


@given(st.text())
def test_nothing_cleaned_can_drive_a_terminal(text: str) -> None:
    out = scrollback.clean(text)
    assert not any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in out)


@pytest.mark.parametrize(
    ("text", "ready"),
    [
        ("", 0),
        ("no escape", 9),
        ("line\r", 4),  # a CRLF may be cut in two
        ("a\x1b", 1),
        ("a\x1b[3", 1),
        ("a\x1b[31m", 6),
        ("a\x1b]0;title", 1),  # an OSC waits for its end
        ("a\x1b]0;title\x07", 11),
        ("a\x1b]0;title\nb", 12),  # a line break ends it anyway
        ("a\x9b", 1),
        ("a\x1b" + "x" * scrollback.MAX_PENDING, 2 + scrollback.MAX_PENDING),  # garbage
    ],
)
def test_complete_holds_back_a_cut_escape_sequence(text: str, ready: int) -> None:
    assert scrollback.complete(text) == ready


@pytest.mark.parametrize(
    ("text", "count", "lines"),
    [
        ("a\nb\nc\n", 2, ("b", "c")),
        ("a\nb\nc", 2, ("b", "c")),  # a last line without a line break counts
        ("a\n\n", 5, ("a", "")),  # blank lines of a log are output too
        ("a\nb\n", 0, ()),
        ("", 3, ()),
    ],
)
def test_last_lines(text: str, count: int, lines: tuple[str, ...]) -> None:
    assert scrollback.last_lines(text, count) == lines


def test_screen_lines_drop_the_blank_rows_below_the_output() -> None:
    assert scrollback.screen_lines("a\n\nb\n\n  \n\n") == ("a", "", "b")
    assert scrollback.screen_lines("\n\n") == ()


@pytest.mark.parametrize(("history", "window", "top"), [(0, 200, 0), (150, 200, 0), (250, 200, 50)])
def test_window_top(history: int, window: int, top: int) -> None:
    assert scrollback.window_top(history, window) == top


L = [f"l{i}" for i in range(10)]


@pytest.mark.parametrize(
    ("previous", "current", "scrolled", "new", "skipped"),
    [
        ([], ["a", "b"], None, ["a", "b"], False),  # the first look
        (L[:3], L[:3], 0, [], False),  # nothing new
        (L[:3], L[:5], 0, ["l3", "l4"], False),  # appended below
        (["$ "], ["$ ls", "out"], 0, ["$ ls", "out"], False),  # the last line was being typed
        (["a", "$ "], ["a", "$ ls"], None, ["$ ls"], False),
        (L[:5], L[2:8], 2, ["l5", "l6", "l7"], False),  # the history scrolled by two
        (L[:5], L[2:8], None, ["l5", "l6", "l7"], False),  # the same, found without the count
        (L[:3], L[2:6], 2, ["l3", "l4", "l5"], False),  # one line left in common
        (L[:3], L[5:8], 5, ["l5", "l6", "l7"], True),  # more went by than a look holds
        (L[:3], L[3:6], 3, ["l3", "l4", "l5"], False),  # exactly a look's worth went by
        (["x", "x", "x"], ["x", "x", "x"], 1, ["x"], False),  # one more identical line
        (["x", "x", "x"], ["x", "x", "x"], 0, [], False),
        (["x", "x", "x"], ["x", "x", "x"], None, [], False),
        (["a", "b", "c", "d"], ["a", "B", "c", "d", "e"], 0, ["B", "e"], False),  # redrawn
        (["a", "b"], [], None, [], False),  # cleared
    ],
)
def test_fresh_lines(
    previous: list[str], current: list[str], scrolled: int | None, new: list[str], skipped: bool
) -> None:
    found = scrollback.fresh(previous, current, scrolled=scrolled)
    assert found == scrollback.Fresh(tuple(new), skipped)


@given(
    st.lists(st.sampled_from(["a", "b", ""]), min_size=1, max_size=30),
    st.lists(st.sampled_from(["a", "b", "c"]), max_size=30),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=0, max_value=30),
)
def test_following_a_growing_window_prints_every_line_once(
    before: list[str], added: list[str], window: int, cut: int
) -> None:
    """A pane whose output only grows, seen through a window that drops the oldest lines: the
    lines printed after the first look are exactly those added (when few enough were)."""
    lines = [*before, *added]
    previous = before[-window:]
    current = lines[-window:]
    scrolled = max(0, len(lines) - window) - max(0, len(before) - window)
    if before[-1] == "" or len(added) > window - 1:
        return  # a trailing blank row is not output; too many: the window lost some
    found = scrollback.fresh(previous, current, scrolled=scrolled)
    assert list(found.lines) == added and not found.skipped
