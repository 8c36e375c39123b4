"""The thin client: ``post`` and ``heartbeat`` through a running daemon's unix socket.

Agents call these commands many times an hour; loading the command line (click, pydantic,
SQLAlchemy) costs far more than the work. When a daemon of this workspace answers on
``.lanes/controller.sock``, the command is one HTTP request from the standard library, and it
prints what the command line prints. Anything else falls back to the command line, which
then does the work itself: no socket, a stale one (connection refused), options this client
does not handle, any answer but success (the command line then prints its own error), or a
daemon of another workspace. Nothing here may import the command line's dependencies.
"""

from __future__ import annotations

import io
import json
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controller.server import sockets

MAX_BODY = 64 * 1024  # runtime.messages.MAX_BODY (not imported: it loads the store)
CONNECT_TIMEOUT = 0.5  # a live daemon accepts at once; a stale socket refuses at once
ANSWER_TIMEOUT = 15.0  # the daemon writes to the store in a worker thread
_CHOICES = {"--output": ("text", "json"), "-o": ("text", "json")}
_VALUED = {"--output": "output", "-o": "output", "--desired": "desired", "--as": "who"}
_FALLBACK_ENV = ("CONTROLLER_DESIRED_REF",)  # a desired ref: the command line's business


class Fallback(Exception):
    """This invocation is the command line's: run it instead."""


class NoAnswer(Exception):
    """The daemon took a request that changes state and did not answer it."""


@dataclass(frozen=True, slots=True)
class Call:
    """A command line this client serves, its options parsed."""

    command: str
    args: tuple[str, ...]
    options: dict[str, str]


def run(argv: list[str]) -> int | None:
    """Serve ``argv`` through the daemon: the exit code, or None to run the command line."""
    try:
        call = parse(argv)
        return _COMMANDS[call.command](call)
    except Fallback:
        return None
    except NoAnswer as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def parse(argv: list[str]) -> Call:
    """``[options] COMMAND [args and options]``, or Fallback for anything else."""
    if any(name in os.environ for name in _FALLBACK_ENV):
        raise Fallback
    options: dict[str, str] = {}
    positional: list[str] = []
    tokens = iter(argv)
    for arg in tokens:
        if arg == "-" or not arg.startswith("-"):
            positional.append(arg)
            continue
        name, sep, value = arg.partition("=")
        if name == "--lane" and positional[:1] == ["heartbeat"]:
            key = "lane"
        elif name in _VALUED:
            key = _VALUED[name]
        else:
            raise Fallback  # an option the command line handles (or rejects)
        options[key] = value if sep else next(tokens, "")
        if not options[key] or options[key] not in _CHOICES.get(name, (options[key],)):
            raise Fallback
    if not positional or positional[0] not in _COMMANDS:
        raise Fallback
    return Call(positional[0], tuple(positional[1:]), options)


def _post(call: Call) -> int:
    if not 1 <= len(call.args) <= 2:
        raise Fallback
    thread, text = call.args[0], (call.args[1] if len(call.args) == 2 else None)
    sender = call.options.get("who") or os.environ.get("LANE_PARTICIPANT") or ""
    body = text if text not in (None, "-") else _stdin()
    if not sender or not body.strip() or len(body.encode()) > MAX_BODY:
        raise Fallback  # the command line refuses these with its own message
    fields = {"sender": sender, "body": body}
    answer = _request(call, f"/v1/threads/{_quoted(thread)}/messages", fields, retry=False)
    if answer.get("seq") is None:
        raise Fallback
    _print(call, answer, f"posted #{answer['seq']} to {thread} as {sender}")
    return 0


def _heartbeat(call: Call) -> int:
    lane = call.options.get("lane") or os.environ.get("LANE_NAME")
    participant = call.options.get("who") or os.environ.get("LANE_PARTICIPANT")
    if call.args or not lane or not participant:
        raise Fallback
    answer = _request(call, "/v1/heartbeat", {"lane": lane, "participant": participant})
    if call.options.get("output") == "json":
        print(_json(answer))
    return 0


_COMMANDS: dict[str, Callable[[Call], int]] = {"post": _post, "heartbeat": _heartbeat}


