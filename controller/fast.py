"""The thin client: ``post``, ``read``, ``heartbeat``, ``events`` (and ``events -f``),
``status``, ``triggers``, ``runs`` and ``runs show`` through a running daemon's unix socket.

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
PIPED_WIDTH = 200  # cli.tables.PIPED_WIDTH: status off a terminal
_JOB_STATES = ("queued", "running", "done", "dead")  # store.jobs.JobState
_CHOICES = {
    "--output": ("text", "json"),
    "-o": ("text", "json"),
    "--color": ("auto", "always", "never"),
    "--state-filter": _JOB_STATES,
}
# The global options (before or after the command's name), then each command's own (after it).
_VALUED = {"--output": "output", "-o": "output", "--desired": "desired", "--color": "color"}
_AS = {"--as": "who"}
_OWN = {
    "post": _AS,
    "read": _AS,
    "heartbeat": {**_AS, "--lane": "lane"},
    "events": {"--lane": "lane", "--kind": "kind", "--since": "since", "--limit": "limit"}
    | {"--after": "after"},
    "triggers": {"--state-filter": "states"},
}
_FLAGS = {"events": {"--follow": "follow", "-f": "follow"}}
_REPEATED = ("kind", "states")
_FALLBACK_ENV = ("CONTROLLER_DESIRED_REF",)  # a desired ref: the command line's business


class Fallback(Exception):
    """This invocation is the command line's: run it instead."""


class NoAnswer(Exception):
    """The daemon took a request that changes state and did not answer it."""


class HandOver(Exception):
    """The daemon stopped while ``events -f`` followed it: the command line goes on, with
    these arguments."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__(argv)
        self.argv = argv


class Call:
    """A command line this client serves, its options parsed (read-only by convention: not a
    frozen dataclass, whose module loads ``inspect``)."""

    __slots__ = ("args", "argv", "command", "options")

    def __init__(self, command: str, args: tuple[str, ...], options: dict[str, str]) -> None:
        self.command, self.args, self.options = command, args, options
        self.argv: list[str] = []  # as given, for the command line should it take over


def run(argv: list[str]) -> int | None:
    """Serve ``argv`` through the daemon: the exit code, or None to run the command line."""
    try:
        call = parse(argv)
        call.argv = argv
        return _COMMANDS[call.command](call)
    except Fallback:
        return None
    except HandOver as given:
        sys.argv[1:] = given.argv
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
        command = positional[0] if positional else ""
        if arg in _FLAGS.get(command, {}):
            options[_FLAGS[command][arg]] = "1"
            continue
        name, sep, value = arg.partition("=")
        own = _OWN.get(command, {})
        key = own.get(name) or _VALUED.get(name)
        if key is None:
            raise Fallback  # an option the command line handles (or rejects)
        given = value if sep else next(tokens, "")
        if not given or given not in _CHOICES.get(name, (given,)):
            raise Fallback
        repeated = key in _REPEATED and key in options
        options[key] = f"{options[key]},{given}" if repeated else given
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
    """``events``: the lines ``GET /v1/events`` answers, as JSON Lines or as
    ``cli.output.event_line`` writes them; with ``--follow``, as they come."""
    limit = call.options.get("limit", "200")
    if call.args or not limit.isdigit() or not call.options.get("after", "0").isdigit():
        raise Fallback
    query = [
        ("limit", limit),
        *((k, call.options[k]) for k in ("lane", "since", "after") if k in call.options),
    ]
    query += [("kind", kind) for kind in call.options.get("kind", "").split(",") if kind]
    if call.options.get("follow"):
        return _follow(call, query)
    text = _get(call, "/v1/events", query)
    for line in text.splitlines():
        if line:
            print(_shown(call, json.loads(line)))
    return 0


def _shown(call: Call, event: dict[str, object]) -> str:
    """One event as ``events`` prints it."""
    if call.options.get("output") == "json":
        return json.dumps(event, sort_keys=True)
    return _event_line(event)


def _follow(call: Call, query: list[tuple[str, str]]) -> int:
    """``events -f``: each line as the daemon streams it; Ctrl-C ends it with exit 0, as the
    command. Should the daemon stop (or die), the command line goes on after the last event
    shown (``--after``), so nothing is shown twice or lost."""
    last = -1
    try:
        for line in _stream(call, "/v1/events", [*query, ("follow", "1")]):
            if isinstance(line, int):
                last = line  # where the daemon's following starts
                continue
            event = json.loads(line)
            print(_shown(call, event), flush=True)
            last = max(last, int(str(event.get("id") or 0)))
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        raise  # the reader left: no command line would print more
    except (OSError, ValueError):
        if last < 0:
            raise Fallback from None  # nothing shown: the command line does it all
    raise HandOver([*call.argv, f"--after={last}", f"--limit={2**62}"])


def _status(call: Call) -> int:
    """``status``: ``status --output json``'s object, or its text drawn by the daemon as the
    command would draw it here (the width and colours of this terminal, or of a pipe)."""
    if call.args:
        raise Fallback
    if call.options.get("output") == "json":
        sys.stdout.write(_get(call, "/v1/status", []))
        return 0
    color = _colors(call.options.get("color"))
    query = [("format", "text"), ("color", "1" if color else "0"), ("width", str(_width(color)))]
    sys.stdout.write(_get(call, "/v1/status", query))
    return 0


def _colors(choice: str | None) -> bool:
    """``cli.output.colors_on`` for standard output."""
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return bool(os.environ.get("FORCE_COLOR")) or sys.stdout.isatty()


def _width(color: bool) -> int:
    """The width rich gives ``cli.tables.make_console``: ``PIPED_WIDTH`` off a terminal, else
    ``$COLUMNS``, the terminal's (of standard input, output or error), or 80; a dumb terminal
    with colours is left to the command line."""
    if color and os.environ.get("TERM", "").lower() in ("dumb", "unknown"):
        raise Fallback
    if not sys.stdout.isatty():
        return PIPED_WIDTH
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        return int(columns) or 80
    for fd in (0, 1, 2):
        try:
            return os.get_terminal_size(fd).columns or 80
        except (AttributeError, ValueError, OSError):
            continue
    return 80


def _triggers(call: Call) -> int:
    """``triggers`` (``--state-filter`` as ``jobState``); ``triggers retry`` is the command
    line's."""
    if call.args:
        raise Fallback
    states = [("jobState", s) for s in call.options.get("states", "").split(",") if s]
    return _view(call, "/v1/triggers", states)


