"""Usage parsers read what the agent CLIs really print (golden files), tally while they run,
resume where they stopped, and never raise, whatever the text."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.workflows import usage
from controller.core.workflows.model import TaskReport, Usage, UsageFormat

F = UsageFormat
GOLDEN = Path(__file__).resolve().parents[3] / "golden" / "usage"
CASES = sorted(GOLDEN.glob("*/*.txt"))
FAST = settings(max_examples=60, database=None, deadline=None)


def expected_report(data: dict[str, Any]) -> TaskReport:
    fmt = data["format"]
    return TaskReport(
        format=None if fmt is None else UsageFormat(fmt),
        usage=Usage.from_json(data["usage"]),
        final_message=data["finalMessage"],
        session_id=data["sessionId"],
        is_error=data["isError"],
        error=data["error"],
        model=data["model"],
        complete=data["complete"],
    )


def same(actual: TaskReport, expected: TaskReport) -> None:
    """Equal, costs compared as floats (sums of decimal fractions)."""
    cost = expected.usage.reported_cost_usd
    assert actual.usage.reported_cost_usd == (None if cost is None else pytest.approx(cost))
    uncosted = dataclasses.replace(actual.usage, reported_cost_usd=cost)
    assert dataclasses.replace(actual, usage=uncosted) == expected


def golden(path: Path) -> tuple[UsageFormat, str, TaskReport]:
    expected = json.loads(path.with_suffix(".expected.json").read_text())
    return UsageFormat(path.parent.name), path.read_text(), expected_report(expected)


def by_lines(fmt: UsageFormat, text: str, cuts: list[int] | None = None) -> usage.Progress:
    """Feed ``text`` in chunks ending at line boundaries (after the lines numbered in
    ``cuts``, or after every line), through JSON as the runtime stores it between passes."""
    lines = text.splitlines(keepends=True)
    bounds = sorted({0, len(lines), *(cuts if cuts is not None else range(len(lines)))})
    progress = usage.start(fmt)
    for begin, end in itertools.pairwise(bounds):
        chunk = "".join(lines[begin:end])
        stored = json.loads(json.dumps(progress.to_json()))
        progress = usage.resume(fmt, usage.Progress.from_json(stored), chunk)
    return progress


# --- golden files: real shapes, parsed whole, with auto, and line by line ------------------


def test_there_are_golden_files_for_every_parsed_format() -> None:
    formats = {path.parent.name for path in CASES}
    assert formats == {f.value for f in F} - {"auto", "manual"}
    assert all(path.with_suffix(".expected.json").exists() for path in CASES)


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_golden_stdout_gives_its_expected_report(path: Path) -> None:
    fmt, text, expected = golden(path)
    same(usage.parse(fmt, text), expected)
    same(usage.parse(F.AUTO, text), expected)
    assert usage.detect(text) == expected.format


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_golden_stdout_read_line_by_line_gives_the_same_report(path: Path) -> None:
    fmt, text, expected = golden(path)
    for each in (fmt, F.AUTO):
        progress = by_lines(each, text)
        same(progress.report, expected)
        complete = text.rfind("\n") + 1
        assert progress.consumed == complete  # a partial last line is read again next time


@FAST
@given(data=st.data())
def test_chunks_cut_at_any_line_boundaries_give_the_same_report(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(CASES))
    fmt, text, _ = golden(path)
    count = len(text.splitlines())
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=count), max_size=count))
    for each in (fmt, F.AUTO):
        assert by_lines(each, text, cuts).report == usage.parse(each, text)


# --- the mapping of each format's tokens onto Usage -----------------------------------------


def claude_result(**fields: Any) -> str:
    return json.dumps({"type": "result", "subtype": "success", "is_error": False, **fields}) + "\n"


def test_claude_cache_read_and_creation_are_kept_apart_from_input() -> None:
    line = claude_result(
        usage={
            "input_tokens": 7,
            "output_tokens": 30,
            "cache_read_input_tokens": 900,
            "cache_creation_input_tokens": 50,
        },
        total_cost_usd=0.01,
    )
    assert usage.parse(F.CLAUDE_JSON, line).usage == Usage(7, 30, 900, 50, 0.01)


def test_claude_model_usage_covers_every_model_and_wins_over_usage() -> None:
    line = claude_result(
        usage={"input_tokens": 7, "output_tokens": 30},
        modelUsage={
            "claude-haiku-4-5": {"inputTokens": 100, "outputTokens": 3, "costUSD": 0.0001},
            "claude-opus-4-1": {"inputTokens": 7, "outputTokens": 30, "costUSD": 0.003},
        },
        total_cost_usd=0.0031,
    )
    report = usage.parse(F.CLAUDE_JSON, line)
    assert report.usage == Usage(107, 33, 0, 0, 0.0031)
    assert report.model == "claude-opus-4-1"  # the one that cost the most


def stream(*messages: dict[str, Any]) -> str:
    return "".join(json.dumps(m) + "\n" for m in messages)


def assistant(
    mid: str, output: int, *, parent: str | None = None, said: str = ""
) -> dict[str, Any]:
    message = {
        "id": mid,
        "content": [{"type": "text", "text": said}] if said else [],
        "usage": {"input_tokens": 2, "output_tokens": output, "cache_read_input_tokens": 10},
    }
    return {"type": "assistant", "message": message, "parent_tool_use_id": parent}


def test_claude_stream_counts_each_message_id_once_with_its_last_usage() -> None:
    text = stream(assistant("m1", 5), assistant("m1", 40), assistant("m2", 7))
    report = usage.parse(F.CLAUDE_STREAM, text)
    assert report.usage == Usage(4, 47, 20, 0)
    assert (report.complete, report.usage.reported_cost_usd) == (False, None)


def test_claude_result_replaces_the_running_tally() -> None:
    result = json.loads(claude_result(usage={"input_tokens": 1, "output_tokens": 2}))
    text = stream(assistant("m1", 5), assistant("m2", 7), result)
    assert usage.parse(F.CLAUDE_STREAM, text).usage == Usage(1, 2)


def test_claude_final_message_is_the_main_agents_when_no_result_says_it() -> None:
    text = stream(assistant("m1", 1, said="main"), assistant("s1", 1, parent="toolu_1", said="sub"))
    assert usage.parse(F.CLAUDE_STREAM, text).final_message == "main"


def test_claude_model_and_text_come_from_messages_when_there_is_no_init() -> None:
    plain = {"type": "assistant", "message": {"model": "claude-opus-4-1", "content": "hi"}}
    synthetic = {"type": "assistant", "message": {"model": "<synthetic>", "content": "x"}}
    report = usage.parse(F.CLAUDE_STREAM, stream(synthetic, plain))
    assert (report.model, report.final_message, report.usage) == ("claude-opus-4-1", "hi", Usage())


def test_claude_a_turn_after_a_result_adds_to_it_until_its_own_result() -> None:
    result = json.loads(claude_result(usage={"input_tokens": 1, "output_tokens": 2}))
    report = usage.parse(F.CLAUDE_STREAM, stream(result, assistant("m9", 5)))
    assert (report.usage, report.complete) == (Usage(3, 7, 10), False)


@pytest.mark.parametrize(
    ("fields", "is_error", "error"),
    [
        ({"subtype": "success", "is_error": False, "result": "ok"}, False, None),
        (
            {"subtype": "success", "is_error": True, "result": "API Error: 529"},
            True,
            "API Error: 529",
        ),
        ({"subtype": "error_max_turns", "is_error": False}, True, "error_max_turns"),
        (
            {"subtype": "error_during_execution", "errors": ["boom", {"message": "bang"}]},
            True,
            "boom; bang",
        ),
        (
            {"subtype": "error_during_execution", "is_error": True, "errors": []},
            True,
            "error_during_execution",
        ),
    ],
)
def test_claude_errors(fields: dict[str, Any], is_error: bool, error: str | None) -> None:
    report = usage.parse(F.CLAUDE_JSON, json.dumps({"type": "result", **fields}))
    assert (report.is_error, report.error, report.complete) == (is_error, error, True)


def test_a_zero_cost_for_spent_tokens_is_no_price_and_a_zero_cost_for_nothing_is_zero() -> None:
    spent = claude_result(usage={"input_tokens": 9, "output_tokens": 1}, total_cost_usd=0)
    assert usage.parse(F.CLAUDE_JSON, spent).usage.reported_cost_usd is None
    nothing = claude_result(usage={"input_tokens": 0, "output_tokens": 0}, total_cost_usd=0)
    assert usage.parse(F.CLAUDE_JSON, nothing).usage.reported_cost_usd == 0.0
    for junk in ("-1", "true", '"0.5"', "9" * 400):  # negative, not a number, overflowing
        line = '{"type":"result","subtype":"success","total_cost_usd":' + junk + "}"
        assert usage.parse(F.CLAUDE_JSON, line).usage.reported_cost_usd is None


def codex(*events: dict[str, Any]) -> str:
    return stream(*events)


def turn_completed(sent: int, cached: int, output: int, **more: int) -> dict[str, Any]:
    counts = {"input_tokens": sent, "cached_input_tokens": cached, "output_tokens": output}
    return {"type": "turn.completed", "usage": {**counts, **more}}


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (turn_completed(1000, 800, 50), Usage(200, 50, 800, 0)),
        (turn_completed(1000, 800, 50, reasoning_output_tokens=30), Usage(200, 50, 800, 0)),
        (turn_completed(1000, 700, 50, cache_write_input_tokens=100), Usage(200, 50, 700, 100)),
        (turn_completed(10, 800, 50), Usage(0, 50, 10, 0)),  # a cache larger than input: clamped
    ],
)
def test_codex_input_excludes_cached_input(event: dict[str, Any], expected: Usage) -> None:
    assert usage.parse(F.CODEX_JSONL, codex(event)).usage == expected


def test_codex_turn_totals_of_one_thread_replace_and_of_two_threads_add() -> None:
    text = codex(
        {"type": "thread.started", "thread_id": "t1"},
        turn_completed(100, 0, 10),
        turn_completed(300, 0, 30),  # the thread's running total, not a delta
        {"type": "thread.started", "thread_id": "t2"},
        turn_completed(50, 0, 5),
    )
    report = usage.parse(F.CODEX_JSONL, text)
    assert (report.usage, report.session_id) == (Usage(350, 35), "t2")


def test_codex_retried_stream_errors_clear_when_the_turn_completes() -> None:
    error = {"type": "error", "message": "Reconnecting... 1/5"}
    assert usage.parse(F.CODEX_JSONL, codex(error)).is_error
    assert not usage.parse(F.CODEX_JSONL, codex(error, turn_completed(1, 0, 1))).is_error
    failed = {"type": "turn.failed", "error": {"message": "quota"}}
    report = usage.parse(F.CODEX_JSONL, codex(error, failed))
    assert (report.is_error, report.error, report.complete) == (True, "quota", True)


def gemini(**tokens: int) -> str:
    return json.dumps(
        {"response": "r", "stats": {"models": {"gemini-2.5-pro": {"tokens": tokens}}}}
    )


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ({"prompt": 1000, "cached": 600, "candidates": 40, "thoughts": 60}, Usage(400, 100, 600)),
        ({"prompt": 1000, "cached": 0, "candidates": 40, "tool": 25}, Usage(1025, 40, 0)),
        ({"input": 400, "cached": 600, "candidates": 40}, Usage(400, 40, 600)),  # no prompt
    ],
)
def test_gemini_prompt_includes_cached_and_output_includes_thoughts(
    tokens: dict[str, int], expected: Usage
) -> None:
    assert usage.parse(F.GEMINI_JSON, gemini(**tokens)).usage == expected


def step_finish(pid: str, cost: float, reason: str = "stop", **tokens: Any) -> dict[str, Any]:
    part = {"id": pid, "messageID": "msg_1", "reason": reason, "cost": cost, "tokens": tokens}
    return {"type": "step_finish", "sessionID": "ses_1", "part": part}


def test_opencode_output_includes_reasoning_and_steps_add_up_once_per_part() -> None:
    tokens: dict[str, Any] = {"input": 3, "output": 10, "reasoning": 5}
    tokens["cache"] = {"read": 100, "write": 20}
    first = step_finish("prt_1", 0.5, "tool-calls", **tokens)
    text = stream(first, first, step_finish("prt_2", 0.25, **tokens))
    report = usage.parse(F.OPENCODE_JSONL, text)
    assert (report.usage, report.complete) == (Usage(6, 30, 200, 40, 0.75), True)


def test_opencode_is_not_complete_while_the_model_is_still_calling_tools() -> None:
    text = stream(step_finish("prt_1", 0.1, "tool-calls", input=1, output=1))
    assert not usage.parse(F.OPENCODE_JSONL, text).complete


def text_part(pid: str, message: str, said: str) -> dict[str, Any]:
    part = {"id": pid, "messageID": message, "type": "text", "text": said}
    return {"type": "text", "sessionID": "ses_1", "part": part}


def test_opencode_final_message_is_the_text_of_the_last_message_that_had_some() -> None:
    first = text_part("prt_1", "msg_1", "Looking.")
    second, third = text_part("prt_2", "msg_2", "Done:"), text_part("prt_3", "msg_2", "3 files.")
    text = stream(first, second, third, text_part("prt_4", "msg_2", ""))
    assert usage.parse(F.OPENCODE_JSONL, text).final_message == "Done:\n3 files."


def test_manual_reports_nothing_and_moves_on() -> None:
    progress = usage.resume(F.MANUAL, usage.start(F.MANUAL), stream(assistant("m", 1)) + "{")
    assert progress.report == TaskReport()
    assert progress.consumed == len(stream(assistant("m", 1)))


# --- reading: banners, partial lines, documents over lines, detection ----------------------


def test_banners_blank_lines_and_crlf_are_skipped() -> None:
    text = "Loaded cached credentials.\r\n\r\n  \n" + codex(turn_completed(5, 0, 1)).replace(
        "\n", "\r\n"
    )
    assert usage.parse(F.AUTO, text).usage == Usage(5, 1)


def test_a_partial_last_line_counts_once_it_is_whole_and_is_read_again_next_time() -> None:
    line = codex(turn_completed(5, 0, 1))
    first = usage.resume(F.CODEX_JSONL, usage.start(F.CODEX_JSONL), line[:-1])
    assert (first.report.usage, first.consumed) == (Usage(5, 1), 0)
    second = usage.resume(F.CODEX_JSONL, first, line)
    assert (second.report.usage, second.consumed) == (Usage(5, 1), len(line))


def test_a_pretty_printed_document_is_gathered_across_resumes() -> None:
    text = json.dumps(json.loads(gemini(prompt=10, candidates=2)), indent=2) + "\n"
    half = text.index("\n", len(text) // 2) + 1
    first = usage.resume(F.AUTO, usage.start(F.AUTO), text[:half])
    assert (first.report, first.consumed) == (TaskReport(), half)
    second = usage.resume(F.AUTO, first, text[half:])
    assert second.report.usage == Usage(10, 2)
    unterminated = usage.resume(F.AUTO, first, text[half:-1])  # its "}" has no newline yet
    assert (unterminated.report, unterminated.consumed) == (second.report, len(text) - 2)


@pytest.mark.parametrize(
    "junk",
    [
        "{ this is not json\n  still not\n",  # gathered, then dropped at the next "{"
        "{\n  not json\n}\n",  # gathered, invalid at its closing line
        "  { indented, not json\n",  # not at column 0: not a document's start
        "{\n" + "  padding padding padding\n" * 200_000,  # larger than a document may be
    ],
)
def test_junk_that_looks_like_json_does_not_swallow_the_lines_after_it(junk: str) -> None:
    text = junk + codex(turn_completed(5, 0, 1))
    assert usage.parse(F.AUTO, text).usage == Usage(5, 1)
    assert by_lines(F.AUTO, text, [1, 2, 3, len(text)]).report.usage == Usage(5, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("hello\nworld\n", None),
        ('{"type":"thread.started","thread_id":"t"}\n', F.CODEX_JSONL),
        ('{"type":"error","message":"m"}\n', F.CODEX_JSONL),
        ('{"type":"error","sessionID":"s","error":{"name":"E"}}\n', F.OPENCODE_JSONL),
        ('{"type":"step_start","part":{}}\n', F.OPENCODE_JSONL),
        ('{"type":"tool_use","tool_name":"x"}\n', None),  # Gemini stream-json: not parsed
        ('{"type":"system","subtype":"init","session_id":"s"}\n', F.CLAUDE_STREAM),
        ('{"type":"result","subtype":"success"}', F.CLAUDE_JSON),
        ('{"type":"result","status":"success","stats":{}}\n', None),
        ('[{"type":"system","session_id":"s"}]\n', F.CLAUDE_JSON),
        ('{"response":"r"}\n', F.GEMINI_JSON),
        ('{"session_id":"s","error":{"type":"E","message":"m"}}\n', F.GEMINI_JSON),
        ("[1, [2]]\n", None),
    ],
)
def test_detect(text: str, expected: UsageFormat | None) -> None:
    assert usage.detect(text) == expected


def test_auto_stays_on_the_format_it_recognised_first() -> None:
    text = codex({"type": "thread.started", "thread_id": "t"}) + claude_result(total_cost_usd=1)
    report = usage.parse(F.AUTO, text)
    assert (report.format, report.complete) == (F.CODEX_JSONL, False)


def test_an_explicit_format_with_nothing_of_it_reports_no_format() -> None:
    assert usage.parse(F.GEMINI_JSON, codex(turn_completed(1, 0, 1))) == TaskReport()


# --- never raise, linear time ---------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
KINDS = sorted(
    {"system", "assistant", "user", "result", "thread.started", "turn.started", "turn.completed"}
    | {"turn.failed", "error", "item.completed", "step_start", "step_finish", "text", "tool_use"}
)
FIELDS = [
    "message",
    "usage",
    "modelUsage",
    "result",
    "is_error",
    "subtype",
    "errors",
    "session_id",
    "total_cost_usd",
    "thread_id",
    "item",
    "error",
    "part",
    "sessionID",
    "stats",
    "response",
    "parent_tool_use_id",
    "model",
]
events = st.fixed_dictionaries(
    {"type": st.sampled_from(KINDS)}, optional=dict.fromkeys(FIELDS, json_values)
) | st.fixed_dictionaries({}, optional=dict.fromkeys(["response", "stats", "error"], json_values))


def valid(report: TaskReport) -> bool:
    counts = dataclasses.astuple(report.usage)[:4]
    return isinstance(report, TaskReport) and all(isinstance(c, int) and c >= 0 for c in counts)


@FAST
@given(fmt=st.sampled_from(list(F)), text=st.text())
def test_any_text_gives_a_report(fmt: UsageFormat, text: str) -> None:
    assert valid(usage.parse(fmt, text))
    usage.detect(text)


@FAST
@given(fmt=st.sampled_from(list(F)), values=st.lists(events | json_values, max_size=8))
def test_any_json_values_give_a_report_and_the_same_one_line_by_line(
    fmt: UsageFormat, values: list[Any]
) -> None:
    text = "".join(json.dumps(value) + "\n" for value in values)
    report = usage.parse(fmt, text)
    assert valid(report)
    assert by_lines(fmt, text).report == report


def test_a_damaged_stored_progress_is_read_as_far_as_it_makes_sense() -> None:
    junk = {"report": 3, "consumed": -2, "state": {"label": "nope", "parser": 5, "buffer": 7}}
    progress = usage.Progress.from_json(junk)
    assert (progress.report, progress.consumed) == (TaskReport(), 0)
    report = usage.resume(F.AUTO, progress, codex(turn_completed(5, 0, 1))).report
    assert report.usage == Usage(5, 1)


def test_deeply_nested_json_and_huge_numbers_are_skipped() -> None:
    text = "[" * 100_000 + "\n" + '{"type":"turn.completed","usage":{"input_tokens":1e999}}\n'
    text += '{"type":"result","subtype":"success","total_cost_usd":' + "9" * 400 + "}\n"
    report = usage.parse(F.AUTO, text)
    assert (report.usage, report.format) == (Usage(), F.CODEX_JSONL)


def test_megabytes_of_stream_parse_in_one_pass() -> None:
    """About 8 MB of Claude stream: each line is parsed once, chunks are not re-read, and the
    state carried between chunks stays small."""
    messages = [assistant(f"msg_{n}", n % 50, said="x" * 200) for n in range(30_000)]
    text = stream(*messages)
    assert len(text) > 8_000_000
    whole = usage.parse(F.CLAUDE_STREAM, text)
    assert whole.usage.output_tokens == sum(n % 50 for n in range(30_000))
    cuts = list(range(0, 30_000, 1_000))
    progress = by_lines(F.CLAUDE_STREAM, text, cuts)
    assert progress.report == whole
    assert len(json.dumps(progress.to_json())) < 50_000  # recent ids only: read back each pass
