"""One parser per agent output format, for ``usage``: fed the JSON values of a stdout in order,
each keeps a JSON-serialisable state and builds a ``TaskReport``. Pure; whatever a value holds,
nothing here raises (every field goes through ``usage_fields``).

The docstring of each parser says where its shapes come from and how its tokens map onto
``Usage`` (input excludes cache reads and writes; output includes reasoning).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from controller.core.workflows.model import TaskReport, Usage
from controller.core.workflows.usage_fields import (
    count,
    mapping,
    money,
    priced,
    text,
    total,
    usage_json,
    usage_load,
)


class Latest:
    """Usage per key (a message or part id), the last one per key winning.

    Agents repeat an id only for the records of one response, printed together, so only the
    most recent keys are remembered and older ones are folded into one settled sum: the state,
    read back at every ``resume``, stays small however long the run.
    """

    LIMIT = 256

    def __init__(self, data: object) -> None:
        fields = mapping(data)
        self.settled = usage_load(fields.get("settled"))
        self.recent = {str(k): usage_load(v) for k, v in mapping(fields.get("recent")).items()}
        self.added = count(fields.get("added"))  # numbers records that carry no id

    def put(self, key: str | None, usage: Usage) -> None:
        """Record ``usage`` for ``key`` (None: a key of its own), replacing the key's last."""
        key = f"#{self.added}" if key is None else key
        self.added += 1
        self.recent.pop(key, None)
        self.recent[key] = usage
        if len(self.recent) > self.LIMIT:
            self.settled += self.recent.pop(next(iter(self.recent)))

    def total(self) -> Usage:
        """The settled sum plus the last usage of every recent key."""
        return total([self.settled, *self.recent.values()])

    def dump(self) -> dict[str, Any]:
        """The state, as plain JSON; the constructor takes it back."""
        recent = {key: usage_json(usage) for key, usage in self.recent.items()}
        return {"settled": usage_json(self.settled), "recent": recent, "added": self.added}


class Parser(Protocol):
    """What ``usage`` drives: values in, a report and a state out."""

    def feed(self, value: object) -> bool:
        """Read one JSON value; True when it is one of this format's records."""
        ...

    def report(self) -> TaskReport:
        """The report so far (``format`` is set by the caller)."""
        ...

    def dump(self) -> dict[str, Any]:
        """The state, as plain JSON; the constructor takes it back."""
        ...


# --- Claude Code ------------------------------------------------------------------------


