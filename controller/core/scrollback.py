"""What an agent printed, made safe to show, and what is new since the last look.

Escape sequences and control characters are removed (the wake payload's idea, keeping line
breaks and tabs), so a pane or a log can never drive the reader's terminal. Two captures of a
pane are lined up to find the lines that are new, also when its history scrolled in between.
Pure: text in, text out; never I/O.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

# CSI, OSC, DCS/SOS/PM/APC, and the other escapes (ESC, intermediates, a final byte: ESC c,
# ESC ( B, ...), as in safeguards/payload.py, except that an unterminated string ends at a
# line break: a stray ESC ] in a log must not swallow the rest of it.
_OTHER = r"|\x1b(?![\[\]PX^_])[ -/]*[0-~]|\x9b[0-?]*[ -/]*[@-~]"
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b\n]*(?:\x1b\\)?" + _OTHER
)
# The same, terminated: what a chunk read so far must end with to be cleaned as it is.
_COMPLETE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)"
    r"|\x1b[PX^_][^\x1b\n]*\x1b\\" + _OTHER
)
# Control characters but tab and line feed; bidirectional overrides (they reorder what is shown).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
MAX_PENDING = 4096  # an escape longer than this is garbage: clean it instead of waiting


@dataclass(frozen=True, slots=True)
class Fresh:
    """The lines of a new capture that the previous one did not show."""

    lines: tuple[str, ...]
    skipped: bool = False  # more scrolled by between the two captures than either holds


def clean(text: str) -> str:
    """``text`` without escape sequences or control characters; line breaks and tabs stay.

    A carriage return ends a line (a progress bar shows each state on a line of its own).
    """
    text = _ESCAPES.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


def complete(text: str) -> int:
    """How much of ``text`` can be cleaned now: all of it, unless it ends inside an escape
    sequence or on a carriage return, whose rest may come with the next read."""
    if text.endswith("\r"):
        return len(text) - 1
    start = max(text.rfind("\x1b"), text.rfind("\x9b"))
    if start < 0 or len(text) - start > MAX_PENDING or "\n" in text[start:]:
        return len(text)
    return len(text) if _COMPLETE.match(text, start) else start


def last_lines(text: str, count: int) -> tuple[str, ...]:
    """The last ``count`` lines of a log (a final line without a line break counts)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return tuple(lines[-count:]) if count > 0 else ()


def screen_lines(text: str) -> tuple[str, ...]:
    """A pane capture as lines, without the blank rows below the last written one."""
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return tuple(lines)


def window_top(history: int, window: int) -> int:
    """The history row a capture of ``window`` rows of history starts at (0: the oldest)."""
    return max(0, history - window)


def fresh(previous: Sequence[str], current: Sequence[str], *, scrolled: int | None) -> Fresh:
    """The lines of ``current`` that are new since ``previous`` (two captures of one pane).

    The captures are lined up: the previous one's lines, but its last (which may still be
    being written), must start the current one after ``shift`` lines scrolled out of the
    window. ``scrolled`` is how far the window moved by tmux's count (None when unknown,
    e.g. the history was cleared); of the shifts that line up, the nearest to it wins, which
    also tells repeated identical lines apart. When nothing lines up (the program redrew its
    screen), the lines that differ are new.
    """
    if not previous:
        return Fresh(tuple(current))
    shifts = [
        s
        for s in range(len(previous) + 1)
        if _lines_up(previous, current, shift=s, scrolled=scrolled)
    ]
    if not shifts:
        return Fresh(_changed(previous, current))
    shift = shifts[0] if scrolled is None else min(shifts, key=lambda s: (abs(s - scrolled), s))
    start = len(previous) - shift - 1  # where the previous last line is now
    if 0 <= start < len(current) and current[start] == previous[-1]:
        start += 1
    skipped = shift == len(previous) and scrolled is not None and scrolled > shift
    return Fresh(tuple(current[max(start, 0) :]), skipped)


def _lines_up(
    previous: Sequence[str], current: Sequence[str], *, shift: int, scrolled: int | None
) -> bool:
    settled = list(previous[shift:-1])
    if not settled:
        # Nothing left to compare: only tmux's count (or a one-line capture) can say so.
        return shift == 0 or (scrolled is not None and scrolled >= shift)
    return list(current[: len(settled)]) == settled


def _changed(previous: Sequence[str], current: Sequence[str]) -> tuple[str, ...]:
    matcher = difflib.SequenceMatcher(None, list(previous), list(current), autojunk=False)
    return tuple(
        line
        for tag, _, _, start, end in matcher.get_opcodes()
        if tag in ("replace", "insert")
        for line in current[start:end]
    )
