"""The daemon's HTTP server, through a real ``controller run`` and real HTTP: the unix socket
(0600, a stale one replaced, removed on exit), /healthz, /readyz, /metrics against
``status --output json``, the JSON API, and the read-only TCP listener."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from controller.server import sockets
from tests.conftest import Repo, reap, wait_until

pytestmark = pytest.mark.integration

BROKEN = "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: [unclosed\n"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=60)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(60)
        try:
            with sockets.address(self.socket_path) as where:
                sock.connect(where)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def request(
    conn: http.client.HTTPConnection, target: str, method: str = "GET", body: object = None
) -> tuple[int, str]:
    data = None if body is None else body if isinstance(body, str) else json.dumps(body)
    try:
        conn.request(method, target, body=data)
        answer = conn.getresponse()
        return answer.status, answer.read().decode()
    finally:
        conn.close()


def get(path: Path, target: str, method: str = "GET", body: object = None) -> tuple[int, str]:
    return request(_UnixConnection(path), target, method, body)


def answering(path: Path) -> bool:
    try:
        return get(path, "/healthz")[0] == 200
    except OSError:
        return False


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[str]:
    text = str(tmp_path / "marker")
    yield text
    reap(text)


@contextmanager
def daemon(repo: Repo, *extra: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``controller run``, stopped with SIGTERM (and checked to exit 0) afterwards."""
    argv = (sys.executable, "-m", "controller", "run", "--resync", "1", "--debounce", "0.1")
    with log.open("ab") as out:
        proc = subprocess.Popen((*argv, *extra), cwd=repo.path, env=repo.env, stderr=out)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code in (0, -signal.SIGKILL), log.read_text()


def worker(repo: Repo, marker: str) -> None:
    """Lanes `a` and `b`, and a `runtime: process` agent on `a` that sleeps."""
    repo.write(
        "a.yaml",
        "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: a}\n---\n"
        "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: b}\n---\n"
        "apiVersion: lanes/v1\nkind: Binding\nmetadata: {name: a-worker}\nspec:\n"
        "  lane: a\n  participant: worker\n  runtime: process\n  stopGraceSeconds: 2\n"
        f"  command: [{sys.executable}, -c, 'import time; time.sleep(600)', {marker}]\n",
    )


def status(repo: Repo) -> dict[str, Any]:
    done = repo.ctl("status", "-o", "json")
    assert done.returncode == 0, done.stderr
    view: dict[str, Any] = json.loads(done.stdout)
    return view


def samples(text: str) -> dict[str, float]:
    """``name{labels} value`` lines of the exposition format (comments left out)."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def counts(view: dict[str, Any]) -> dict[str, float]:
    """What /metrics must show for a status object: lanes by phase, agents by state, queue."""
    agents = [a for lane in view["lanes"] for a in lane["agents"]]
    shown = {
        f'lanes_lanes{{phase="{p}"}}': n
        for p, n in Counter(x["phase"] for x in view["lanes"]).items()
    }
    shown |= {
        f'lanes_agents{{state="{s}"}}': n for s, n in Counter(a["state"] for a in agents).items()
    }
    shown |= {f'lanes_trigger_queue_depth{{state="{s}"}}': n for s, n in view["triggers"].items()}
    return {k: float(v) for k, v in shown.items()}


def scraped(path: Path) -> dict[str, float]:
    code, text = get(path, "/metrics")
    assert code == 200
    return {k: v for k, v in samples(text).items() if v or "reconcile" in k}


def volatile(view: dict[str, Any]) -> dict[str, Any]:
    """The status without the heartbeat's age (it moves between two looks)."""
    for lane in view["lanes"]:
        for agent in lane["agents"]:
            agent.pop("heartbeatAge")
    return view


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_serves_health_metrics_and_status_on_a_private_socket(
    repo: Repo, marker: str, tmp_path: Path
) -> None:
    worker(repo, marker)
    path = repo.path / ".lanes" / "controller.sock"
    port = free_port()
    with daemon(repo, "--metrics-addr", f"127.0.0.1:{port}", log=tmp_path / "daemon.log"):
        wait_until(lambda: answering(path))
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        assert stat.S_ISSOCK(path.lstat().st_mode)
        wait_until(lambda: [a["state"] for a in status(repo)["lanes"][0]["agents"]] == ["running"])

        def agree() -> bool:
            metrics = scraped(path)
            wanted = counts(status(repo))
            return {k: metrics.get(k) for k in wanted} == wanted

        wait_until(agree)
        metrics = scraped(path)
        assert metrics['lanes_agents{state="running"}'] == 1.0
        assert metrics['lanes_lanes{phase="running"}'] + metrics['lanes_lanes{phase="ready"}'] == 2
        assert metrics['lanes_reconcile_total{result="ok"}'] >= 1
        wait_until(
            lambda: volatile(json.loads(get(path, "/v1/status")[1])) == volatile(status(repo))
        )
        events = repo.ctl("events", "-o", "json", "--kind", "LaneProvisioned").stdout
        assert get(path, "/v1/events?kind=LaneProvisioned") == (200, events)
        assert events.count("\n") == 2

        tcp = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        assert request(tcp, "/healthz")[0] == 200
        assert request(tcp, "/metrics")[0] == 200
        assert request(tcp, "/v1/events")[0] == 404  # events may carry text: the socket only
        assert request(tcp, "/healthz", "POST")[0] == 405
    assert not path.exists()  # removed on exit