class Claude:
    """Claude Code ``-p --output-format json`` (one ``result`` object; with ``--verbose`` a list
    of every message) and ``--output-format stream-json --verbose`` (one message a line:
    ``system``/``init`` with ``model`` and ``session_id``, ``assistant`` and ``user`` messages,
    ``result`` last). Shapes: the Claude Agent SDK's ``SDKMessage`` types; the guide "Track cost
    and usage" (code.claude.com/docs/en/agent-sdk/cost-tracking).

    Tokens follow the Anthropic Messages API: ``input_tokens`` excludes the cache;
    ``cache_read_input_tokens`` is the cache read, ``cache_creation_input_tokens`` the cache
    write. While it runs, each assistant message's ``message.usage`` counts once per message id
    (the CLI prints one message per content block, all with the id's usage: the last one wins).
    The ``result`` is authoritative and replaces that tally: its ``modelUsage`` summed over
    models when present (it covers every model the CLI called, subagents and the small fast
    model included, and is what ``total_cost_usd`` prices; ``usage`` covers the main model
    only), else its ``usage``. ``is_error``: ``is_error: true`` (an API error still comes as
    ``subtype: success``) or a ``subtype`` starting with ``error``. Final message: the
    result's ``result`` text, else the text of the last assistant message.
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.session = text(data.get("session"))
        self.model = text(data.get("model"))
        self.messages = Latest(data.get("messages"))
        self.last_text = text(data.get("lastText"))
        self.result = None if data.get("result") is None else usage_load(data.get("result"))
        self.result_text = text(data.get("resultText"))
        self.is_error = data.get("isError") is True
        self.error = text(data.get("error"))
        self.complete = data.get("complete") is True

    def feed(self, value: object) -> bool:
        if isinstance(value, list):  # `--output-format json --verbose`
            fed = [self.feed(item) for item in value if isinstance(item, dict)]
            return any(fed)
        fields = mapping(value)
        kind = fields.get("type")
        if kind not in ("system", "assistant", "user", "result", "stream_event"):
            return False
        self.session = text(fields.get("session_id")) or self.session
        if kind == "system" and fields.get("subtype") == "init":
            self.model = text(fields.get("model")) or self.model
        elif kind == "assistant":
            self._assistant(
                mapping(fields.get("message")), main=not fields.get("parent_tool_use_id")
            )
        elif kind == "result":
            self._result(fields)
        return True

    def report(self) -> TaskReport:
        running = self.messages.total()
        return TaskReport(
            usage=running if self.result is None else self.result + running,
            final_message=self.result_text or self.last_text,
            session_id=self.session,
            is_error=self.is_error,
            error=self.error,
            model=self.model,
            complete=self.complete,
        )

    def dump(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "model": self.model,
            "messages": self.messages.dump(),
            "lastText": self.last_text,
            "result": None if self.result is None else usage_json(self.result),
            "resultText": self.result_text,
            "isError": self.is_error,
            "error": self.error,
            "complete": self.complete,
        }

    def _assistant(self, message: Mapping[str, Any], *, main: bool) -> None:
        self.complete = False  # a new turn after a result: its own result is still to come
        if isinstance(message.get("usage"), dict):
            self.messages.put(text(message.get("id")), _claude_usage(message["usage"]))
        if main:  # a subagent's words (parent_tool_use_id set) are not the task's answer
            self.last_text = _claude_text(message.get("content")) or self.last_text
        name = text(message.get("model"))
        if self.model is None and name and not name.startswith("<"):  # "<synthetic>"
            self.model = name

    def _result(self, fields: Mapping[str, Any]) -> None:
        models = [mapping(m) for m in mapping(fields.get("modelUsage")).values()]
        if models:
            usage = total(map(_claude_model_usage, models))
        else:
            usage = _claude_usage(mapping(fields.get("usage")))
        self.result = priced(usage, money(fields.get("total_cost_usd")))
        self.messages = Latest(None)
        self.result_text = text(fields.get("result"))
        subtype = text(fields.get("subtype")) or ""
        self.is_error = fields.get("is_error") is True or subtype.startswith("error")
        self.error = _claude_error(fields, subtype) if self.is_error else None
        self.model = self.model or _busiest(mapping(fields.get("modelUsage")))
        self.complete = True


def _claude_usage(data: Mapping[str, Any]) -> Usage:
    return Usage(
        input_tokens=count(data.get("input_tokens")),
        output_tokens=count(data.get("output_tokens")),
        cache_read_tokens=count(data.get("cache_read_input_tokens")),
        cache_write_tokens=count(data.get("cache_creation_input_tokens")),
    )


def _claude_model_usage(data: Mapping[str, Any]) -> Usage:
    return Usage(
        input_tokens=count(data.get("inputTokens")),
        output_tokens=count(data.get("outputTokens")),
        cache_read_tokens=count(data.get("cacheReadInputTokens")),
        cache_write_tokens=count(data.get("cacheCreationInputTokens")),
    )


def _claude_text(content: object) -> str | None:
    if isinstance(content, str):
        return content or None
    blocks = content if isinstance(content, list) else []
    said = [text(mapping(b).get("text")) for b in blocks if mapping(b).get("type") == "text"]
    return "\n".join(s for s in said if s) or None


def _claude_error(fields: Mapping[str, Any], subtype: str) -> str:
    errors = fields.get("errors")
    said = [text(e) or text(mapping(e).get("message")) for e in _items(errors)]
    return text(fields.get("result")) or "; ".join(s for s in said if s) or subtype or "error"


def _items(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _busiest(models: Mapping[str, Any]) -> str | None:
    """The model that cost the most (then wrote the most): the session's main model."""
    ranked = [
        ((money(mapping(m).get("costUSD")) or 0.0, count(mapping(m).get("outputTokens"))), name)
        for name, m in models.items()
    ]
    return max(ranked, key=lambda pair: pair[0])[1] if ranked else None


# --- Codex ------------------------------------------------------------------------------


