"""A stand-in agent for workflow tasks: writes files, sleeps, fails, and reports usage the way
real agent CLIs print it.

Options (argv, any order; everything after a lone ``--`` is ignored, so a command template can
pass the prompt there):
  --record FILE         append one JSON line: pid, cwd, argv, LANE_*/CONTROLLER_* environment,
                        the prompt file's text (when --prompt-file is given)
  --prompt-file PATH    the {promptFile} placeholder; its text is recorded
  --write PATH=TEXT     write a file in the worktree (left uncommitted)
  --commit PATH=TEXT    write a file and commit it on the task's branch
  --sleep SECONDS       sleep before exiting (after printing a first usage record when streaming)
  --ignore-term         ignore SIGTERM (so a stop needs SIGKILL)
  --fail-first N        exit 1 on the first N starts (counted in --state FILE)
  --state FILE          where starts are counted
  --exit CODE           exit status (default 0)
  --format FMT          claude-json | claude-stream | codex-jsonl | gemini-json | opencode-jsonl
  --input-tokens N, --output-tokens N, --cost USD, --message TEXT, --error
                        what the printed report says (--error: the agent reports a failure)
  --big-message N       the final message is N characters long
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _options(args: list[str]) -> dict[str, list[str]]:
    if "--" in args:
        args = args[: args.index("--")]
    found: dict[str, list[str]] = {}
    flags = {"--ignore-term", "--error"}
    index = 0
    while index < len(args):
        name = args[index]
        if name in flags:
            found.setdefault(name, []).append("1")
            index += 1
            continue
        found.setdefault(name, []).append(args[index + 1] if index + 1 < len(args) else "")
        index += 2
    return found


def _one(opts: dict[str, list[str]], name: str, default: str = "") -> str:
    return opts.get(name, [default])[-1]


def _record(opts: dict[str, list[str]]) -> None:
    path = _one(opts, "--record")
    if not path:
        return
    prompt_file = _one(opts, "--prompt-file")
    env = {k: v for k, v in os.environ.items() if k.startswith(("LANE_", "CONTROLLER_", "TEST_"))}
    entry = {
        "start": time.time(),
        "pid": os.getpid(),
        "cwd": str(Path.cwd()),
        "argv": sys.argv[1:],
        "env": env,
        "prompt": Path(prompt_file).read_text() if prompt_file else None,
        "files": sorted(p.name for p in Path.cwd().iterdir()),
    }
    with Path(path).open("a") as out:
        out.write(json.dumps(entry) + "\n")


def _starts(opts: dict[str, list[str]]) -> int:
    state = _one(opts, "--state")
    if not state:
        return 1
    path = Path(state)
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    return count


def _write_files(opts: dict[str, list[str]]) -> None:
    for spec in opts.get("--write", []):
        name, _, text = spec.partition("=")
        target = Path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text + "\n")
    commits = opts.get("--commit", [])
    for spec in commits:
        name, _, text = spec.partition("=")
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(text + "\n")
        subprocess.run(["git", "add", "--", name], check=True)
    if commits:
        subprocess.run(["git", "commit", "-q", "-m", "task output"], check=True)


def _report(opts: dict[str, list[str]], *, final: bool) -> str:
    fmt = _one(opts, "--format")
    inp = int(_one(opts, "--input-tokens", "0"))
    out = int(_one(opts, "--output-tokens", "0"))
    cost = float(_one(opts, "--cost", "0"))
    message = _one(opts, "--message", "done")
    if _one(opts, "--big-message"):
        size = int(_one(opts, "--big-message"))
        message = ("".join(f"line {i}: " + "x" * 60 + "\n" for i in range(size // 68 + 1)))[:size]
    error = "--error" in opts
    session = os.environ.get("TEST_SESSION", "00000000-0000-5000-8000-000000000000")
    builders = {
        "claude-json": lambda: _claude_result(inp, out, cost, message, error, session),
        "claude-stream": lambda: _claude_stream(inp, out, cost, message, error, session, final),
        "codex-jsonl": lambda: _codex(inp, out, message, error, final),
        "gemini-json": lambda: _gemini(inp, out, message, error),
        "opencode-jsonl": lambda: _opencode(inp, out, cost, message, error, final),
    }
    return builders[fmt]() if fmt in builders else ""


def _claude_result(inp: int, out: int, cost: float, message: str, error: bool, session: str) -> str:
    return json.dumps(
        {
            "type": "result",
            "subtype": "error_during_execution" if error else "success",
            "is_error": error,
            "duration_ms": 1200,
            "num_turns": 1,
            "result": message,
            "session_id": session,
            "total_cost_usd": cost,
            "usage": {
                "input_tokens": inp,
                "output_tokens": out,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
    )


def _claude_stream(
    inp: int, out: int, cost: float, message: str, error: bool, session: str, final: bool
) -> str:
    init = {"type": "system", "subtype": "init", "session_id": session, "model": "claude-test"}
    assistant = {
        "type": "assistant",
        "session_id": session,
        "message": {
            "id": "msg_01",
            "model": "claude-test",
            "content": [{"type": "text", "text": message}],
            "usage": {"input_tokens": inp, "output_tokens": out},
        },
    }
    lines = [json.dumps(init), json.dumps(assistant)]
    if final:
        lines.append(_claude_result(inp, out, cost, message, error, session))
    return "\n".join(lines)


def _codex(inp: int, out: int, message: str, error: bool, final: bool) -> str:
    lines = [
        {"type": "thread.started", "thread_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"},
        {"type": "turn.started"},
        {
            "type": "item.completed",
            "item": {"id": "item_0", "type": "agent_message", "text": message},
        },
    ]
    if final and error:
        lines.append({"type": "turn.failed", "error": {"message": "the model failed"}})
    elif final:
        usage = {"input_tokens": inp, "cached_input_tokens": 0, "output_tokens": out}
        lines.append({"type": "turn.completed", "usage": usage})
    return "\n".join(json.dumps(line) for line in lines)


def _gemini(inp: int, out: int, message: str, error: bool) -> str:
    tokens = {"prompt": inp, "candidates": out, "total": inp + out, "cached": 0, "thoughts": 0}
    body: dict[str, object] = {
        "response": message,
        "stats": {"models": {"gemini-test": {"tokens": tokens}}},
    }
    if error:
        body["error"] = {"type": "Error", "message": "the model failed", "code": 1}
    return json.dumps(body, indent=2)


def _opencode(inp: int, out: int, cost: float, message: str, error: bool, final: bool) -> str:
    lines: list[dict[str, object]] = [
        {
            "type": "step_start",
            "timestamp": 1,
            "sessionID": "ses_1",
            "part": {"type": "step-start"},
        },
        {
            "type": "text",
            "timestamp": 2,
            "sessionID": "ses_1",
            "part": {"type": "text", "text": message},
        },
    ]
    if error:
        lines.append(
            {
                "type": "error",
                "timestamp": 3,
                "sessionID": "ses_1",
                "error": {"name": "APIError", "data": {"message": "the model failed"}},
            }
        )
    if final:
        tokens = {"input": inp, "output": out, "reasoning": 0, "cache": {"read": 0, "write": 0}}
        part = {"type": "step-finish", "reason": "stop", "tokens": tokens, "cost": cost}
        lines.append({"type": "step_finish", "timestamp": 4, "sessionID": "ses_1", "part": part})
    return "\n".join(json.dumps(line) for line in lines)


def main(args: list[str]) -> int:
    opts = _options(args)
    if "--ignore-term" in opts:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _record(opts)
    if _starts(opts) <= int(_one(opts, "--fail-first", "0")):
        print("failing on purpose", file=sys.stderr)
        return 1
    _write_files(opts)
    streaming = _one(opts, "--format") in ("claude-stream", "codex-jsonl", "opencode-jsonl")
    if streaming and _one(opts, "--sleep"):
        print(_report(opts, final=False), flush=True)  # usage tallied while it runs
    if _one(opts, "--sleep"):
        time.sleep(float(_one(opts, "--sleep")))
    if not (streaming and _one(opts, "--sleep")):
        text = _report(opts, final=True)
        if text:
            print(text, flush=True)
    else:
        print(_report(opts, final=True).splitlines()[-1], flush=True)
    print("stand-in task finished", file=sys.stderr)
    if _one(opts, "--record"):
        with Path(_one(opts, "--record")).open("a") as out:
            out.write(json.dumps({"end": time.time(), "pid": os.getpid()}) + "\n")
    return int(_one(opts, "--exit", "0"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
