"""The thin client (``controller.fast``): ``post`` and ``heartbeat`` through a real daemon's
socket print what the command line prints, with the same exit codes, without loading
pydantic, SQLAlchemy or click; without a daemon, or with a killed daemon's stale socket, the
command line does the work (and nothing hangs)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller import fast as client
from tests.conftest import Repo, reap, wait_until
from tests.integration.test_server import answering, daemon, get, status, worker

pytestmark = pytest.mark.integration

HEAVY = ("pydantic", "sqlalchemy", "click", "rich", "anyio")
TASK = str(Path(__file__).resolve().parents[1] / "stubs" / "task.py")
TALK = (
    "apiVersion: lanes/v1\nkind: Thread\nmetadata: {name: t}\n"
    "spec: {participants: [worker, human]}\n"
)


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[str]:
    text = str(tmp_path / "marker")
    yield text
    reap(text)


def run(
    repo: Repo, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str, set[str]]:
    """The command (exit code, stdout, stderr) and the top-level packages it imported."""
    done = subprocess.run(
        (sys.executable, "-X", "importtime", "-m", "controller", *args),
        cwd=repo.path,
        env={**repo.env, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    lines = done.stderr.splitlines(keepends=True)
    timing = [line for line in lines if line.startswith("import time:")]
    loaded = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in timing}
    stderr = "".join(line for line in lines if not line.startswith("import time:"))
    return done.returncode, done.stdout, stderr, loaded


def fast(loaded: set[str]) -> bool:
    return not loaded.intersection(HEAVY)


def ready(repo: Repo, path: Path) -> None:
    wait_until(lambda: answering(path) and get(path, "/readyz")[0] == 200)
    wait_until(lambda: [a["state"] for a in status(repo)["lanes"][0]["agents"]] == ["running"])


# The commands, each run with a daemon and then without: (arguments, standard input).
POSTS = [
    (("post", "t", "--as", "human", "hello"), None),
    (("-o", "json", "post", "--as=human", "t", "-"), "from stdin\n"),
    (("post", "t", "--as", "stranger", "hello"), None),  # refused: the command line's error
    (("post", "nope", "--as", "human", "hello"), None),
    (("post", "t", "--as", "human", "  "), None),
]
BEATS = [
    ("heartbeat", "--lane", "a", "--as", "worker"),
    ("heartbeat", "--lane", "a", "--as", "worker", "-o", "json"),
    ("heartbeat", "--lane", "b", "--as", "worker"),  # no such agent: exit 1
]


def test_post_and_heartbeat_print_the_same_with_and_without_a_daemon(
    repo: Repo, marker: str, tmp_path: Path
) -> None:
    worker(repo, marker)
    repo.write("talk.yaml", TALK)
    path = repo.path / ".lanes" / "controller.sock"
    with daemon(repo, log=tmp_path / "daemon.log"):
        ready(repo, path)
        served = [run(repo, *args, stdin=stdin) for args, stdin in POSTS]
        beats = [run(repo, *args) for args in BEATS]
    assert not path.exists()
    local = [run(repo, *args, stdin=stdin) for args, stdin in POSTS]
    local_beats = [run(repo, *args) for args in BEATS]

    assert [fast(s[3]) for s in served] == [True, True, False, False, False]
    assert not any(fast(s[3]) for s in local)
    assert served[0][:3] == (0, "posted #1 to t as human\n", "")
    assert local[0][:3] == (0, "posted #3 to t as human\n", "")
    assert json.loads(served[1][1]) == {"thread": "t", "seq": 2, "sender": "human"}
    assert json.loads(local[1][1]) == {"thread": "t", "seq": 4, "sender": "human"}
    assert served[1][1] == local[1][1].replace('"seq": 4', '"seq": 2')
    assert [s[:3] for s in served[2:]] == [s[:3] for s in local[2:]]
    assert all(s[0] == 1 and s[2].startswith("error: ") for s in served[2:])

    assert [fast(b[3]) for b in beats] == [True, True, False]
    assert [fast(b[3]) for b in local_beats] == [False, False, False]
    assert beats[0][:3] == local_beats[0][:3] == (0, "", "")
    served_beat, local_beat = json.loads(beats[1][1]), json.loads(local_beats[1][1])
    assert served_beat.pop("at") < local_beat.pop("at")
    assert served_beat == local_beat == {"lane": "a", "participant": "worker"}
    assert beats[2][:3] == local_beats[2][:3]
    assert beats[2][0] == 1 and "no agent of worker in lane b" in beats[2][2]


def test_a_killed_daemons_stale_socket_falls_back_without_hanging(
    repo: Repo, marker: str, tmp_path: Path
) -> None:
    worker(repo, marker)
    repo.write("talk.yaml", TALK)
    path = repo.path / ".lanes" / "controller.sock"
    with daemon(repo, log=tmp_path / "daemon.log") as proc:
        ready(repo, path)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert path.exists() and not answering(path)  # stale: nobody answers
    code, out, err, loaded = run(repo, "post", "t", "--as", "human", "after")
    assert (code, out, err) == (0, "posted #1 to t as human\n", "")
    assert not fast(loaded)  # the command line did it
    assert run(repo, "heartbeat", "--lane", "a", "--as", "worker")[:3] == (0, "", "")
    for args in [("status",), ("triggers", "-o", "json"), ("runs",), ("runs", "show", "x")]:
        code, out, err, loaded = run(repo, *args)
        assert not fast(loaded)
        assert (code, AGE.sub("AGE", out), err) == local(repo, *args), args
    with follower(repo, "events", "-f", "--kind", "LaneProvisioned") as proc:
        assert proc.stdout is not None and " LaneProvisioned " in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0


def test_a_daemon_of_another_workspace_is_not_used(repo: Repo, marker: str, tmp_path: Path) -> None:
    worker(repo, marker)
    repo.write("talk.yaml", TALK)
    other = repo.path / "other"  # the same repository (so the same socket), another folder
    other.mkdir()
    store = tmp_path / "other.db"
    (other / "talk.yaml").write_text(
        f"{TALK}---\napiVersion: lanes/v1\nkind: Workspace\nmetadata: {{name: other}}\n"
        f"spec: {{stateUrl: 'sqlite:///{store}'}}\n"
    )
    path = repo.path / ".lanes" / "controller.sock"
    with daemon(repo, log=tmp_path / "daemon.log"):
        ready(repo, path)
        done = run(repo, "post", "t", "--as", "human", "x", "--desired", str(other))
    assert done[:3] == (0, "posted #1 to t as human\n", ""), done[2]
    assert store.exists()
    assert not fast(done[3])  # the daemon answered 421, the command line took over
    assert repo.ctl("read", "t", "--as", "worker", "-o", "json").stdout.strip() == "[]"


def test_inside_a_lane_the_socket_is_the_main_checkouts(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    lane = repo.path.parent / "lane-x"
    repo.git("worktree", "add", "-q", "-b", "lane/x", str(lane))
    (lane / "sub").mkdir()
    monkeypatch.chdir(lane / "sub")
    monkeypatch.delenv("CONTROLLER_DESIRED", raising=False)
    desired = client.desired_folder(None)
    assert desired == str(repo.path.resolve() / "desired")
    assert client.socket_path(desired) == str(repo.path.resolve() / ".lanes" / "controller.sock")
    monkeypatch.chdir(repo.path)
    assert client.desired_folder(None) == str(repo.path.resolve() / "desired")
    assert client.socket_path(str(lane)) == str(repo.path.resolve() / ".lanes" / "controller.sock")


@pytest.mark.parametrize(
    ("argv", "served"),
    [
        (["post", "t", "--as", "p", "x"], ("post", ("t", "x"), {"who": "p"})),
        (["-o", "json", "post", "--as=p", "t"], ("post", ("t",), {"output": "json", "who": "p"})),
        (["heartbeat", "--lane", "a", "--as", "p"], ("heartbeat", (), {"lane": "a", "who": "p"})),
        (["post", "t", "--as", "p", "-v", "x"], None),  # an option it does not serve
        (["post", "t", "--state", "sqlite:///x", "x"], None),
        (["-o", "yaml", "post", "t", "x"], None),
        (["post", "--lane", "a", "t", "x"], None),  # --lane is heartbeat's only
        (["post", "t", "--as"], None),
        (["events", "--kind", "A", "--kind=B"], ("events", (), {"kind": "A,B"})),
        (["events", "--follow", "--after=3"], ("events", (), {"follow": "1", "after": "3"})),
        (["events", "-f=1"], None),
        (["post", "t", "--kind", "A", "x"], None),  # --kind is events' only
        (["post", "-f", "t", "x"], None),  # -f is events' only
        (["status"], ("status", (), {})),
        (["--color", "never", "status"], ("status", (), {"color": "never"})),
        (["status", "--color", "sometimes"], None),
        (["status", "--watch"], None),
        (["status", "--as", "p"], None),  # --as is post's, read's and heartbeat's
        (["--as", "p", "post", "t", "x"], None),
        (["triggers", "--state-filter=dead"], ("triggers", (), {"states": "dead"})),
        (["triggers", "--state-filter", "gone"], None),
        (["runs", "show", "r-1"], ("runs", ("show", "r-1"), {})),
        (["--once", "post"], None),
    ],
)
def test_the_client_parses_what_it_serves_and_leaves_the_rest(
    argv: list[str], served: tuple[str, tuple[str, ...], dict[str, str]] | None
) -> None:
    if served is None:
        with pytest.raises(client.Fallback):
            client.parse(argv)
        return
    call = client.parse(argv)
    assert (call.command, call.args, call.options) == served


def test_read_prints_the_same_with_and_without_a_daemon(
    repo: Repo, marker: str, tmp_path: Path
) -> None:
    worker(repo, marker)
    readers = "worker, human, bob, carol, dave, erin"
    repo.write("talk.yaml", TALK.replace("worker, human", readers))
    for text in ("first", "two\nlines, naïve ✓"):
        assert repo.ctl("post", "t", "--as", "human", text).returncode == 0
    path = repo.path / ".lanes" / "controller.sock"
    reads = [  # (with a daemon, without): readers with the same unread messages
        (("read", "t", "--as", "worker"), ("read", "t", "--as", "bob")),
        (("read", "t", "--as", "carol", "-o", "json"), ("-o", "json", "read", "t", "--as=dave")),
        (("read", "t", "--as", "worker"), ("read", "t", "--as", "bob")),  # nothing unread
        (("read", "t", "--as", "stranger"), ("read", "t", "--as", "stranger")),  # refused
        (("read", "nope", "--as", "erin"), ("read", "nope", "--as", "erin")),
    ]
    with daemon(repo, log=tmp_path / "daemon.log"):
        ready(repo, path)
        served = [run(repo, *args) for args, _ in reads]
    local = [run(repo, *args) for _, args in reads]

    assert [fast(s[3]) for s in served] == [True, True, True, False, False]
    assert not any(fast(s[3]) for s in local)
    assert [s[:3] for s in served] == [s[:3] for s in local]
    assert served[0][1].startswith("#1 human ") and "\ntwo\nlines, naïve ✓\n\n" in served[0][1]
    assert [m["seq"] for m in json.loads(served[1][1])] == [1, 2]
    assert served[2][1] == "nothing unread in t\n"
    assert all(s[0] == 1 and s[2].startswith("error: ") for s in served[3:])


def test_events_print_the_same_with_and_without_a_daemon(
    repo: Repo, marker: str, tmp_path: Path
) -> None:
    worker(repo, marker)
    path = repo.path / ".lanes" / "controller.sock"
    queries = [
        ("events", "--kind", "AgentStarted"),
        ("events", "--kind=AgentStarted", "--kind", "LaneCreated", "-o", "json", "--limit", "5"),
        ("events", "--lane", "a", "--kind", "AgentStarted", "--since", "1d"),
        ("events", "--kind", "AgentStarted", "--limit", "0"),
        ("events", "--kind", "AgentStarted", "--since", "yesterday"),  # refused by the command
        ("events", "--after", "1", "--limit", "3", "-o", "json"),
    ]
    with daemon(repo, log=tmp_path / "daemon.log"):
        ready(repo, path)
        served = [run(repo, *args) for args in queries]
    local = [run(repo, *args) for args in queries]

    assert [fast(s[3]) for s in served] == [True, True, True, True, False, True]
    assert not any(fast(s[3]) for s in local)
    assert [s[:3] for s in served] == [s[:3] for s in local]
    assert "AgentStarted" in served[0][1] and served[3][1] == ""
    after = [json.loads(line)["id"] for line in served[5][1].splitlines()]
    assert len(after) == 3 and min(after) > 1
    assert [json.loads(line)["kind"] for line in served[1][1].splitlines()] == ["AgentStarted"]
    assert served[4][0] == 2 and "--since" in served[4][2]


# -- status, triggers, runs, events -f ------------------------------------------------------

AGE = re.compile(r"\b\d+s ago\b|\"heartbeatAge\": [0-9.]+")
WORK = (
    "---\napiVersion: lanes/v1\nkind: ModelCatalog\nmetadata: {name: m}\nspec:\n  models:\n"
    "    - {name: sonnet, contextWindow: 200000, inputPerMTok: 3.0, outputPerMTok: 15.0}\n"
    "---\napiVersion: lanes/v1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  tasks:\n"
    f"    - {{name: one, model: sonnet, command: [{sys.executable}, {TASK}, --sleep, '0']}}\n"
)
LOCAL = (
    "import sys; from controller.__main__ import _command_line; "
    "sys.argv[0] = 'controller'; _command_line()"
)


def local(repo: Repo, *args: str, **env: str) -> tuple[int, str, str]:
    """The command line itself, never the thin client, even while a daemon answers."""
    done = subprocess.run(
        (sys.executable, "-c", LOCAL, *args),
        cwd=repo.path,
        env={**repo.env, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return done.returncode, AGE.sub("AGE", done.stdout), done.stderr


def served(repo: Repo, *args: str, **env: str) -> tuple[tuple[int, str, str], bool]:
    """The command as run (through the daemon when it can), and whether it took the fast path."""
    code, out, err, loaded = run(repo, *args, env=env)
    return (code, AGE.sub("AGE", out), err), fast(loaded)


# (arguments, environment, through the daemon?)
VIEWS: list[tuple[tuple[str, ...], dict[str, str], bool]] = [
    (("status",), {}, True),
    (("status", "--color", "always"), {}, True),
    (("--color=auto", "status"), {"FORCE_COLOR": "1"}, True),
    (("status", "--color", "auto"), {"FORCE_COLOR": "1", "NO_COLOR": "1"}, True),
    (("status", "-o", "json"), {}, True),
    (("status", "--color", "always"), {"TERM": "dumb"}, False),  # rich draws 80 wide there
    (("status", "--watch"), {}, False),  # no terminal: the command's usage error
    (("triggers",), {}, True),
    (("triggers", "-o", "json"), {}, True),
    (("triggers", "--state-filter", "done", "--state-filter=dead"), {}, True),
    (("triggers", "--state-filter", "queued"), {}, True),  # none
    (("triggers", "--state-filter", "nope"), {}, False),  # the command's usage error
    (("runs",), {}, True),
    (("-o", "json", "runs"), {}, True),
    (("runs", "show", "w-1"), {}, True),
    (("runs", "show", "w-1", "--output=json"), {}, True),
    (("runs", "show", "nope"), {}, False),  # unknown: the command's error
    (("runs", "show"), {}, False),
    (("usage",), {}, False),  # not served
]


def test_status_triggers_and_runs_print_what_the_command_line_prints(
    repo: Repo, marker: str, tmp_path: Path
) -> None:
    worker(repo, marker)
    repo.write("talk.yaml", TALK + WORK)
    assert repo.ctl("--once").returncode == 0
    assert repo.ctl("post", "t", "--as", "worker", "hello").returncode == 0
    assert repo.ctl("trigger", "human", "--thread", "t").returncode == 0
    assert repo.ctl("submit", "w", "--wait", timeout=180).stdout.startswith("w-1\n")
    path = repo.path / ".lanes" / "controller.sock"
    with daemon(repo, log=tmp_path / "daemon.log"):
        ready(repo, path)
        for args, env, through in VIEWS:
            answer, took = served(repo, *args, **env)
            assert (took, answer) == (through, local(repo, *args, **env)), args
        for env in ({}, {"COLUMNS": "150"}, {"NO_COLOR": "1"}):  # a terminal 90 columns wide
            code, out, loaded = on_terminal(repo, (sys.executable, "-m", "controller"), **env)
            assert fast(loaded) and code == 0
            assert (code, out) == on_terminal(repo, (sys.executable, "-c", LOCAL), **env)[:2]
            assert ("\x1b[" in out) == (not env.get("NO_COLOR"))
        repo.write("c.yaml", "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: c}\n")
        _, out, _, loaded = run(repo, "status", "-o", "json")  # read afresh, as the command
        assert fast(loaded) and "c" in [lane["name"] for lane in json.loads(out)["lanes"]]
    shown = served(repo, "status")[0][1]
    assert "PARTICIPANT  MANAGED  UNREAD  BLOCKED" in shown and "\x1b[" not in shown
    assert "\x1b[" in served(repo, "status", "--color", "always")[0][1]  # the command line's


def on_terminal(repo: Repo, command: tuple[str, ...], **env: str) -> tuple[int, str, set[str]]:
    """``status`` with a terminal 90 columns wide as standard output: its exit code, what it
    drew (heartbeat ages masked), and the packages it imported."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 90, 0, 0))
    environ = {k: v for k, v in repo.env.items() if k not in ("COLUMNS", "NO_COLOR")}
    with (repo.path / ".lanes" / "terminal.err").open("w+") as err:
        proc = subprocess.Popen(
            (command[0], "-X", "importtime", *command[1:], "status"),
            cwd=repo.path,
            env={**environ, "TERM": "xterm", **env},
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=err,
        )
        os.close(follower)
        chunks = []
        with contextlib.suppress(OSError):  # EIO once the command has exited
            while chunk := os.read(leader, 65536):
                chunks.append(chunk)
        os.close(leader)
        code = proc.wait(timeout=60)
        err.seek(0)
        timing = [line for line in err if line.startswith("import time:")]
    loaded = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in timing}
    return code, AGE.sub("AGE", b"".join(chunks).decode()), loaded