class Codex:
    """Codex ``codex exec --json``: one ``ThreadEvent`` a line (openai/codex
    ``codex-rs/exec/src/exec_events.rs``): ``thread.started`` (``thread_id``), ``turn.started``,
    ``item.started|updated|completed`` (``item.type``: ``agent_message``, ``reasoning``,
    ``command_execution``, ``file_change``, ``mcp_tool_call``, ``todo_list``, ``error``, ...),
    ``turn.completed`` (``usage``), ``turn.failed`` (``error.message``), ``error`` (``message``).

    ``turn.completed.usage`` is the thread's running total (``usage_from_last_total`` in
    ``event_processor_with_jsonl_output.rs`` copies ``ThreadTokenUsage.total``): a later one
    replaces an earlier one of the same thread; different threads add up. ``input_tokens``
    includes ``cached_input_tokens`` (and ``cache_write_input_tokens`` where present), as in
    the Responses API and ``TokenUsage::non_cached_input``: both are subtracted from input.
    ``output_tokens`` already includes ``reasoning_output_tokens``. No cost is reported.
    Codex prints ``error`` for a transient stream error it retries, too (``StreamError``):
    it marks the report failed until a later ``turn.completed`` shows the turn succeeded;
    ``turn.failed`` is final. Final message: the last completed ``agent_message``'s text.
    Caveat: ``codex exec resume`` may start a thread from its earlier total (recent Codex seeds
    it from the session's rollout), so a resumed task's total can include earlier attempts.
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.session = text(data.get("session"))
        self.earlier = usage_load(data.get("earlier"))  # threads this stdout finished before
        self.current = usage_load(data.get("current"))
        self.final = text(data.get("final"))
        self.is_error = data.get("isError") is True
        self.error = text(data.get("error"))
        self.complete = data.get("complete") is True

    def feed(self, value: object) -> bool:
        fields = mapping(value)
        kind = fields.get("type")
        if kind == "thread.started":
            self._thread(text(fields.get("thread_id")))
        elif kind == "turn.started":
            self.complete = False
        elif kind == "turn.completed":
            self.current = _codex_usage(mapping(fields.get("usage")))
            self.is_error, self.error, self.complete = False, None, True
        elif kind in ("turn.failed", "error"):
            self._failed(fields, final=kind == "turn.failed")
        elif kind == "item.completed":
            item = mapping(fields.get("item"))
            if item.get("type") == "agent_message":
                self.final = text(item.get("text")) or self.final
        return kind in _CODEX_KINDS

    def report(self) -> TaskReport:
        return TaskReport(
            usage=self.earlier + self.current,
            final_message=self.final,
            session_id=self.session,
            is_error=self.is_error,
            error=self.error,
            complete=self.complete,
        )

    def dump(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "earlier": usage_json(self.earlier),
            "current": usage_json(self.current),
            "final": self.final,
            "isError": self.is_error,
            "error": self.error,
            "complete": self.complete,
        }

    def _thread(self, thread: str | None) -> None:
        if thread is not None and self.session is not None and thread != self.session:
            self.earlier, self.current = self.earlier + self.current, Usage()
        self.session = thread or self.session

    def _failed(self, fields: Mapping[str, Any], *, final: bool) -> None:
        said = text(mapping(fields.get("error")).get("message")) or text(fields.get("message"))
        self.is_error = True
        self.error = said or ("turn failed" if final else "error")
        self.complete = self.complete or final


_CODEX_KINDS = frozenset(
    {"thread.started", "turn.started", "turn.completed", "turn.failed", "error"}
    | {"item.started", "item.updated", "item.completed", "item.plan.delta", "request_user_input"}
)


def _codex_usage(data: Mapping[str, Any]) -> Usage:
    sent = count(data.get("input_tokens"))
    cached = min(count(data.get("cached_input_tokens")), sent)
    written = min(count(data.get("cache_write_input_tokens")), sent - cached)
    return Usage(sent - cached - written, count(data.get("output_tokens")), cached, written)


# --- Gemini CLI -------------------------------------------------------------------------


class Gemini:
    """Gemini CLI ``gemini -p ... --output-format json``: one object, pretty-printed
    (google-gemini/gemini-cli ``packages/core/src/output/json-formatter.ts``): ``session_id``,
    ``response``, ``stats`` (``SessionMetrics``: ``models.<name>.tokens`` with ``input``,
    ``prompt``, ``candidates``, ``total``, ``cached``, ``thoughts``, ``tool``), ``error``
    (``type``, ``message``, ``code``) and ``warnings``.

    ``prompt`` includes ``cached`` (``uiTelemetry.ts``: ``input = prompt - cached``); the CLI's
    ``/stats`` (``ModelStatsDisplay.tsx``) splits ``total`` into input, cache reads, thoughts,
    tool and output. So input is prompt minus cached plus ``tool`` (``toolUsePromptTokenCount``,
    prompt tokens of tool use), cache read is ``cached``, and output is ``candidates`` plus
    ``thoughts`` (billed as output). Summed over models (the CLI also calls small models to
    route and check); the model reported is the one with the most tokens. No cost is reported.
    The object is whole: complete; a later one replaces it.
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.last = dict(mapping(data.get("last")))

    def feed(self, value: object) -> bool:
        fields = mapping(value)
        if isinstance(fields.get("type"), str) or not gemini_like(fields):
            return False
        self.last = dict(fields)
        return True

    def report(self) -> TaskReport:
        models = mapping(mapping(self.last.get("stats")).get("models"))
        tokens = {name: mapping(mapping(m).get("tokens")) for name, m in models.items()}
        error = self.last.get("error")
        return TaskReport(
            usage=total(map(_gemini_usage, tokens.values())),
            final_message=text(self.last.get("response")),
            session_id=text(self.last.get("session_id")),
            is_error=error is not None,
            error=None if error is None else _gemini_error(error),
            model=max(tokens, key=lambda name: count(tokens[name].get("total")), default=None),
            complete=bool(self.last),
        )

    def dump(self) -> dict[str, Any]:
        return {"last": self.last}