def test_readyz_turns_not_ready_on_invalid_yaml_and_back(repo: Repo, tmp_path: Path) -> None:
    repo.lanes("a")
    path = repo.path / ".lanes" / "controller.sock"
    with daemon(repo, log=tmp_path / "daemon.log"):
        wait_until(lambda: answering(path) and get(path, "/readyz")[0] == 200)
        good = (repo.desired / "lanes.yaml").read_text()
        repo.write("lanes.yaml", BROKEN)
        wait_until(lambda: get(path, "/readyz")[0] == 503)
        assert json.loads(get(path, "/readyz")[1])["reasons"] == ["desired state invalid"]
        assert get(path, "/healthz")[0] == 200  # invalid YAML is not a stuck loop
        repo.write("lanes.yaml", good)
        wait_until(lambda: get(path, "/readyz")[0] == 200)


def test_a_killed_daemon_leaves_a_stale_socket_that_the_next_one_replaces(
    repo: Repo, tmp_path: Path
) -> None:
    repo.lanes("a")
    path = repo.path / ".lanes" / "controller.sock"
    log = tmp_path / "daemon.log"
    with daemon(repo, log=log) as first:
        wait_until(lambda: answering(path))
        second = repo.ctl("run", "--resync", "1")  # one daemon per workspace
        assert second.returncode == 1
        assert "another controller daemon serves" in second.stderr
        assert answering(path)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    assert stat.S_ISSOCK(path.lstat().st_mode)  # left behind, and nobody answers
    assert not answering(path)
    with daemon(repo, log=log):
        wait_until(lambda: answering(path))
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
    assert "replaced a stale socket" in log.read_text()
    assert not path.exists()
    assert not list(path.parent.glob(".controller.sock*"))


def test_the_socket_binds_past_the_sun_path_limit_and_never_over_a_file(tmp_path: Path) -> None:
    folder = tmp_path / ("x" * 120)
    bound = sockets.bind(folder / "controller.sock")
    try:
        assert len(os.fsencode(bound.path)) > 108
        assert stat.S_IMODE(bound.path.lstat().st_mode) == 0o600
        assert sockets.answers(bound.path)
    finally:
        sockets.remove(bound)
    assert not bound.path.exists()
    (folder / "controller.sock").write_text("not a socket")
    with pytest.raises(sockets.SocketInUse, match="is not a socket"):
        sockets.bind(folder / "controller.sock")
    assert (folder / "controller.sock").read_text() == "not a socket"


def test_posts_and_heartbeats_through_the_socket_as_the_commands_do(
    repo: Repo, marker: str, tmp_path: Path
) -> None:
    worker(repo, marker)
    repo.write(
        "talk.yaml",
        "apiVersion: lanes/v1\nkind: Thread\nmetadata: {name: t}\n"
        "spec: {participants: [worker, human]}\n---\n"
        "apiVersion: lanes/v1\nkind: TriggerPolicy\nmetadata: {name: wake}\n"
        "spec: {participants: [worker], threads: [t], collision: {quietSeconds: 0}}\n",
    )
    path = repo.path / ".lanes" / "controller.sock"
    with daemon(repo, log=tmp_path / "daemon.log"):
        wait_until(lambda: answering(path) and get(path, "/readyz")[0] == 200)
        wait_until(lambda: [a["state"] for a in status(repo)["lanes"][0]["agents"]] == ["running"])
        posted = get(path, "/v1/threads/t/messages", "POST", {"sender": "human", "body": "hi"})
        assert (posted[0], json.loads(posted[1])) == (
            201,
            {"thread": "t", "seq": 1, "sender": "human"},
        )
        wait_until(lambda: any(k.startswith("lanes_wakes_total") for k in scraped(path)))
        read = json.loads(repo.ctl("read", "t", "--as", "worker", "-o", "json").stdout)
        assert [(m["seq"], m["sender"], m["body"]) for m in read] == [(1, "human", "hi")]

        refused = repo.ctl("post", "t", "--as", "stranger", "hello")
        code, text = get(
            path, "/v1/threads/t/messages", "POST", {"sender": "stranger", "body": "x"}
        )
        assert (code, f"error: {json.loads(text)['error']}\n") == (400, refused.stderr)
        empty = get(path, "/v1/threads/t/messages", "POST", {"sender": "human", "body": " "})
        assert json.loads(empty[1]) == {"error": "empty message"}
        assert get(path, "/v1/threads/t/messages", "POST", "{not json")[0] == 400
        assert get(path, "/v1/threads/t/messages", "POST", {"sender": 1, "body": "x"})[0] == 400

        beat = get(path, "/v1/heartbeat", "POST", {"lane": "a", "participant": "worker"})
        assert beat[0] == 200 and json.loads(beat[1])["participant"] == "worker"
        missing = repo.ctl("heartbeat", "--lane", "b", "--as", "worker")
        code, text = get(path, "/v1/heartbeat", "POST", {"lane": "b", "participant": "worker"})
        assert (code, f"error: {json.loads(text)['error']}\n") == (404, missing.stderr)


def test_events_follow_goes_on_with_new_events(repo: Repo, tmp_path: Path) -> None:
    repo.lanes("a")
    path = repo.path / ".lanes" / "controller.sock"
    with daemon(repo, log=tmp_path / "daemon.log"):
        wait_until(lambda: answering(path) and get(path, "/readyz")[0] == 200)
        conn = _UnixConnection(path)
        try:
            conn.request("GET", "/v1/events?kind=LaneProvisioned&follow=1")
            stream = conn.getresponse()
            assert stream.status == 200
            assert json.loads(stream.readline())["lane"] == "a"
            repo.lanes("a", "b")
            assert json.loads(stream.readline())["lane"] == "b"
        finally:
            conn.close()
