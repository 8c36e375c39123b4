"""`controller logs` against real tmux panes, real process logs and a real workflow task: the
last lines (history included), following new output, and nothing a program prints can drive
the reader's terminal.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from controller.runtime import outputs
from tests.conftest import Repo, wait_until

pytestmark = pytest.mark.integration

# An agent that prints numbered lines (with colours, a title escape and a carriage return),
# then echoes what it reads; "burst N" prints N numbered lines at once.
AGENT = r"""
import sys, time
for i in range(int(sys.argv[1])):
    print(f"line {i}", flush=True)
print("\x1b[31mred\x1b[0m \x1b]0;title\x07done\r", flush=True)
for typed in sys.stdin:
    words = typed.split()
    if words[:1] == ["burst"]:
        for j in range(int(words[1])):
            print(f"burst {j}", flush=True)
    else:
        print("got", typed.strip(), flush=True)
"""


def workspace(repo: Repo, socket: str) -> None:
    repo.write(
        "workspace.yaml",
        "apiVersion: lanes/v1\nkind: Workspace\nmetadata: {name: test}\n"
        f"spec: {{tmuxSocket: {socket}}}\n",
    )


def bind(repo: Repo, *bindings: dict[str, Any]) -> None:
    docs = [
        {
            "apiVersion": "lanes/v1",
            "kind": "Binding",
            "metadata": {"name": f"{b['lane']}-{b['participant']}"},
            "spec": b,
        }
        for b in bindings
    ]
    repo.write("bindings.yaml", "\n---\n".join(json.dumps(d) for d in docs) + "\n")


def agent(lines: int, marker: Path) -> list[str]:
    # The marker (the test's folder) lets the fixtures reap the agent whatever happens.
    return [sys.executable, "-c", AGENT, str(lines), str(marker)]


def once(repo: Repo) -> None:
    done = repo.ctl("--once")
    assert done.returncode == 0, done.stdout + done.stderr


def pane_of(repo: Repo, lane: str) -> str:
    view = json.loads(repo.ctl("status", "-o", "json").stdout)
    (found,) = [x for x in view["lanes"] if x["name"] == lane]
    return str(found["agents"][0]["pane"])


def tmux(repo: Repo, socket: str, *args: str) -> None:
    subprocess.run(("tmux", "-L", socket, *args), env=repo.env, check=True, timeout=10)


def logs(repo: Repo, *args: str, code: int = 0) -> str:
    done = repo.ctl("logs", *args)
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout if code == 0 else done.stderr


def no_escapes(text: str) -> bool:
    return not any(c in text for c in ("\x1b", "\x07", "\x9b", "\r"))


@pytest.fixture
def tmux_agent(repo: Repo, tmux_socket: str, tmp_path: Path) -> str:
    """Lane ``a`` with agent ``one`` in tmux, which printed 300 lines (the pane holds 50)."""
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(repo, {"lane": "a", "participant": "one", "command": agent(300, tmp_path)})
    once(repo)
    wait_until(lambda: "done" in logs(repo, "a", "--lines", "1"))
    return pane_of(repo, "a")


def test_logs_of_a_tmux_agent_include_its_history_and_no_escape_sequences(
    repo: Repo, tmux_agent: str
) -> None:
    out = logs(repo, "a", "one", "--lines", "120")
    lines = out.splitlines()
    assert lines[:-1] == [f"line {i}" for i in range(181, 300)], out  # from the history
    assert lines[-1] == "red done"  # colours, the title and the carriage return are gone
    assert no_escapes(out)
    assert logs(repo, "a").splitlines() == lines[-100:]  # the lane's only agent; 100 lines
    raw = logs(repo, "a", "--raw", "--lines", "1")
    assert "\x1b[31m" in raw  # --raw keeps the colours


def test_follow_prints_only_new_lines_also_when_the_history_scrolls(
    repo: Repo, tmux_agent: str, tmux_socket: str
) -> None:
    with following(repo, "a", "one", "--lines", "2") as seen:
        wait_until(lambda: seen[-1:] == ["red done"])
        assert seen == ["line 299", "red done"]
        tmux(repo, tmux_socket, "send-keys", "-t", tmux_agent, "-l", "hello")
        tmux(repo, tmux_socket, "send-keys", "-t", tmux_agent, "Enter")
        wait_until(lambda: "got hello" in seen)
        # 120 lines at once: more than the screen holds, so the history scrolls between looks.
        tmux(repo, tmux_socket, "send-keys", "-t", tmux_agent, "-l", "burst 120")
        tmux(repo, tmux_socket, "send-keys", "-t", tmux_agent, "Enter")
        wait_until(lambda: "burst 119" in seen)
    bursts = [line for line in seen if line.startswith("burst ")]
    assert bursts == ["burst 120"] + [f"burst {j}" for j in range(120)]  # typed, then printed
    assert seen.count("got hello") == 1 and no_escapes("".join(seen))


def test_logs_of_a_process_agent_come_from_its_log_file(repo: Repo, tmp_path: Path) -> None:
    repo.lanes("b")
    bind(
        repo,
        {"lane": "b", "participant": "worker", "runtime": "process", "command": agent(5, tmp_path)},
    )
    once(repo)
    wait_until(lambda: "done" in logs(repo, "b", "worker"))
    out = logs(repo, "b", "worker", "--lines", "3")
    assert out.splitlines() == ["line 3", "line 4", "red done"] and no_escapes(out)
    log = repo.path / ".lanes" / "logs" / "b" / "worker.log"
    with following(repo, "b", "--lines", "1") as seen:
        wait_until(lambda: seen == ["red done"])
        with log.open("ab") as out_file:
            out_file.write(b"appended \x1b[1mbold\x1b")  # an escape sequence cut in two
            out_file.flush()
            wait_until(lambda: seen[-1:] == ["appended bold"])
            out_file.write(b"[0m end\n")
        wait_until(lambda: seen[-1:] == ["appended bold end"])
    assert seen.count("appended bold end") == 1


def test_logs_of_a_workflow_task_show_its_stdout_and_stderr(repo: Repo) -> None:
    script = "import sys; print('to stdout'); print('to stderr', file=sys.stderr)"
    catalog = {
        "apiVersion": "lanes/v1",
        "kind": "ModelCatalog",
        "metadata": {"name": "m"},
        "spec": {
            "models": [
                {
                    "name": "sonnet",
                    "contextWindow": 200000,
                    "inputPerMTok": 3.0,
                    "outputPerMTok": 15.0,
                }
            ]
        },
    }
    task = {
        "name": "t",
        "model": "sonnet",
        "usage": "manual",
        "command": [sys.executable, "-c", script],
    }
    flow = {
        "apiVersion": "lanes/v1",
        "kind": "Workflow",
        "metadata": {"name": "w"},
        "spec": {"tasks": [task]},
    }
    repo.write("flow.yaml", json.dumps(catalog) + "\n---\n" + json.dumps(flow) + "\n")
    done = repo.ctl("submit", "w", "--wait", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    run = done.stdout.splitlines()[0]
    (shown,) = json.loads(repo.ctl("runs", "show", run, "-o", "json").stdout)["tasks"]
    lane = shown["lane"]
    out = logs(repo, lane)
    folder = repo.path / ".lanes" / "logs" / lane
    assert out == (
        f"==> {folder / (lane + '.log')} <==\nto stdout\n\n"
        f"==> {folder / (lane + '.err')} <==\nto stderr\n"
    )
    lines = [json.loads(x) for x in logs(repo, lane, "-o", "json").splitlines()]
    assert [(x["source"].rsplit(".", 1)[1], x["line"]) for x in lines] == [
        ("log", "to stdout"),
        ("err", "to stderr"),
    ]


def test_unknown_lanes_and_several_participants_are_errors_that_list_the_choices(
    repo: Repo, tmp_path: Path
) -> None:
    repo.lanes("c", "d")
    bind(
        repo,
        {"lane": "c", "participant": "x", "runtime": "process", "command": ["true"]},
        {"lane": "c", "participant": "y", "runtime": "process", "command": ["true"]},
    )
    assert "unknown lane nope (lanes: c, d)" in logs(repo, "nope", code=1)
    assert "lane c has 2 participants (x, y); name one" in logs(repo, "c", code=1)
    assert "z has no agent in lane c (participants: x, y)" in logs(repo, "c", "z", code=1)
    assert "lane d has no agent" in logs(repo, "d", code=1)
    assert "x in lane c has not started yet" in logs(repo, "c", "x", code=1)


@pytest.mark.anyio
async def test_following_a_log_that_is_replaced_reads_the_new_one_from_its_start(
    tmp_path: Path,
) -> None:
    log = tmp_path / "t.log"
    log.write_bytes(b"old 1\nold 2\nno line break yet")
    source = outputs.Source("t", "t", outputs.Kind.FILES, files=(log, tmp_path / "t.err"))
    pieces: list[outputs.Piece] = []
    send, receive = anyio.create_memory_object_stream[outputs.Piece](100)

    async def follow() -> None:
        stream = outputs.stream(source, tmux=None, lines=2, raw=False, follow=True, poll=0.01)
        async for piece in stream:
            await send.send(piece)

    async def until(text: str) -> None:
        with anyio.fail_after(20):
            while text not in "".join(p.text for p in pieces):
                pieces.append(await receive.receive())

    async with anyio.create_task_group() as group:
        group.start_soon(follow)
        await until("no line break yet")
        assert pieces[0].text == "old 2\nno line break yet"  # continued when it ends
        log.with_suffix(".new").write_bytes(b"new \xe2\x9c")  # a character cut in two
        log.with_suffix(".new").replace(log)  # as a retried task's log is rotated
        await until("reading it from its start")
        with log.open("ab") as more:
            more.write(b"\x93 done\n")
        await until("done")
        (tmp_path / "t.err").write_bytes(b"an error\n")  # appears later: read from its start
        await until("an error")
        group.cancel_scope.cancel()
    send.close()
    receive.close()
    assert [p.note for p in pieces].count(True) == 1
    assert "".join(p.text for p in pieces if not p.note and p.origin == str(log)).endswith(
        "new \u2713 done\n"
    )


class Following:
    """`controller logs -f` in the background, and the lines it printed so far (a live list:
    the last one may not be ended yet)."""

    def __init__(self, repo: Repo, args: tuple[str, ...]) -> None:
        argv = (sys.executable, "-m", "controller", "logs", "-f", *args)
        self.proc = subprocess.Popen(
            argv,
            cwd=repo.path,
            env=repo.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.text = ""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read(1):
            self.text += chunk

    def lines(self) -> list[str]:
        return self.text.removesuffix("\n").split("\n") if self.text else []

    def __getitem__(self, index: Any) -> Any:
        return self.lines()[index]

    def __contains__(self, item: object) -> bool:
        return item in self.lines()

    def __eq__(self, other: object) -> bool:
        return self.lines() == other

    __hash__ = None  # type: ignore[assignment]

    def __iter__(self) -> Iterator[str]:
        return iter(self.lines())

    def count(self, item: str) -> int:
        return self.lines().count(item)

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C, as a person ends following; its exit status and what it wrote to stderr."""
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.reader.join(timeout=10)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        with self.proc.stderr:
            return code, self.proc.stderr.read()


@contextlib.contextmanager
def following(repo: Repo, *args: str) -> Iterator[Following]:
    """Follow; at the end, Ctrl-C it and check that it ended cleanly (exit 0, no traceback)."""
    follower = Following(repo, args)
    try:
        yield follower
    except BaseException:
        follower.interrupt()
        raise
    code, errors = follower.interrupt()
    assert code == 0 and "Traceback" not in errors, errors