def gemini_like(fields: Mapping[str, Any]) -> bool:
    """Whether an object without a ``type`` is Gemini's: it has a response, stats or error."""
    return (
        isinstance(fields.get("response"), str)
        or isinstance(fields.get("stats"), dict)
        or isinstance(fields.get("error"), dict)
    )


def _gemini_error(error: object) -> str:
    said = text(mapping(error).get("message")) or text(mapping(error).get("type"))
    return text(error) or said or "error"


def _gemini_usage(tokens: Mapping[str, Any]) -> Usage:
    cached = count(tokens.get("cached"))
    if "prompt" in tokens:
        fresh = max(0, count(tokens.get("prompt")) - cached)
    else:
        fresh = count(tokens.get("input"))
    output = count(tokens.get("candidates")) + count(tokens.get("thoughts"))
    return Usage(fresh + count(tokens.get("tool")), output, cached, 0)


# --- OpenCode ---------------------------------------------------------------------------


class OpenCode:
    """OpenCode ``opencode run --format json``: one event a line, ``{type, timestamp, sessionID,
    part | error}`` (sst/opencode, now anomalyco/opencode, ``packages/opencode/src/cli/cmd/
    run.ts``): ``step_start``, ``step_finish``, ``text``, ``tool_use``, ``reasoning`` carry a
    message part; ``error`` carries ``{name, data: {message}}``.

    ``step_finish`` parts (``StepFinishPart`` in ``session/message-v2.ts``) hold ``cost`` and
    ``tokens: {input, output, reasoning, cache: {read, write}}``. ``getUsage`` already took the
    cache out of ``input``; reasoning is apart from ``output`` and billed at the output price,
    so output is output plus reasoning. Steps add up (the last per part id); the cost is the
    sum of the steps'. Only the root session's events are printed: subagents' usage is not in
    stdout. Final message: the text parts of the last message that had text. Complete: a
    ``step_finish`` whose reason is not ``tool-calls`` (the model stopped), or an error.
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.session = text(data.get("session"))
        self.steps = Latest(data.get("steps"))
        self.message = text(data.get("message"))
        self.texts = {str(k): v for k, v in mapping(data.get("texts")).items() if text(v)}
        self.is_error = data.get("isError") is True
        self.error = text(data.get("error"))
        self.complete = data.get("complete") is True

    def feed(self, value: object) -> bool:
        fields = mapping(value)
        kind = fields.get("type")
        if kind not in _OPENCODE_KINDS:
            return False
        self.session = text(fields.get("sessionID")) or self.session
        part = mapping(fields.get("part"))
        if kind == "step_start":
            self.complete = False
        elif kind == "step_finish":
            self._step(part)
        elif kind == "text":
            self._text(part)
        elif kind == "error":
            self.is_error, self.error, self.complete = True, _opencode_error(fields), True
        return True

    def report(self) -> TaskReport:
        spent = self.steps.total()
        return TaskReport(
            usage=priced(spent, spent.reported_cost_usd),
            final_message="\n".join(self.texts.values()) or None,
            session_id=self.session,
            is_error=self.is_error,
            error=self.error,
            complete=self.complete,
        )

    def dump(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "steps": self.steps.dump(),
            "message": self.message,
            "texts": self.texts,
            "isError": self.is_error,
            "error": self.error,
            "complete": self.complete,
        }

    def _step(self, part: Mapping[str, Any]) -> None:
        tokens = mapping(part.get("tokens"))
        cache = mapping(tokens.get("cache"))
        step = Usage(
            input_tokens=count(tokens.get("input")),
            output_tokens=count(tokens.get("output")) + count(tokens.get("reasoning")),
            cache_read_tokens=count(cache.get("read")),
            cache_write_tokens=count(cache.get("write")),
            reported_cost_usd=money(part.get("cost")),
        )
        self.steps.put(text(part.get("id")), step)
        self.complete = part.get("reason") not in ("tool-calls", "tool_calls")

    def _text(self, part: Mapping[str, Any]) -> None:
        message = text(part.get("messageID"))
        if message != self.message:
            self.message, self.texts = message, {}
        said = text(part.get("text"))
        if said:
            self.texts[text(part.get("id")) or f"#{len(self.texts)}"] = said


_OPENCODE_KINDS = frozenset({"step_start", "step_finish", "text", "tool_use", "reasoning", "error"})


def _opencode_error(fields: Mapping[str, Any]) -> str:
    error = fields.get("error")
    said = text(mapping(mapping(error).get("data")).get("message"))
    return text(error) or said or text(mapping(error).get("name")) or "error"
