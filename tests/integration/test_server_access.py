"""Who may use the daemon's server: the unix socket refuses other users (its mode, checked as
another uid, since root bypasses file modes), and the TCP listener writes only with the bearer
token of ``--api-token-file``."""

from __future__ import annotations

import errno
import http.client
import json
import os
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.server import sockets
from tests.conftest import Repo, reap, wait_until
from tests.integration.test_server import answering, daemon, free_port, get, request, worker

pytestmark = pytest.mark.integration

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"
CONNECT = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
    "try:\n"
    "    s.connect(sys.argv[1])\n"
    "except OSError as e:\n"
    "    print(e.errno)\n"
    "else:\n"
    "    print(0)\n"
)
TALK = (
    "apiVersion: lanes/v1\nkind: Thread\nmetadata: {name: t}\n"
    "spec: {participants: [worker, human]}\n"
)


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[str]:
    text = str(tmp_path / "marker")
    yield text
    reap(text)


def connect_as_another_user(path: Path) -> int:
    """The errno of connecting to ``path`` as uid/gid 65534 with no groups (0: connected)."""
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    argv += [SYSTEM_PYTHON, "-I", "-c", CONNECT, str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/", check=False)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.fixture
def other_user() -> None:
    """Root, with ``setpriv`` and a system Python another user may run; else skip: a user who
    is not root is the socket's owner, so the refusal cannot be shown."""
    if os.geteuid() != 0:
        pytest.skip("not root: no other uid to connect as (the current user owns the socket)")
    if shutil.which("setpriv") is None or not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip("setpriv (util-linux) or /usr/bin/python3 missing")


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every user may enter (pytest's own are 0700): only a file's mode stops them."""
    folder = Path(tempfile.mkdtemp(prefix="lanes-sock-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.usefixtures("other_user")
def test_the_socket_refuses_other_users(repo: Repo, tmp_path: Path, open_folder: Path) -> None:
    # The daemon's own socket, as it runs.
    repo.lanes("a")
    path = repo.path / ".lanes" / "controller.sock"
    with daemon(repo, log=tmp_path / "daemon.log"):
        wait_until(lambda: answering(path))
        assert connect_as_another_user(path) == errno.EACCES
        assert answering(path)  # its owner still gets in
    # Its mode alone refuses them: in a folder anyone may enter, the 0600 socket says no,
    # and the same socket made 0666 lets them in (so it is the mode, not the way there).
    bound = sockets.bind(open_folder / "controller.sock")
    try:
        assert stat.S_IMODE(bound.path.lstat().st_mode) == 0o600
        assert connect_as_another_user(bound.path) == errno.EACCES
        bound.path.chmod(0o666)
        assert connect_as_another_user(bound.path) == 0
    finally:
        sockets.remove(bound)


def tcp(port: int, target: str, method: str = "GET", body: object = None, token: str = "") -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    if token:
        data = None if body is None else json.dumps(body)
        try:
            conn.request(method, target, body=data, headers={"Authorization": f"Bearer {token}"})
            answer = conn.getresponse()
            return answer.status, answer.read().decode()
        finally:
            conn.close()
    return request(conn, target, method, body)


def token_file(folder: Path, mode: int = 0o600) -> tuple[Path, str]:
    token = secrets.token_hex(24)
    path = folder / "api-token"
    path.write_text(token + "\n")
    path.chmod(mode)
    return path, token


def test_tcp_writes_need_the_bearer_token(repo: Repo, marker: str, tmp_path: Path) -> None:
    worker(repo, marker)
    repo.write("talk.yaml", TALK)
    path = repo.path / ".lanes" / "controller.sock"
    secret, token = token_file(tmp_path)
    port, log = free_port(), tmp_path / "daemon.log"
    addr = f"127.0.0.1:{port}"
    with daemon(repo, "--metrics-addr", addr, "--api-token-file", str(secret), log=log):
        wait_until(lambda: answering(path) and get(path, "/readyz")[0] == 200)
        message = {"sender": "human", "body": "over tcp"}
        assert tcp(port, "/healthz")[0] == 200  # the read-only routes stay open
        assert tcp(port, "/metrics")[0] == 200
        refused = tcp(port, "/v1/threads/t/messages", "POST", message)
        assert refused[0] == 401
        assert "Bearer" in json.loads(refused[1])["error"]
        assert (
            tcp(port, "/v1/threads/t/messages", "POST", message, token=token[:-1] + "x")[0] == 401
        )
        assert tcp(port, "/v1/threads/t/messages", "POST", message, token=token + "0")[0] == 401
        assert tcp(port, "/v1/events", token=secrets.token_hex(24))[0] == 401
        assert tcp(port, "/v1/nothing-here")[0] == 401  # unknown routes say nothing either

        posted = tcp(port, "/v1/threads/t/messages", "POST", message, token=token)
        assert (posted[0], json.loads(posted[1])["seq"]) == (201, 1)
        read = tcp(port, "/v1/threads/t/read", "POST", {"reader": "worker"}, token=token)
        assert [m["body"] for m in json.loads(read[1])["messages"]] == ["over tcp"]
        events = tcp(port, "/v1/events?kind=LaneProvisioned", token=token)
        assert events[0] == 200 and events[1].count("\n") == 2
        beat = {"lane": "a", "participant": "worker"}
        assert tcp(port, "/v1/heartbeat", "POST", beat, token=token)[0] == 200
    text = log.read_text()
    assert "tcpWrites=bearer-token" in text
    assert token not in text


def test_without_a_token_tcp_is_read_only(repo: Repo, tmp_path: Path) -> None:
    repo.lanes("a")
    repo.write("talk.yaml", TALK.replace("worker, human", "human, other"))
    path = repo.path / ".lanes" / "controller.sock"
    port = free_port()
    with daemon(repo, "--metrics-addr", f"127.0.0.1:{port}", log=tmp_path / "daemon.log"):
        wait_until(lambda: answering(path) and get(path, "/readyz")[0] == 200)
        message = {"sender": "human", "body": "x"}
        assert tcp(port, "/v1/threads/t/messages", "POST", message)[0] == 404
        assert tcp(port, "/v1/threads/t/messages", "POST", message, token="a" * 32)[0] == 404
        assert tcp(port, "/v1/threads/t/read", "POST", {"reader": "other"})[0] == 404
        assert tcp(port, "/v1/heartbeat", "POST", {"lane": "a", "participant": "x"})[0] == 404
        assert tcp(port, "/v1/status")[0] == 200


def test_a_token_file_others_may_read_is_refused(repo: Repo, tmp_path: Path) -> None:
    repo.lanes("a")
    addr = f"127.0.0.1:{free_port()}"
    for mode in (0o644, 0o640, 0o604):
        secret, token = token_file(tmp_path, mode)
        done = repo.ctl("run", "--metrics-addr", addr, "--api-token-file", str(secret))
        assert done.returncode == 1
        assert f"mode {mode:04o} lets other users read the token" in done.stderr
        assert f"chmod 600 {secret}" in done.stderr
        assert token not in done.stderr + done.stdout
    secret.write_text("short\n")
    secret.chmod(0o600)
    done = repo.ctl("run", "--metrics-addr", addr, "--api-token-file", str(secret))
    assert (done.returncode, "at least 16 characters" in done.stderr) == (1, True)
    alone = repo.ctl("run", "--api-token-file", str(secret))
    assert (alone.returncode, "goes with --metrics-addr" in alone.stderr) == (1, True)
    missing = repo.ctl("run", "--metrics-addr", addr, "--api-token-file", str(tmp_path / "none"))
    assert (missing.returncode, "cannot open it" in missing.stderr) == (1, True)
    assert not (repo.path / ".lanes" / "controller.sock").exists()
