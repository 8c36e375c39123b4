"""The thin client: ``post``, ``read``, ``heartbeat`` and ``events`` through a running daemon's
unix socket.

Agents call these commands many times an hour; loading the command line (click, pydantic,
SQLAlchemy) costs far more than the work. When a daemon of this workspace answers on
``.lanes/controller.sock``, the command is one HTTP request from the standard library, and it
prints what the command line prints. Anything else falls back to the command line, which
then does the work itself: no socket, a stale one (connection refused), options this client
does not handle, any answer but success (the command line then prints its own error), or a
daemon of another workspace. Nothing here may import the command line's dependencies.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator

# Imports cost most of this client's time: no dataclasses (inspect), no pathlib (urllib, re's
# patterns), and not controller.server.sockets (which uses both): its few lines are repeated.
SOCKET_NAME = "controller.sock"  # controller.server.sockets.SOCKET_NAME
_SUN_PATH = 100  # as controller.server.sockets: longer paths go through the folder's descriptor
MAX_BODY = 64 * 1024  # runtime.messages.MAX_BODY (not imported: it loads the store)
CONNECT_TIMEOUT = 0.5  # a live daemon accepts at once; a stale socket refuses at once
ANSWER_TIMEOUT = 15.0  # the daemon writes to the store in a worker thread
_CHOICES = {"--output": ("text", "json"), "-o": ("text", "json")}
_VALUED = {"--output": "output", "-o": "output", "--desired": "desired", "--as": "who"}
_EVENTS = {"--lane": "lane", "--kind": "kind", "--since": "since", "--limit": "limit"}
_FALLBACK_ENV = ("CONTROLLER_DESIRED_REF",)  # a desired ref: the command line's business


class Fallback(Exception):
    """This invocation is the command line's: run it instead."""


class NoAnswer(Exception):
    """The daemon took a request that changes state and did not answer it."""


class Call:
    """A command line this client serves, its options parsed (read-only by convention: not a
    frozen dataclass, whose module loads ``inspect``)."""

    __slots__ = ("args", "command", "options")

    def __init__(self, command: str, args: tuple[str, ...], options: dict[str, str]) -> None:
        self.command, self.args, self.options = command, args, options


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
        if name in _EVENTS and positional[:1] == ["events"]:
            key = _EVENTS[name]
        elif name == "--lane" and positional[:1] == ["heartbeat"]:
            key = "lane"
        elif name in _VALUED:
            key = _VALUED[name]
        else:
            raise Fallback  # an option the command line handles (or rejects)
        given = value if sep else next(tokens, "")
        if not given or given not in _CHOICES.get(name, (given,)):
            raise Fallback
        options[key] = f"{options[key]},{given}" if key == "kind" and key in options else given
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
    if answer.get("seq") is None:  # stored or not: never post twice
        raise NoAnswer(f"the daemon answered the post without a number: {answer!r}")
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


def _read(call: Call) -> int:
    reader = call.options.get("who") or os.environ.get("LANE_PARTICIPANT")
    if len(call.args) != 1 or not reader:
        raise Fallback
    thread = call.args[0]
    path = f"/v1/threads/{_quoted(thread)}/read"
    found = _request(call, path, {"reader": reader}, retry=False).get("messages")
    if not isinstance(found, list):
        raise NoAnswer(f"the daemon answered `read` without messages: {found!r}")
    if call.options.get("output") == "json":
        print(_json(found))
        return 0
    for m in found:  # the time as the command prints it: `{at:%Y-%m-%d %H:%M:%S}Z` (UTC)
        print(f"#{m['seq']} {m['sender']} {m['at'][:10]} {m['at'][11:19]}Z\n{m['body']}\n")
    if not found:
        print(f"nothing unread in {thread}")
    return 0


def _events(call: Call) -> int:
    """``events`` without ``--follow``: the lines ``GET /v1/events`` answers, as JSON Lines or
    as ``cli.output.event_line`` writes them."""
    limit = call.options.get("limit", "200")
    if call.args or not limit.isdigit():
        raise Fallback
    query = [
        ("limit", limit),
        *((k, call.options[k]) for k in ("lane", "since") if k in call.options),
    ]
    query += [("kind", kind) for kind in call.options.get("kind", "").split(",") if kind]
    text = _get(call, "/v1/events", query)
    found = [json.loads(line) for line in text.splitlines() if line]
    for event in found:
        print(
            json.dumps(event, sort_keys=True)
            if call.options.get("output") == "json"
            else _event_line(event)
        )
    return 0


def _event_line(e: dict[str, object]) -> str:
    """``cli.output.event_line`` of an event's JSON."""
    data = e["data"] if isinstance(e["data"], dict) else {}
    shown = " ".join(f"{k}={v}" for k, v in sorted(data.items()) if v not in (None, ""))
    where = e["lane"] or (f"@{e['participant']}" if e["participant"] else "-")
    at = f"{str(e['at'])[:19]}Z"
    line = f"{at} {str(e['correlationId'])[:8]} {where:<20} {e['kind']:<24} {e['reason']} {shown}"
    return line.rstrip()


