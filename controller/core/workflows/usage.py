"""Parsers of agent CLIs' stdout into a ``TaskReport``: tokens, reported cost, final message,
session id, error. Pure: text in, values out; no I/O, never raises on any input, linear time.

``parse`` reads a whole stdout; ``start`` and ``resume`` read it incrementally (the runtime keeps
a ``Progress`` between passes and hands over the text that follows ``consumed``). Lines that
are not JSON (banners, warnings) are skipped; a last line without its newline is read
provisionally and read again, in full, by the next ``resume``.

Where each shape comes from (read in the public sources, not guessed):
- Claude Code ``-p --output-format json|stream-json``: the Claude Agent SDK's ``SDKMessage``
  types (``SDKResultMessage``: ``subtype``, ``is_error``, ``result``, ``session_id``,
  ``total_cost_usd``, ``usage``, ``modelUsage``, ``num_turns``) and the SDK guide "Track cost and
  usage" (code.claude.com/docs/en/agent-sdk/cost-tracking): assistant messages sharing an id
  share one usage, count it once; the result's totals are authoritative.
- Codex ``exec --json``: openai/codex ``codex-rs/exec/src/exec_events.rs`` (``ThreadEvent``,
  ``Usage``) and ``codex-rs/exec/src/event_processor_with_jsonl_output.rs`` (what is emitted when).
- Gemini CLI ``--output-format json``: google-gemini/gemini-cli
  ``packages/core/src/output/{types,json-formatter}.ts`` and
  ``packages/core/src/telemetry/uiTelemetry.ts`` (``ModelMetrics.tokens``).
- OpenCode ``run --format json``: sst/opencode (now anomalyco/opencode)
  ``packages/opencode/src/cli/cmd/run.ts`` (the ``emit`` calls),
  ``packages/opencode/src/session/message-v2.ts`` (``StepFinishPart``) and the ``getUsage`` cost
  sum in ``packages/opencode/src/session/index.ts``.

``Usage.input_tokens`` never includes cache reads or writes; ``output_tokens`` includes
reasoning ("thinking") tokens, which every provider bills at the output price. A reported cost
of 0 with tokens spent means "no price known" (OpenCode and Claude Code report 0 for models
missing from their price tables): it is kept as not reported, so the catalog price applies.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from controller.core.workflows import usage_fields
from controller.core.workflows import usage_formats as formats
from controller.core.workflows.model import TaskReport, Usage, UsageFormat

_F = UsageFormat
_BUFFER_LIMIT: Final = 4 * 1024 * 1024  # a multi-line document larger than this is dropped


@dataclass(frozen=True, slots=True)
class Progress:
    """What ``resume`` needs to continue: the report so far, how many characters of complete
    lines were read, and the parser's own state (JSON-serialisable).

    The next ``resume`` takes the stdout that follows the first ``consumed`` characters. (A
    runtime reading bytes converts with ``len(text[:k].encode("utf-8", "surrogateescape"))``
    when it decoded with ``errors="surrogateescape"``.)
    """

    report: TaskReport
    consumed: int
    state: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON, to store between passes."""
        return {"report": _report_json(self.report), "consumed": self.consumed, "state": self.state}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Progress:
        """The inverse of ``to_json``."""
        return cls(
            report=_report_load(usage_fields.mapping(data.get("report"))),
            consumed=usage_fields.count(data.get("consumed")),
            state=usage_fields.mapping(data.get("state")),
        )


def start(fmt: UsageFormat) -> Progress:
    """The progress of a parser that has read nothing yet."""
    return Progress(report=TaskReport(), consumed=0, state={})


def parse(fmt: UsageFormat, text: str) -> TaskReport:
    """The report of a whole stdout (``text`` may end mid-line): ``resume`` from the start."""
    return resume(fmt, start(fmt), text).report


