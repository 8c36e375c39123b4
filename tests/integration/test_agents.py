"""Agents against a real tmux server (private socket per test) and real processes."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import libtmux
import psutil
import pytest

from controller import errors
from controller.system import proc, tmuxserver
from tests.conftest import Repo, alive_with, ended, wait_until

pytestmark = pytest.mark.integration

AGENT = str(Path(__file__).resolve().parents[1] / "stubs" / "agent.py")


def workspace(repo: Repo, socket: str, **spec: Any) -> None:
    extra = "".join(f", {k}: {v}" for k, v in spec.items())
    repo.write(
        "workspace.yaml",
        f"apiVersion: lanes/v1\nkind: Workspace\nmetadata: {{name: test}}\n"
        f"spec: {{tmuxSocket: {socket}{extra}}}\n",
    )


def bind(repo: Repo, *bindings: dict[str, Any]) -> None:
    docs = []
    for b in bindings:
        spec = {"lane": b["lane"], "participant": b["participant"], **b.get("spec", {})}
        spec.setdefault("command", [sys.executable, AGENT, *b.get("args", [])])
        doc = {
            "apiVersion": "lanes/v1",
            "kind": "Binding",
            "metadata": {"name": b.get("name", f"{b['lane']}-{b['participant']}")},
            "spec": spec,
        }
        docs.append(json.dumps(doc))  # JSON is YAML
    repo.write("bindings.yaml", "\n---\n".join(docs) + "\n")


def once(repo: Repo, *args: str, code: int = 0) -> str:
    done = repo.ctl("--once", *args)
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout


def status(repo: Repo) -> dict[str, Any]:
    done = repo.ctl("status", "-o", "json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def agents(repo: Repo, lane: str = "a") -> dict[str, dict[str, Any]]:
    (found,) = [x for x in status(repo)["lanes"] if x["name"] == lane]
    return {a["participant"]: a for a in found["agents"]}


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def panes(repo: Repo, socket: str) -> list[str]:
    """Pane ids of the controller's server, seen independently through libtmux."""
    server = libtmux.Server(socket_name=socket)
    if not server.is_alive():
        return []
    return [str(p.pane_id) for p in server.panes]


def events(repo: Repo) -> list[dict[str, Any]]:
    out = repo.ctl("events", "-o", "json", "--limit", "1000").stdout
    return [json.loads(line) for line in out.splitlines()]


def test_agent_starts_in_worktree_with_lane_env(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    rec = tmp_path / "rec.jsonl"
    secret = "hunter2"  # noqa: S105 - a fake secret the logs must not show
    bind(
        repo,
        {
            "lane": "a",
            "participant": "one",
            "args": ["--record", str(rec)],
            "spec": {"env": {"TEST_SECRET": secret}},
        },
    )
    out = once(repo)
    assert "started one" in out
    wait_until(lambda: records(rec))
    start = records(rec)[0]
    assert start["cwd"] == str(repo.root / "a")
    assert start["env"]["LANE_NAME"] == "a"
    assert start["env"]["LANE_PARTICIPANT"] == "one"
    assert start["env"]["LANE_WORKTREE"] == str(repo.root / "a")
    assert start["env"]["CONTROLLER_STATE"].startswith("sqlite:///")
    assert start["env"]["TEST_SECRET"] == secret
    one = agents(repo)["one"]
    assert one["state"] == "running" and one["pid"] == start["pid"]
    assert one["pane"].startswith("%") and one["runtime"] == "tmux"
    assert status(repo)["lanes"][0]["phase"] == "running"
    log = repo.ctl("events", "-o", "json").stdout
    assert "AgentStarted" in log and secret not in log
    assert secret not in repo.ctl("plan", "-o", "json").stdout
    assert not list((repo.path / ".lanes" / "run").glob("env-*"))  # env file read and deleted
    assert "No changes" in once(repo)


def test_an_argument_ending_in_a_semicolon_reaches_the_agent_as_it_is(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    # tmux ends a command at an argument ending in ";": the rest would run as tmux commands.
    workspace(repo, tmux_socket)
    repo.lanes("a")
    out = tmp_path / "argv.json"
    code = (
        "import json, sys, time; open(sys.argv[1], 'w').write(json.dumps(sys.argv)); time.sleep(60)"
    )
    command = [sys.executable, "-c", code, str(out), "make;", "kill-server", "a\\;"]
    bind(repo, {"lane": "a", "participant": "one", "spec": {"command": command}})
    once(repo)
    wait_until(out.exists)
    assert json.loads(out.read_text())[1:] == [str(out), "make;", "kill-server", "a\\;"]
    assert agents(repo)["one"]["state"] == "running"  # the server was not told to stop


def test_killed_agent_is_restarted(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]})
    once(repo)
    first = agents(repo)["one"]["pid"]
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: agents(repo)["one"]["state"] == "dead")
    once(repo)
    again = agents(repo)["one"]
    assert again["pid"] != first and again["state"] == "running"
    assert again["restarts"] == 1 and again["lastExit"] == 128 + signal.SIGKILL
    assert psutil.pid_exists(again["pid"])