_COMMANDS: dict[str, Callable[[Call], int]] = {
    "post": _post,
    "heartbeat": _heartbeat,
    "read": _read,
    "events": _events,
}


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


def desired_folder(given: str | None) -> str:
    """``--desired``, ``$CONTROLLER_DESIRED``, or ``./desired`` (in a linked worktree such as a
    lane: the main checkout's), as ``runtime.wiring.default_desired`` finds it with git."""
    chosen = given or os.environ.get("CONTROLLER_DESIRED")
    if chosen:
        return os.path.realpath(chosen)
    cwd = os.getcwd()
    found = _git_entry(cwd)
    if found is not None and os.path.isfile(found):
        main = _main_checkout(found)
        if main is not None:
            return os.path.join(main, "desired")
    return os.path.realpath(os.path.join(cwd, "desired"))


def socket_path(desired: str) -> str | None:
    """The daemon's socket for ``desired``: under the main checkout of its repository."""
    found = _git_entry(desired if os.path.isdir(desired) else os.getcwd())
    if found is None:
        return None
    main = _main_checkout(found) if os.path.isfile(found) else os.path.dirname(found)
    return None if main is None else os.path.join(main, ".lanes", SOCKET_NAME)


def _git_entry(start: str) -> str | None:
    """The nearest ``.git`` (a folder in a main checkout, a file in a linked worktree)."""
    folder = os.path.realpath(start)
    while True:
        entry = os.path.join(folder, ".git")
        if os.path.exists(entry):
            return entry
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _main_checkout(dot_git_file: str) -> str | None:
    """A linked worktree's main checkout: ``gitdir:`` leads to ``commondir``, whose parent it is."""
    try:
        with open(dot_git_file) as given:
            text = given.read()
        git_dir = os.path.join(os.path.dirname(dot_git_file), text.removeprefix("gitdir:").strip())
        with open(os.path.join(git_dir, "commondir")) as given:
            common = os.path.realpath(os.path.join(git_dir, given.read().strip()))
    except OSError:
        return None
    return os.path.dirname(common) if os.path.basename(common) == ".git" else None


@contextlib.contextmanager
def _address(path: str) -> Iterator[str]:
    """``controller.server.sockets.address``: ``path``, or when too long for ``sun_path``, the
    same file through ``/proc/self/fd`` and a descriptor of its folder."""
    if len(os.fsencode(path)) <= _SUN_PATH:
        yield path
        return
    folder = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{folder}/{os.path.basename(path)}"
    finally:
        os.close(folder)


# -- the request ------------------------------------------------------------------------------


def _request(
    call: Call, path: str, fields: dict[str, str], *, retry: bool = True
) -> dict[str, object]:
    """POST ``fields`` (and which workspace) to the daemon; its JSON answer on success."""
    desired = desired_folder(call.options.get("desired"))
    where = socket_path(desired)
    if where is None:
        raise Fallback
    payload = {**fields, "desired": desired}
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


def _get(call: Call, path: str, query: list[tuple[str, str]]) -> str:
    """GET ``path`` with ``query`` (and which workspace); the text of a 200 answer."""
    desired = desired_folder(call.options.get("desired"))
    where = socket_path(desired)
    if where is None:
        raise Fallback
    query = [*query, ("desired", desired)]
    if state := os.environ.get("CONTROLLER_STATE"):
        query.append(("state", state))
    target = path + "?" + "&".join(f"{k}={_percent(v)}" for k, v in query)
    conn = _connect(where)
    try:
        status, content = _send(
            conn, f"GET {target} HTTP/1.1\r\nHost: controller\r\nConnection: close\r\n\r\n".encode()
        )
    except OSError as exc:
        raise Fallback from exc  # reading changes nothing: the command line may do it
    finally:
        conn.close()
    if status != 200:
        raise Fallback
    return content.decode()


def _percent(text: str) -> str:
    """``urllib.parse.quote`` (not imported: it costs more than the request)."""
    safe = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~/"
    return "".join(chr(b) if b in safe else f"%{b:02X}" for b in text.encode())


def _connect(where: str) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(CONNECT_TIMEOUT)
    try:
        with _address(where) as address:
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
    status, content = _send(conn, head.encode() + body)
    if not 200 <= status < 300:
        return status, None  # not done: whatever it says, the command line will say it
    try:
        return status, json.loads(content)
    except ValueError:
        raise OSError(f"an answer that is not JSON: {content[:80]!r}") from None


def _send(conn: socket.socket, request: bytes) -> tuple[int, bytes]:
    """Send ``request``, read the answer to the end: its status and body."""
    conn.sendall(request)
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    raw = b"".join(chunks)
    header, _, content = raw.partition(b"\r\n\r\n")
    try:
        return int(header.split(b" ", 2)[1]), content
    except (IndexError, ValueError):
        raise OSError(f"an answer that is not HTTP: {header[:80]!r}") from None