def resume(fmt: UsageFormat, so_far: Progress, new_text: str) -> Progress:
    """Continue ``so_far`` with ``new_text``, the stdout that follows ``so_far.consumed``.

    Each complete line is read once; the partial last line, if it is already a whole JSON
    value, counts in the report but not in ``consumed``. ``AUTO`` recognises the format from
    the first values it knows and stays on it; ``MANUAL`` reports nothing.
    """
    if fmt is _F.MANUAL:
        return Progress(TaskReport(), so_far.consumed + new_text.rfind("\n") + 1, so_far.state)
    run = _Run.load(fmt, so_far.state)
    reader = _Reader(usage_fields.text(so_far.state.get("buffer")))
    for value in reader.values(new_text):
        run.feed(value)
    state = {**run.dump(), "buffer": reader.dump()}
    tail = reader.tail(new_text[reader.consumed :])
    if tail is not _INVALID:
        run = _Run.load(fmt, state)  # a copy: the tail is read again once complete
        run.feed(tail)
    return Progress(run.report(), so_far.consumed + reader.consumed, state)


def detect(text: str) -> UsageFormat | None:
    """The format of a stdout, from the first JSON value(s) it recognises; None if none."""
    reader = _Reader(None)
    for value in reader.values(text):
        if (found := _recognise(value)) is not None:
            return found
    tail = reader.tail(text[reader.consumed :])
    return None if tail is _INVALID else _recognise(tail)


# --- reading: complete lines to JSON values -----------------------------------------------

_INVALID: Final = object()


def _load(text: str) -> object:
    """One JSON value, or ``_INVALID``; NaN and infinities become None (they are not JSON)."""
    try:
        return json.loads(text, parse_constant=lambda _: None)
    except (ValueError, RecursionError):
        return _INVALID


class _Reader:
    """JSON values of complete lines, one per line, except a document spread over lines.

    Gemini pretty-prints its one object: it starts with ``{`` at column 0 and ends with ``}``
    at column 0, its inner lines indented. Such lines are gathered and parsed once, at the
    closing line, so that no text is parsed twice (linear time).
    """

    def __init__(self, buffer: str | None) -> None:
        self.buffer: list[str] | None = None if buffer is None else [buffer]
        self.size = 0 if buffer is None else len(buffer)
        self.consumed = 0

    def values(self, text: str) -> Iterator[object]:
        """Values of the complete lines of ``text``; ``consumed`` ends after the last one."""
        position = 0
        while (end := text.find("\n", position)) != -1:
            line = text[position:end].removesuffix("\r")
            position = end + 1
            yield from self._line(line)
        self.consumed = position

    def tail(self, rest: str) -> object:
        """The value a partial last line completes, without changing the reader; or _INVALID."""
        rest = rest.removesuffix("\r")
        if self.buffer is not None and rest.startswith(("}", "]")):
            return _load("\n".join([*self.buffer, rest]))
        stripped = rest.strip()
        return _load(stripped) if stripped.startswith(("{", "[")) else _INVALID

    def dump(self) -> str | None:
        """The gathered lines of an unfinished document, for the next ``resume``."""
        return None if self.buffer is None else "\n".join(self.buffer)

    def _line(self, line: str) -> Iterator[object]:
        if self.buffer is not None and not line.startswith(("{", "[")):
            yield from self._gather(line)
            return
        self.buffer = None
        stripped = line.strip()
        if not stripped.startswith(("{", "[")):
            return  # a banner or a log line
        value = _load(stripped)
        if value is not _INVALID:
            yield value
        elif line.startswith(("{", "[")):
            self.buffer, self.size = [line], len(line)

    def _gather(self, line: str) -> Iterator[object]:
        assert self.buffer is not None
        self.buffer.append(line)
        self.size += len(line) + 1
        if line.startswith(("}", "]")):
            value = _load("\n".join(self.buffer))
            self.buffer = None
            if value is not _INVALID:
                yield value
        elif self.size > _BUFFER_LIMIT:
            self.buffer = None


# --- recognising a format from one value --------------------------------------------------

_CODEX_TYPES: Final = frozenset(
    {"thread.started", "turn.started", "turn.completed", "turn.failed"}
    | {"item.started", "item.updated", "item.completed"}
)
_OPENCODE_TYPES: Final = frozenset({"step_start", "step_finish", "text", "tool_use", "reasoning"})
_CLAUDE_STREAM_TYPES: Final = frozenset({"system", "assistant", "user", "stream_event"})