def _runs(call: Call) -> int:
    """``runs`` and ``runs show RUN``; the rest of ``runs`` is the command line's."""
    if not call.args:
        return _view(call, "/v1/runs", [])
    if len(call.args) == 2 and call.args[0] == "show":
        return _view(call, f"/v1/runs/{_quoted(call.args[1])}", [])
    raise Fallback


def _view(call: Call, path: str, query: list[tuple[str, str]]) -> int:
    """A view as the command prints it: its JSON, or the text the daemon draws."""
    if call.options.get("output") == "json":
        print(_json(json.loads(_get(call, path, query))))
    else:
        sys.stdout.write(_get(call, path, [*query, ("format", "text")]))
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
    "status": _status,
    "triggers": _triggers,
    "runs": _runs,
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
    where, request = _getting(call, path, query)
    conn = _connect(where)
    try:
        status, content = _send(conn, request)
    except OSError as exc:
        raise Fallback from exc  # reading changes nothing: the command line may do it
    finally:
        conn.close()
    if status != 200:
        raise Fallback
    return content.decode()


def _getting(call: Call, path: str, query: list[tuple[str, str]]) -> tuple[str, bytes]:
    """The daemon's socket, and the GET of ``path`` with ``query`` and which workspace."""
    desired = desired_folder(call.options.get("desired"))
    where = socket_path(desired)
    if where is None:
        raise Fallback
    query = [*query, ("desired", desired)]
    if state := os.environ.get("CONTROLLER_STATE"):
        query.append(("state", state))
    target = path + "?" + "&".join(f"{k}={_percent(v)}" for k, v in query)
    return where, f"GET {target} HTTP/1.1\r\nHost: controller\r\nConnection: close\r\n\r\n".encode()


def _stream(call: Call, path: str, query: list[tuple[str, str]]) -> Iterator[int | str]:
    """GET a stream of lines (chunked, as the daemon sends ``follow=1``): first the id its
    following starts after (``X-Follow-After``), then each line as it comes; Fallback unless
    the answer is 200, OSError when the stream breaks, and the end when the daemon ends it."""
    where, request = _getting(call, path, query)
    conn = _connect(where)
    try:
        conn.sendall(request)
        conn.settimeout(None)  # new events may take hours: following waits for them
        reader = conn.makefile("rb")
        head = reader.readline().split(b" ", 2)
        if len(head) < 2 or head[1] != b"200":
            raise Fallback
        headers = {}
        while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") != "chunked":
            raise OSError("a stream that is not chunked")
        yield int(headers.get("x-follow-after", "0"))
        rest = b""
        for chunk in _chunks(reader):
            *lines, rest = (rest + chunk).split(b"\n")
            yield from (line.decode() for line in lines if line)
    finally:
        conn.close()


def _chunks(reader: io.BufferedReader) -> Iterator[bytes]:
    """The chunks of a chunked body, to its last (empty) one."""
    while True:
        size = int(reader.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return
        data = reader.read(size)
        reader.readline()
        if len(data) < size:
            raise OSError("the stream was cut short")
        yield data


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
