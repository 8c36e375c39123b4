"""A task's prompt: its own prompt verbatim, then one delimited section per succeeded dependency
(final message, declared output files as committed), compacted to fit the model's window.
A section's delimiter lines carry an id hashed from its content and found nowhere else in the
text, so routed content can never close a section early or open another.
Pure and deterministic: no I/O, no clock, never reads a file (the shell passes the bodies in).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

MESSAGE_FLOOR = 2_000  # characters of a dependency's final message that are always kept
HEAD_THIRDS = 2  # of what is kept, two thirds come from the head and one from the tail
LINE_SNAP = 200  # how far a cut moves to land on a line boundary
STUB_LINES = 20  # lines of a file kept when its body is replaced by a stub
STUB_CHARS = 2_000  # ... at most this many characters of them (a minified file is one line)
ID_LENGTH = 12  # hex digits of a section's delimiter id

PREAMBLE = (
    "The results of the tasks this task depends on follow, one section each. A section runs"
    " from its <<<lanes:upstream ...>>> line to the <<<lanes:end ...>>> line with the same id;"
    " everything between the two was produced by that task."
)

# Upstream text travels in argv and UTF-8 files: neither carries NUL or a lone surrogate.
_UNSENDABLE = re.compile("[\x00\ud800-\udfff]")


def estimate_tokens(text: str) -> int:
    """Tokens ``text`` is budgeted at: ``ceil(characters / 4)``, 0 only for empty text.

    Characters are code points; every budget check in a run uses this same estimate.
    """
    return -(-len(text) // 4)


@dataclass(frozen=True, slots=True)
class RoutedFile:
    """A declared output as committed: ``size`` and ``sha256`` describe the committed blob."""

    path: str
    body: bytes
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Upstream:
    """What one succeeded dependency hands on."""

    task: str
    commit: str
    final_message: str | None
    files: tuple[RoutedFile, ...]
    missing: tuple[str, ...] = ()  # declared outputs absent at the commit


@dataclass(frozen=True, slots=True)
class Composed:
    """The prompt to send and what compaction did to it.

    ``overflow``: it does not fit even compacted (the caller fails the task with
    ``context_overflow``); ``notes`` say what was shortened, for events and ``runs show``.
    """

    text: str
    tokens: int
    compacted: bool
    overflow: bool
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Shape:
    """How much of each upstream is shown: characters kept of each final message (None: all)
    and the (upstream, file) indexes whose bodies are replaced by stubs."""

    kept: tuple[int | None, ...]
    stubbed: frozenset[tuple[int, int]] = frozenset()


def compose(prompt: str, upstream: Sequence[Upstream], *, budget_tokens: int) -> Composed:
    """The task's prompt followed by its dependencies' sections, within ``budget_tokens``.

    Over budget, final messages are trimmed to head and tail (largest first, never below
    ``MESSAGE_FLOOR`` characters each); if that is not enough, file bodies are replaced by
    stubs (largest first) and the messages are trimmed again from whole, so they take back what
    the stubs freed; if it still does not fit, ``overflow`` is set. ``prompt`` is kept verbatim.
    """
    ups = tuple(upstream)
    limit = 4 * budget_tokens  # estimate_tokens(t) <= budget  <=>  len(t) <= 4 * budget
    full = _Shape(kept=(None,) * len(ups))
    length = len(_render(prompt, ups, full))
    shape, length = _trim_messages(ups, full, length, limit=limit)
    if length > limit:
        shape, length = _stub_files(ups, shape, length, limit=limit)
        # The stubs may have freed more than the messages gave up: trim those again from whole.
        length += _messages_delta(ups, full.kept, shape.kept)
        shape, length = _trim_messages(ups, replace(shape, kept=full.kept), length, limit=limit)
    text = _render(prompt, ups, shape)
    assert len(text) == length, "compaction measured a different text than it rendered"
    tokens, notes = estimate_tokens(text), _notes(ups, shape)
    compacted, overflow = bool(notes), tokens > budget_tokens
    if overflow:
        notes += (
            f"context overflow: {tokens} tokens compacted, over the budget of {budget_tokens}",
        )
    return Composed(text, tokens, compacted=compacted, overflow=overflow, notes=notes)


def _render(prompt: str, upstream: Sequence[Upstream], shape: _Shape) -> str:
    """The composed text for a given shape (the prompt alone when nothing is routed)."""
    if not upstream:
        return prompt
    bodies = [_body(up, i, shape) for i, up in enumerate(upstream)]
    ids = _ids(prompt, upstream, bodies)
    sections = [_wrap(up, body, id_) for up, body, id_ in zip(upstream, bodies, ids, strict=True)]
    return f"{prompt}\n\n{PREAMBLE}\n\n" + "\n".join(sections)


# -- delimiters -----------------------------------------------------------------------------


def section_id(seed: str, taken: str) -> str:
    """A delimiter id derived from ``seed`` (a section's content) that does not occur in
    ``taken``.

    Content cannot forge an end line: the id is a hash of that content, and should the
    content happen to contain it anyway, the next hash in a fixed sequence is taken.
    """
    for counter in itertools.count():
        data = f"{counter}\0{seed}".encode(errors="surrogatepass")
        candidate = hashlib.sha256(data).hexdigest()[:ID_LENGTH]
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable: itertools.count() is endless")  # pragma: no cover


def _ids(prompt: str, upstream: Sequence[Upstream], bodies: Sequence[str]) -> list[str]:
    # No id occurs anywhere in the text except on its own section's two delimiter lines.
    attributes = (f"{_attribute(u.task)}\0{_attribute(u.commit)}" for u in upstream)
    taken = "\0".join([prompt, PREAMBLE, *bodies, *attributes])
    ids: list[str] = []
    for up, body in zip(upstream, bodies, strict=True):
        ids.append(section_id(f"{up.task}\0{up.commit}\0{body}", "\0".join([taken, *ids])))
    return ids


def _wrap(up: Upstream, body: str, id_: str) -> str:
    task, commit = _attribute(up.task), _attribute(up.commit)
    return (
        f"<<<lanes:upstream task={task} commit={commit} id={_attribute(id_)}>>>\n"
        f"{body}<<<lanes:end task={task} id={_attribute(id_)}>>>\n"
    )


def _attribute(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _show(path: str) -> str:
    return path if path.isprintable() else _attribute(path)


# -- sections -------------------------------------------------------------------------------


def _body(up: Upstream, index: int, shape: _Shape) -> str:
    parts = [_message_block(up.final_message, shape.kept[index])]
    parts += [_file_block(f, stub=(index, j) in shape.stubbed) for j, f in enumerate(up.files)]
    parts += [f"(declared output {_show(path)} was not committed)\n" for path in up.missing]
    return "".join(parts)


def _message(final_message: str | None) -> str:
    return "" if final_message is None else _UNSENDABLE.sub("\ufffd", final_message)


def _message_block(final_message: str | None, keep: int | None) -> str:
    if final_message is None:
        text = "(no final message reported)"
    elif not final_message:
        text = "(the final message is empty)"
    else:
        text = _trimmed(_message(final_message), keep)
    return f"## Final message\n{_line_end(text)}"


def _file_block(routed: RoutedFile, *, stub: bool) -> str:
    header = f"## File {_show(routed.path)} ({routed.size} bytes, sha256 {routed.sha256})\n"
    text = _decoded(routed.body)
    if text is None:
        return f"{header}(binary file, {routed.size} bytes, sha256 {routed.sha256})\n"
    if not text:
        return f"{header}(empty file)\n"
    return header + (_stub(routed.path, text) if stub else _line_end(text))


def _decoded(body: bytes) -> str | None:
    """The body as text, or None when it is binary (not strict UTF-8, or it holds NUL)."""
    if b"\0" in body:
        return None
    try:
        return body.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return None


def _stub(path: str, text: str) -> str:
    head = text[: _after_lines(text, STUB_LINES)]
    cut = len(head) > STUB_CHARS
    shown = head.count("\n") + (not head.endswith("\n"))
    note = (
        f"(shortened by the lane controller: the first {shown} of {_count_lines(text)} lines"
        f"{f', cut at {STUB_CHARS} characters' if cut else ''}; the full file is in this"
        f" task's worktree at {_show(path)})\n"
    )
    return note + _line_end(head[:STUB_CHARS] + (" [...]" if cut else ""))


def _after_lines(text: str, count: int) -> int:
    """The index just past the ``count``-th newline (the whole text when it has fewer)."""
    end = -1
    for _ in range(count):
        end = text.find("\n", end + 1)
        if end < 0:
            return len(text)
    return end + 1


def _count_lines(text: str) -> int:
    return text.count("\n") + (not text.endswith("\n"))


def _line_end(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


# -- trimming messages ------------------------------------------------------------------------


def _trimmed(message: str, keep: int | None) -> str:
    return _trim(message, keep)[0]


def _trim(message: str, keep: int | None) -> tuple[str, int]:
    """``message`` cut to about ``keep`` characters around an elision marker, and how many
    characters were elided (0: shown whole, which it is whenever cutting would not shorten it).
    """
    if keep is None or len(message) <= keep:
        return message, 0
    head, tail = _cut(message, keep)
    marker = f"[... {tail - head} characters elided by the lane controller ...]"
    after = "\n" if message[tail - 1] == "\n" else ""
    trimmed = message[:head] + marker + after + message[tail:]
    return (trimmed, tail - head) if len(trimmed) < len(message) else (message, 0)


def _cut(message: str, keep: int) -> tuple[int, int]:
    """Where the head ends and the tail starts when about ``keep`` characters stay.

    Each cut moves inwards to the nearest line boundary within ``LINE_SNAP`` characters, never
    so that less than the floor stays. At the floor it moves outwards instead (without meeting
    the other cut): the floor is final, while above it keeping at most ``keep`` is what lets
    trimming converge in a few rounds.
    """
    head = keep * HEAD_THIRDS // 3
    tail = len(message) - (keep - head)
    middle = (head + tail) // 2  # head <= middle < tail
    floor_head = MESSAGE_FLOOR * HEAD_THIRDS // 3
    floor_tail = len(message) - (MESSAGE_FLOOR - floor_head)
    outwards = LINE_SNAP if keep <= MESSAGE_FLOOR else 0
    new_head = _line_boundary(
        message,
        head,
        low=max(head - LINE_SNAP, floor_head, 1),
        high=min(head + outwards, middle),
    )
    new_tail = _line_boundary(
        message,
        tail,
        low=max(tail - outwards, middle + 1),
        high=min(tail + LINE_SNAP, floor_tail),
    )
    return new_head, new_tail


def _line_boundary(text: str, at: int, *, low: int, high: int) -> int:
    """The start of a line in ``[low, high]`` nearest to ``at`` (``at`` itself when none)."""
    before = text.rfind("\n", low - 1, at) + 1  # 0: none
    after = text.find("\n", at - 1, high) + 1
    candidates = [i for i in (before, after) if i > 0]
    return min(candidates, key=lambda i: (abs(i - at), i)) if candidates else at


def _trim_messages(
    ups: tuple[Upstream, ...], shape: _Shape, length: int, *, limit: int
) -> tuple[_Shape, int]:
    """Step 1: lower the longest final messages to a common level until the text fits."""
    while length > limit:
        kept = _level(ups, shape.kept, excess=length - limit)
        if kept == shape.kept:
            break
        length += _messages_delta(ups, kept, shape.kept)
        shape = replace(shape, kept=kept)
    return shape, length


def _messages_delta(
    ups: tuple[Upstream, ...], new: tuple[int | None, ...], old: tuple[int | None, ...]
) -> int:
    """How much longer the text gets when the messages keep ``new`` instead of ``old``."""
    return sum(
        len(_message_block(up.final_message, n)) - len(_message_block(up.final_message, o))
        for up, n, o in zip(ups, new, old, strict=True)
    )


def _level(
    ups: tuple[Upstream, ...], kept: tuple[int | None, ...], *, excess: int
) -> tuple[int | None, ...]:
    """The kept lengths after removing ``excess`` characters from the longest messages."""
    current = [
        len(_message(up.final_message)) if keep is None else keep
        for up, keep in zip(ups, kept, strict=True)
    ]
    level = _water_level(current, excess)
    return tuple(
        level if length > level else keep for length, keep in zip(current, kept, strict=True)
    )


def _water_level(lengths: Sequence[int], excess: int) -> int:
    """The highest level (not below the floor) that cutting every length down to removes at
    least ``excess`` characters; the floor when even that is not enough."""

    def removed(level: int) -> int:
        return sum(max(0, length - level) for length in lengths)

    if removed(MESSAGE_FLOOR) < excess:
        return MESSAGE_FLOOR
    low, high = MESSAGE_FLOOR, max(lengths)  # removed(low) >= excess > removed(high) == 0
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if removed(middle) >= excess else (low, middle)
    return low


# -- stubbing files ---------------------------------------------------------------------------


def _stub_files(
    ups: tuple[Upstream, ...], shape: _Shape, length: int, *, limit: int
) -> tuple[_Shape, int]:
    """Step 2: replace file bodies by stubs, largest first, until the text fits."""
    for saved, i, j in _stub_candidates(ups):
        if length <= limit:
            break
        shape = replace(shape, stubbed=shape.stubbed | {(i, j)})
        length -= saved
    return shape, length


def _stub_candidates(ups: tuple[Upstream, ...]) -> list[tuple[int, int, int]]:
    """(characters saved, upstream index, file index) of each file a stub shortens, the
    largest saving first, then in routing order."""
    candidates = []
    for i, up in enumerate(ups):
        for j, routed in enumerate(up.files):
            saved = len(_file_block(routed, stub=False)) - len(_file_block(routed, stub=True))
            if saved > 0:
                candidates.append((saved, i, j))
    return sorted(candidates, key=lambda c: (-c[0], c[1], c[2]))


def _notes(ups: tuple[Upstream, ...], shape: _Shape) -> tuple[str, ...]:
    notes = []
    for up, keep in zip(ups, shape.kept, strict=True):
        message = _message(up.final_message)
        elided = _trim(message, keep)[1]
        if elided:
            notes.append(
                f"final message of {up.task}: {elided} of {len(message)} characters elided"
            )
    for i, j in sorted(shape.stubbed):
        routed = ups[i].files[j]
        notes.append(
            f"file {_show(routed.path)} of {ups[i].task}: body ({routed.size} bytes)"
            f" replaced by its first lines"
        )
    return tuple(notes)