def test_events_follow_through_the_daemon_prints_as_they_come_and_stops_on_ctrl_c(
    repo: Repo, tmp_path: Path
) -> None:
    repo.lanes("a")
    path = repo.path / ".lanes" / "controller.sock"
    kind = ("--kind", "LaneProvisioned")
    with daemon(repo, log=tmp_path / "daemon.log"):
        wait_until(lambda: answering(path) and get(path, "/readyz")[0] == 200)
        for output, lanes in (("text", ("a", "b")), ("json", ("a", "b", "c"))):
            before = local(repo, "events", *kind, "-o", output)[1].splitlines(keepends=True)
            with follower(repo, "events", "-f", *kind, "-o", output) as proc:
                assert proc.stdout is not None
                shown = [proc.stdout.readline() for _ in before]
                repo.lanes(*lanes)
                shown.append(proc.stdout.readline())
                proc.send_signal(signal.SIGINT)
                code = proc.wait(timeout=60)
                loaded, err = imported(repo)
                assert (code, err, fast(loaded)) == (0, "", True)
            assert "".join(shown) == local(repo, "events", *kind, "-o", output)[1]
            assert lanes[-1] in shown[-1]


def test_events_follow_goes_on_through_the_command_line_when_the_daemon_stops(
    repo: Repo, tmp_path: Path
) -> None:
    repo.lanes("a")
    path = repo.path / ".lanes" / "controller.sock"
    argv = ("events", "-f", "--kind", "LaneProvisioned", "-o", "json")
    with daemon(repo, log=tmp_path / "daemon.log") as proc:
        wait_until(lambda: answering(path) and get(path, "/readyz")[0] == 200)
        with follower(repo, *argv) as following:
            assert following.stdout is not None
            assert json.loads(following.stdout.readline())["lane"] == "a"
            repo.lanes("a", "b")
            assert json.loads(following.stdout.readline())["lane"] == "b"
            proc.send_signal(signal.SIGTERM)  # its stream ends: the command line follows on
            assert proc.wait(timeout=60) == 0
            repo.lanes("a", "b", "c")
            assert repo.ctl("--once").returncode == 0
            assert json.loads(following.stdout.readline())["lane"] == "c"  # not b again
            following.send_signal(signal.SIGINT)
            assert following.wait(timeout=60) == 0


@contextlib.contextmanager
def follower(repo: Repo, *args: str) -> Iterator[subprocess.Popen[str]]:
    """The command, its output read line by line, its standard error (with the modules it
    imported) in ``.lanes/follower.err``; killed if still running at the end."""
    argv = (sys.executable, "-X", "importtime", "-m", "controller", *args)
    with (repo.path / ".lanes" / "follower.err").open("w") as err:
        proc = subprocess.Popen(
            argv, cwd=repo.path, env=repo.env, stdout=subprocess.PIPE, stderr=err, text=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()


def imported(repo: Repo) -> tuple[set[str], str]:
    """What the last follower imported, and the rest of its standard error."""
    lines = (repo.path / ".lanes" / "follower.err").read_text().splitlines(keepends=True)
    timing = [line for line in lines if line.startswith("import time:")]
    loaded = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in timing}
    return loaded, "".join(line for line in lines if not line.startswith("import time:"))