def test_sigterm_ignorer_is_killed_after_grace(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(
        repo,
        {
            "lane": "a",
            "participant": "stubborn",
            "args": ["--ignore-term", str(tmp_path)],
            "spec": {"stopGraceSeconds": 1},
        },
    )
    once(repo)
    pid = agents(repo)["stubborn"]["pid"]
    (repo.desired / "bindings.yaml").unlink()
    started = time.monotonic()
    out = once(repo)
    assert "stopped stubborn (killed)" in out
    assert time.monotonic() - started < 15
    assert ended(pid)
    assert panes(repo, tmux_socket) == []
    assert agents(repo) == {}


def test_two_bindings_make_a_shared_lane(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(
        repo,
        {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]},
        {"lane": "a", "participant": "two", "args": ["--sleep", str(tmp_path)]},
    )
    once(repo)
    both = agents(repo)
    assert {p: a["state"] for p, a in both.items()} == {"one": "running", "two": "running"}
    assert status(repo)["lanes"][0]["phase"] == "shared"
    assert len(panes(repo, tmux_socket)) == 2
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]})
    once(repo)
    assert status(repo)["lanes"][0]["phase"] == "running"


def test_process_runtime(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(
        repo,
        {"lane": "a", "participant": "bg", "args": [str(tmp_path)], "spec": {"runtime": "process"}},
        {
            "lane": "a",
            "participant": "quits",
            "args": ["--exit", "3", str(tmp_path)],
            "spec": {"runtime": "process", "restart": "never"},
        },
    )
    once(repo)
    log = repo.path / ".lanes" / "logs" / "a" / "bg.log"
    wait_until(lambda: log.exists() and "ready" in log.read_text())
    bg = agents(repo)["bg"]
    assert bg["runtime"] == "process" and bg["state"] == "running" and bg["log"] == str(log)
    wait_until(lambda: agents(repo)["quits"]["state"] == "dead")
    once(repo)
    quits = agents(repo)["quits"]
    assert quits["state"] == "exited" and quits["lastExit"] == 3
    assert panes(repo, tmux_socket) == []  # no tmux involved
    (repo.desired / "bindings.yaml").unlink()
    once(repo)
    assert alive_with(str(tmp_path)) == []


def test_process_runtime_status_shows_the_agents_own_pid(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    """`kill <pid from status>` reaches the agent, not its supervising launcher."""
    workspace(repo, tmux_socket)
    repo.lanes("a")
    rec = tmp_path / "rec.jsonl"
    bind(
        repo,
        {
            "lane": "a",
            "participant": "bg",
            "args": ["--record", str(rec), str(tmp_path)],
            "spec": {"runtime": "process"},
        },
    )
    once(repo)
    wait_until(lambda: records(rec) and agents(repo)["bg"]["pid"] is not None)
    bg = agents(repo)["bg"]
    assert bg["pid"] == records(rec)[0]["pid"]  # the agent itself
    assert bg["launcherPid"] not in (None, bg["pid"])
    assert psutil.Process(bg["pid"]).ppid() == bg["launcherPid"]
    os.kill(bg["pid"], signal.SIGTERM)
    wait_until(lambda: agents(repo)["bg"]["state"] == "dead")
    assert agents(repo)["bg"]["pid"] is None  # no agent runs; the launcher has ended
    assert "started bg" in once(repo)  # restart policy on-failure: 143 is a failure
    again = agents(repo)["bg"]
    assert again["state"] == "running" and again["restarts"] == 1
    assert again["lastExit"] == 128 + signal.SIGTERM
    (exited,) = [e for e in events(repo) if e["kind"] == "AgentExited"]
    assert exited["data"]["status"] == 143


def test_stale_agent_is_replaced_and_heartbeat_counts(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(
        repo,
        {
            "lane": "a",
            "participant": "one",
            "args": ["--quiet", str(tmp_path)],
            "spec": {
                "heartbeat": {"source": "explicit", "staleAfter": "2s"},
                "stopGraceSeconds": 1,
            },
        },
    )
    once(repo)
    first = agents(repo)["one"]["pid"]
    sent = time.monotonic()
    beat = repo.ctl("heartbeat", "--lane", "a", "--as", "one")
    assert beat.returncode == 0, beat.stderr
    # The beat counts: its age is at most the time since it was sent (rounded to 0.1 s),
    # however slow a loaded machine makes the commands.
    assert agents(repo)["one"]["heartbeatAge"] <= time.monotonic() - sent + 0.1
    wait_until(lambda: agents(repo)["one"]["heartbeatAge"] > 2)  # past staleAfter
    out = once(repo)
    assert "stale" in repo.ctl("events").stdout and "started one" in out
    second = agents(repo)["one"]
    assert second["pid"] != first and second["state"] == "running"
    stopped = [e for e in events(repo) if e["kind"] == "AgentStopped"]
    assert stopped and "stale" in stopped[-1]["reason"]


def test_crash_loop_blocks_until_unblocked(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(
        repo,
        {
            "lane": "a",
            "participant": "crashy",
            "args": ["--exit", "1", str(tmp_path)],
            "spec": {"restart": "always", "crashLoop": {"deaths": 2, "within": "10m"}},
        },
    )
    once(repo)  # starts
    wait_until(lambda: agents(repo)["crashy"]["state"] == "dead")
    once(repo)  # first death: recorded, restarted at once
    wait_until(lambda: agents(repo)["crashy"]["state"] == "dead")
    once(repo, code=2)  # second death within 10m: blocked, and not converged until unblocked
    crashy = agents(repo)["crashy"]
    assert crashy["state"] == "blocked" and "crash loop" in crashy["blocked"]
    (who,) = [p for p in status(repo)["participants"] if p["name"] == "crashy"]
    assert who["blocked"] is True
    assert "CrashLoop" in once(repo, code=2)  # stays blocked, nothing restarted
    done = repo.ctl("unblock", "crashy", "--reason", "fixed the config")
    assert done.returncode == 0 and "unblocked crashy" in done.stdout
    audit = [e for e in events(repo) if e["kind"] == "ParticipantUnblocked"]
    assert audit and audit[0]["reason"] == "fixed the config" and audit[0]["data"]["by"]
    assert "started crashy" in once(repo)


def test_lane_removal_stops_agent_before_worktree(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a", "b")
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]})
    once(repo)
    pid = agents(repo)["one"]["pid"]
    repo.lanes("b")
    (repo.desired / "bindings.yaml").unlink()
    once(repo)
    kinds = [e["kind"] for e in events(repo) if e["lane"] == "a"]
    assert kinds.index("AgentStopped") < kinds.index("LaneRemoved")
    assert ended(pid)
    assert repo.worktrees() == [str(repo.root / "b")] and panes(repo, tmux_socket) == []


def helpers(marker: str) -> list[psutil.Process]:
    """The stub agent's ``--helpers`` that are still alive."""
    found = []
    for pid in alive_with(marker):
        try:
            process = psutil.Process(pid)
            if "time.sleep(3600)" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.NoSuchProcess:  # a short-lived process that ended after the scan
            continue
    return found


@pytest.mark.parametrize("runtime", ["tmux", "process"])
def test_lane_removal_stops_helpers_that_left_the_group(
    repo: Repo, tmux_socket: str, tmp_path: Path, runtime: str
) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a", "b")
    bind(
        repo,
        {
            "lane": "a",
            "participant": "one",
            "args": ["--helpers", str(tmp_path)],
            "spec": {"runtime": runtime},
        },
    )
    once(repo)
    wait_until(lambda: len(helpers(str(tmp_path))) == 2 and agents(repo)["one"]["pid"])
    agent = psutil.Process(agents(repo)["one"]["pid"])
    assert all(
        os.getsid(h.pid) not in (agent.pid, os.getsid(agent.pid)) for h in helpers(str(tmp_path))
    )
    assert len(agent.children()) == 1  # the setsid helper; the other one was re-parented
    repo.lanes("b")
    (repo.desired / "bindings.yaml").unlink()
    out = once(repo)
    assert "stopped one" in out and "removed" in out
    wait_until(lambda: alive_with(str(tmp_path)) == [], timeout=10)


def test_tmux_server_killed_from_outside_is_recreated(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]})
    once(repo)
    subprocess.run(("tmux", "-L", tmux_socket, "kill-server"), env=repo.env, check=True)
    wait_until(lambda: agents(repo)["one"]["state"] == "dead")
    once(repo)
    assert agents(repo)["one"]["state"] == "running"
    assert len(panes(repo, tmux_socket)) == 1