def _stdin() -> str:
    """Standard input as ``post`` reads it; put back for the command line should it fall back."""
    raw = sys.stdin.read(MAX_BODY + 1)
    sys.stdin = io.StringIO(raw)
    return raw.removesuffix("\n")


def _print(call: Call, answer: dict[str, object], text: str) -> None:
    print(_json(answer) if call.options.get("output") == "json" else text)


def _json(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)  # as cli.output.to_json


def _quoted(segment: str) -> str:
    """A path segment: names are DNS-like, anything else is the command line's to refuse."""
    if not segment or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in segment):
        raise Fallback
    return segment


# -- where the daemon is ----------------------------------------------------------------------


def desired_folder(given: str | None) -> Path:
    """``--desired``, ``$CONTROLLER_DESIRED``, or ``./desired`` (in a linked worktree such as a
    lane: the main checkout's), as ``runtime.wiring.default_desired`` finds it with git."""
    chosen = given or os.environ.get("CONTROLLER_DESIRED")
    if chosen:
        return Path(chosen).resolve()
    cwd = Path.cwd()
    found = _git_entry(cwd)
    if found is not None and found.is_file():
        main = _main_checkout(found)
        if main is not None:
            return main / "desired"
    return (cwd / "desired").resolve()


def socket_path(desired: Path) -> Path | None:
    """The daemon's socket for ``desired``: under the main checkout of its repository."""
    found = _git_entry(desired if desired.is_dir() else Path.cwd())
    if found is None:
        return None
    main = _main_checkout(found) if found.is_file() else found.parent
    return None if main is None else main / ".lanes" / sockets.SOCKET_NAME


def _git_entry(start: Path) -> Path | None:
    """The nearest ``.git`` (a folder in a main checkout, a file in a linked worktree)."""
    for folder in (start, *start.parents):
        entry = folder / ".git"
        if entry.exists():
            return entry
    return None


def _main_checkout(dot_git_file: Path) -> Path | None:
    """A linked worktree's main checkout: ``gitdir:`` leads to ``commondir``, whose parent it is."""
    try:
        text = dot_git_file.read_text()
        git_dir = (dot_git_file.parent / text.removeprefix("gitdir:").strip()).resolve()
        common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
    except OSError:
        return None
    return common.parent if common.name == ".git" else None


# -- the request ------------------------------------------------------------------------------


def _request(
    call: Call, path: str, fields: dict[str, str], *, retry: bool = True
) -> dict[str, object]:
    """POST ``fields`` (and which workspace) to the daemon; its JSON answer on success."""
    desired = desired_folder(call.options.get("desired"))
    where = socket_path(desired)
    if where is None:
        raise Fallback
    payload = {**fields, "desired": str(desired)}
    if state := os.environ.get("CONTROLLER_STATE"):
        payload["state"] = state
    conn = _connect(where)
    try:
        status, answer = _exchange(conn, path, json.dumps(payload).encode())
    except OSError as exc:
        if retry:
            raise Fallback from exc
        message = f"the daemon at {where} did not answer ({exc}); check before retrying"
        raise NoAnswer(message) from exc
    finally:
        conn.close()
    if not 200 <= status < 300 or not isinstance(answer, dict):
        raise Fallback  # not done: the command line does it, or prints why not
    return answer


def _connect(where: Path) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(CONNECT_TIMEOUT)
    try:
        with sockets.address(where) as address:
            conn.connect(address)
    except OSError as exc:  # missing, stale (refused), not ours, too busy: no daemon for us
        conn.close()
        raise Fallback from exc
    conn.settimeout(ANSWER_TIMEOUT)
    return conn


def _exchange(conn: socket.socket, path: str, body: bytes) -> tuple[int, object]:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: controller\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    conn.sendall(head.encode() + body)
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    raw = b"".join(chunks)
    header, _, content = raw.partition(b"\r\n\r\n")
    try:
        status = int(header.split(b" ", 2)[1])
        return status, json.loads(content)
    except (IndexError, ValueError):
        raise OSError(f"an answer that is not HTTP with JSON: {header[:80]!r}") from None