def _recognise(value: object) -> UsageFormat | None:
    """The format a single JSON value belongs to, if it is distinctive enough to tell."""
    if isinstance(value, list):
        # `--output-format json --verbose` prints a list of messages (only one level deep)
        claude = (_F.CLAUDE_JSON, _F.CLAUDE_STREAM)
        found = any(isinstance(item, dict) and _recognise(item) in claude for item in value)
        return _F.CLAUDE_JSON if found else None
    fields = usage_fields.mapping(value)
    kind = fields.get("type")
    if not isinstance(kind, str):
        return _F.GEMINI_JSON if formats.gemini_like(fields) else None
    return _recognise_typed(kind, fields)


def _recognise_typed(kind: str, value: Mapping[str, Any]) -> UsageFormat | None:
    if kind in _CODEX_TYPES:
        return _F.CODEX_JSONL
    if kind == "error":  # both Codex and OpenCode print one; only OpenCode's names the session
        if "sessionID" in value:
            return _F.OPENCODE_JSONL
        return _F.CODEX_JSONL if isinstance(value.get("message"), str) else None
    if kind in _OPENCODE_TYPES and isinstance(value.get("part"), dict):
        return _F.OPENCODE_JSONL
    if kind == "result" and ("subtype" in value or "is_error" in value):
        return _F.CLAUDE_JSON
    if kind in _CLAUDE_STREAM_TYPES and ("session_id" in value or "message" in value):
        return _F.CLAUDE_STREAM
    return None


# --- driving one format's parser ----------------------------------------------------------


class _Run:
    """The parser of the requested format (for AUTO: of the format recognised so far)."""

    def __init__(self, fmt: UsageFormat, label: UsageFormat | None, seen: bool) -> None:
        self.fmt = fmt
        self.label = label
        self.seen = seen
        self.parser: formats.Parser | None = None

    @classmethod
    def load(cls, fmt: UsageFormat, state: Mapping[str, Any]) -> _Run:
        label = _format(state.get("label")) if fmt is _F.AUTO else fmt
        run = cls(fmt, label, state.get("seen") is True)
        if label is not None:
            run.parser = _PARSERS[label](usage_fields.mapping(state.get("parser")))
        return run

    def feed(self, value: object) -> None:
        if self.parser is None:
            self.label = _recognise(value)
            if self.label is None:
                return
            self.parser = _PARSERS[self.label]({})
        if self.parser.feed(value):
            self.seen = True

    def report(self) -> TaskReport:
        if self.parser is None or not self.seen:
            return TaskReport()
        return replace(self.parser.report(), format=self.label)

    def dump(self) -> dict[str, Any]:
        parser = None if self.parser is None else self.parser.dump()
        label = None if self.label is None else self.label.value
        return {"label": label, "seen": self.seen, "parser": parser}


def _format(value: object) -> UsageFormat | None:
    try:
        return UsageFormat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _report_json(report: TaskReport) -> dict[str, Any]:
    return {
        "format": None if report.format is None else report.format.value,
        "usage": report.usage.to_json(),
        "finalMessage": report.final_message,
        "sessionId": report.session_id,
        "isError": report.is_error,
        "error": report.error,
        "model": report.model,
        "complete": report.complete,
    }


def _report_load(data: Mapping[str, Any]) -> TaskReport:
    usage = usage_fields.mapping(data.get("usage"))
    return TaskReport(
        format=_format(data.get("format")),
        usage=Usage(
            input_tokens=usage_fields.count(usage.get("inputTokens")),
            output_tokens=usage_fields.count(usage.get("outputTokens")),
            cache_read_tokens=usage_fields.count(usage.get("cacheReadTokens")),
            cache_write_tokens=usage_fields.count(usage.get("cacheWriteTokens")),
            reported_cost_usd=usage_fields.money(usage.get("reportedCostUsd")),
        ),
        final_message=usage_fields.text(data.get("finalMessage")),
        session_id=usage_fields.text(data.get("sessionId")),
        is_error=data.get("isError") is True,
        error=usage_fields.text(data.get("error")),
        model=usage_fields.text(data.get("model")),
        complete=data.get("complete") is True,
    )


_PARSERS: Final[Mapping[UsageFormat, Callable[[Mapping[str, Any]], formats.Parser]]] = {
    _F.CLAUDE_JSON: formats.Claude,
    _F.CLAUDE_STREAM: formats.Claude,
    _F.CODEX_JSONL: formats.Codex,
    _F.GEMINI_JSON: formats.Gemini,
    _F.OPENCODE_JSONL: formats.OpenCode,
}