def tmux_servers(socket: str) -> list[int]:
    """Live tmux server processes of ``socket`` (a server's argv is its first client's)."""
    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline", "status"]):
        info = process.info
        if info["status"] == psutil.STATUS_ZOMBIE or info["name"] != "tmux: server":
            continue
        if socket in (info["cmdline"] or ()):
            found.append(info["pid"])
    return found


def socket_of(repo: Repo, socket: str) -> tuple[Path, int]:
    """The server's socket file and pid, asked of the server itself."""
    done = subprocess.run(
        ("tmux", "-L", socket, "display-message", "-p", "#{socket_path}|#{pid}"),
        env=repo.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    path, pid = done.stdout.strip().split("|")
    return Path(path), int(pid)


def test_deleted_tmux_socket_is_recreated_not_replaced(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]})
    once(repo)
    pid = agents(repo)["one"]["pid"]
    path, server = socket_of(repo, tmux_socket)
    path.unlink()
    assert "No changes" in once(repo)  # the server is asked to recreate its socket (SIGUSR1)
    assert path.exists() and socket_of(repo, tmux_socket) == (path, server)
    assert tmux_servers(tmux_socket) == [server]
    one = agents(repo)["one"]
    assert one["pid"] == pid and one["state"] == "running" and psutil.pid_exists(pid)
    assert [e for e in events(repo) if e["kind"] == "AgentStarted"].__len__() == 1


def test_tmux_server_without_its_socket_is_unknown_not_empty(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]})
    once(repo)
    pid = agents(repo)["one"]["pid"]
    path, server = socket_of(repo, tmux_socket)
    stopped = psutil.Process(server)
    stopped.suspend()  # it cannot act on SIGUSR1 until it runs again
    try:
        path.unlink()
        out = once(repo, code=2)
        assert f"tmux server pid {server} is alive but its socket" in out
        assert agents(repo)["one"]["state"] == "unknown"
        tmux = tmuxserver.TmuxServer(
            proc.SubprocessRunner(repo.env), tmux_socket, repo.path / ".lanes" / "tmux.conf"
        )
        with pytest.raises(errors.CommandFailed, match="is alive but its socket"):
            anyio.run(
                functools.partial(
                    tmux.new_window,
                    session="b",
                    session_id=None,
                    name="x",
                    cwd=str(tmp_path),
                    argv=("sleep", "1000"),
                )
            )
        assert tmux_servers(tmux_socket) == [server]  # no second server
    finally:
        stopped.resume()
    wait_until(path.exists)  # the pending SIGUSR1 is handled now
    assert "No changes" in once(repo)
    assert agents(repo)["one"]["pid"] == pid and tmux_servers(tmux_socket) == [server]


def test_unreachable_tmux_changes_nothing(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]})
    once(repo)
    pid = agents(repo)["one"]["pid"]
    server = next(
        p
        for p in psutil.process_iter(["pid", "cmdline"])
        if p.info["cmdline"] and p.info["cmdline"][0] == "tmux" and tmux_socket in p.info["cmdline"]
    )
    bind(
        repo,
        {"lane": "a", "participant": "one", "args": ["--changed", str(tmp_path)]},
        {"lane": "a", "participant": "two", "args": [str(tmp_path)]},
    )
    server.suspend()  # a hung server: list-panes times out
    try:
        out = once(repo, code=2)
    finally:
        server.resume()
    assert "AgentUnknown" in out
    assert psutil.pid_exists(pid)  # not killed or restarted on an unknown observation
    assert [e for e in events(repo) if e["kind"] == "AgentStarted"].__len__() == 1
    assert "started two" in once(repo)


def test_50_lanes_with_agents_leave_nothing(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    workspace(repo, tmux_socket, maxParallelLanes=16)
    names = [f"l{i:02d}" for i in range(50)]
    repo.lanes(*names)
    bind(
        repo,
        *({"lane": n, "participant": f"p{n}", "args": ["--sleep", str(tmp_path)]} for n in names),
    )
    once(repo)
    assert len(panes(repo, tmux_socket)) == 50
    assert len(alive_with(str(tmp_path))) == 50
    (repo.desired / "bindings.yaml").unlink()
    (repo.desired / "lanes.yaml").unlink()
    once(repo, "--allow-empty")
    assert panes(repo, tmux_socket) == []
    wait_until(lambda: alive_with(str(tmp_path)) == [], timeout=10)
    assert repo.worktrees() == [] and repo.root_entries() == [".gitignore"]
    assert status(repo)["lanes"] == []


def test_daemon_restarts_a_killed_agent(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]})
    daemon = subprocess.Popen(
        (sys.executable, "-m", "controller", "run", "--resync", "1", "--debounce", "0.1"),
        cwd=repo.path,
        env=repo.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: agents(repo).get("one", {}).get("state") == "running")
        first = agents(repo)["one"]["pid"]
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: agents(repo)["one"]["pid"] not in (first, None), timeout=20)
        assert agents(repo)["one"]["state"] == "running"
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert psutil.pid_exists(agents(repo)["one"]["pid"])  # agents outlive the daemon, by design


def test_deleting_every_file_still_cleans_up(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]})
    once(repo)
    for path in repo.desired.iterdir():
        path.unlink()  # the Workspace document goes too
    refused = repo.ctl("--once")
    assert refused.returncode == 1 and "--allow-empty" in refused.stdout
    out = once(repo, "--allow-empty")
    assert "no Workspace is declared; using the last one" in out
    assert repo.worktrees() == [] and panes(repo, tmux_socket) == []
    wait_until(lambda: alive_with(str(tmp_path)) == [], timeout=10)


def test_unrecorded_process_agent_is_stopped(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    """A crash between starting a process agent and recording it must not leak the process."""
    import sqlite3

    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(
        repo,
        {"lane": "a", "participant": "bg", "args": [str(tmp_path)], "spec": {"runtime": "process"}},
    )
    once(repo)
    first = agents(repo)["bg"]["launcherPid"]
    with sqlite3.connect(repo.path / ".lanes" / "state.db") as conn:
        conn.execute("DELETE FROM agents")  # as if the record had never been written
    # The binding changed meanwhile, so the unrecorded agent is not adopted (see
    # test_agent_ownership.py for the adoption of one that still matches).
    changed = {"lane": "a", "participant": "bg", "args": [str(tmp_path), "--v2"]}
    bind(repo, {**changed, "spec": {"runtime": "process"}})
    out = once(repo)
    assert f"stopped unrecorded process {first}" in out
    assert "started bg" in out
    wait_until(lambda: len(alive_with(str(tmp_path))) == 2)  # the new launcher and its agent
    assert first not in alive_with(str(tmp_path))


def test_agents_survive_repeated_passes(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    """Regression: the tmux server's argv names the run folder; it is not a stray launcher."""
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]})
    once(repo)
    pid = agents(repo)["one"]["pid"]
    for _ in range(3):
        assert "No changes" in once(repo)
    assert agents(repo)["one"]["pid"] == pid and psutil.pid_exists(pid)
