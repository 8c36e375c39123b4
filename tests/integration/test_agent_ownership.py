"""What the controller owns in tmux and what it must leave alone; agents across worktree
re-creation, lane renames and a lost store. Real git, a real tmux server, real processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import Repo, alive_with, ended, wait_until
from tests.integration.test_agents import agents, bind, events, once, panes, status, workspace

pytestmark = pytest.mark.integration


def tmux(repo: Repo, socket: str, *args: str) -> str:
    done = subprocess.run(
        ("tmux", "-L", socket, *args),
        env=repo.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return done.stdout.strip()


def person_pane(repo: Repo, socket: str, tmp_path: Path, *, split: str | None = None) -> str:
    """What `Ctrl-b c` (or `Ctrl-b %` in the agent's window) does: a shell-like process."""
    argv = (sys.executable, "-c", "import time; time.sleep(3600)", str(tmp_path / "person"))
    if split is None:
        return tmux(repo, socket, "new-window", "-d", "-t", "a:", "-P", "-F", "#{pane_id}", *argv)
    return tmux(repo, socket, "split-window", "-d", "-t", split, "-P", "-F", "#{pane_id}", *argv)


def test_windows_people_open_are_never_closed(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]})
    once(repo)
    agent_pane = agents(repo)["one"]["pane"]
    opened = person_pane(repo, tmux_socket, tmp_path)
    split = person_pane(repo, tmux_socket, tmp_path, split=agent_pane)
    person = alive_with(str(tmp_path / "person"))
    assert len(person) == 2
    out = once(repo)
    assert "stray" not in out and "No changes" in out
    assert {opened, split} <= set(panes(repo, tmux_socket))
    assert sorted(alive_with(str(tmp_path / "person"))) == sorted(person)
    # Removing the binding stops its agent and closes its pane, not the person's split.
    (repo.desired / "bindings.yaml").unlink()
    assert "stopped one" in once(repo)
    assert set(panes(repo, tmux_socket)) == {opened, split}
    assert sorted(alive_with(str(tmp_path / "person"))) == sorted(person)
    assert not [e for e in events(repo) if e["kind"] == "StrayWindowClosed"]


def test_unrecorded_window_the_controller_opened_is_closed(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    """A crash after creating a window, before recording it: the window is the controller's."""
    import sqlite3

    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]})
    once(repo)
    first = agents(repo)["one"]
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path), "--new"]})
    with sqlite3.connect(repo.path / ".lanes" / "state.db") as conn:
        conn.execute("DELETE FROM agents")  # as if the record had never been written
    out = once(repo)
    assert "closed stray pane" in out and "started one" in out  # its command is not the binding's
    again = agents(repo)["one"]
    assert again["pid"] != first["pid"] and len(panes(repo, tmux_socket)) == 1
    assert alive_with(str(tmp_path)) == [again["pid"]]
    closed = [e for e in events(repo) if e["kind"] == "StrayPaneClosed"]
    assert [(e["data"]["pid"], e["data"]["how"]) for e in closed] == [(first["pid"], "terminated")]


@pytest.mark.parametrize("how", ["rm -rf", "git worktree remove"])
def test_recreated_worktree_restarts_its_agent(
    repo: Repo, tmux_socket: str, tmp_path: Path, how: str
) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]})
    once(repo)
    first = agents(repo)["one"]["pid"]
    tree = repo.root / "a"
    if how == "rm -rf":
        shutil.rmtree(tree)
    else:
        repo.git("worktree", "remove", "--force", str(tree))
    out = once(repo)
    assert "stopped one" in out and "started one" in out
    again = agents(repo)["one"]
    assert again["pid"] != first and again["state"] == "running"
    assert psutil.Process(again["pid"]).cwd() == str(tree)
    assert ended(first)
    assert status(repo)["lanes"][0]["phase"] == "running"
    assert "No changes" in once(repo)


def test_worktree_replaced_by_hand_restarts_its_agent(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    """Someone re-created the worktree themselves: the agent still runs in the deleted one."""
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]})
    once(repo)
    first = agents(repo)["one"]["pid"]
    tree = repo.root / "a"
    shutil.rmtree(tree)
    repo.git("worktree", "prune")
    repo.git("worktree", "add", "--quiet", str(tree), "lane/a")
    out = once(repo)
    assert "stopped one" in out and "started one" in out
    again = agents(repo)["one"]
    assert again["pid"] != first and psutil.Process(again["pid"]).cwd() == str(tree)
    assert "No changes" in once(repo)


@pytest.mark.parametrize("renamed_binding", [False, True])
def test_renaming_a_lane_moves_its_agent_in_one_pass(
    repo: Repo, tmux_socket: str, tmp_path: Path, renamed_binding: bool
) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(
        repo,
        {"name": "a-agent", "lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]},
    )
    once(repo)
    first = agents(repo)["one"]["pid"]
    repo.lanes("b")
    bind(
        repo,
        {
            "name": "b-agent" if renamed_binding else "a-agent",
            "lane": "b",
            "participant": "one",
            "args": ["--sleep", str(tmp_path)],
        },
    )
    plan = repo.ctl("plan")
    assert "spec.branch: lane/a" in plan.stdout
    hints = json.loads(repo.ctl("plan", "-o", "json").stdout)["hints"]
    assert any("spec.branch: lane/a" in h for h in hints)
    out = once(repo)
    assert "stopped one" in out and "removed" in out and "started one" in out
    kinds = [(e["kind"], e["lane"]) for e in events(repo)]
    assert kinds.index(("AgentStopped", "a")) < kinds.index(("LaneRemoved", "a"))
    assert kinds.index(("AgentStopped", "a")) < kinds.index(("AgentStarted", "b"))
    moved = agents(repo, "b")["one"]
    assert moved["pid"] != first and moved["state"] == "running"
    assert psutil.Process(moved["pid"]).cwd() == str(repo.root / "b")
    assert ended(first)
    assert [x["name"] for x in status(repo)["lanes"]] == ["b"]
    assert status(repo)["lanes"][0]["phase"] == "running"
    assert len(alive_with(str(tmp_path))) == 1
    assert "No changes" in once(repo)


def test_lost_store_adopts_the_running_agent(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]})
    once(repo)
    first = agents(repo)["one"]
    for path in (repo.path / ".lanes").glob("state.db*"):
        path.unlink()
    out = once(repo)
    assert "adopted one" in out and "started one" not in out and "stray" not in out
    again = agents(repo)["one"]
    assert (again["pid"], again["pane"], again["state"]) == (first["pid"], first["pane"], "running")
    assert alive_with(str(tmp_path)) == [first["pid"]]
    assert status(repo)["lanes"][0]["phase"] == "running"
    assert [e["kind"] for e in events(repo) if e["kind"].startswith("Agent")] == ["AgentAdopted"]
    assert "No changes" in once(repo)
    # The adopted agent is managed like any other: a changed binding restarts it.
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path), "--v2"]})
    assert "stopped one" in once(repo)
    wait_until(lambda: first["pid"] not in alive_with(str(tmp_path)))


def test_adopted_worktree_keeps_the_phase_of_its_running_agent(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    """Only the lane records are lost: the worktree is adopted, its agent still runs."""
    import sqlite3

    workspace(repo, tmux_socket)
    repo.lanes("a")
    bind(repo, {"lane": "a", "participant": "one", "args": ["--sleep", str(tmp_path)]})
    once(repo)
    pid = agents(repo)["one"]["pid"]
    with sqlite3.connect(repo.path / ".lanes" / "state.db") as conn:
        conn.execute("DELETE FROM lanes")
    assert "recorded" in once(repo)
    assert status(repo)["lanes"][0]["phase"] == "running"
    assert agents(repo)["one"]["pid"] == pid


def test_process_observer_sees_a_working_directory_deleted_under_a_process(
    tmp_path: Path,
) -> None:
    import functools

    import anyio

    from controller.core import world
    from controller.observers import processes

    def read(pid: int) -> dict[int, world.Proc]:
        found = anyio.run(functools.partial(processes.observe_unrecorded, [pid], parent=me))
        return dict(found)

    me = os.getpid()
    folder = tmp_path / "wt"
    folder.mkdir()
    child = subprocess.Popen(
        (sys.executable, "-c", "import time; time.sleep(60)", str(tmp_path)),
        cwd=folder,
        start_new_session=True,
    )
    try:
        seen = read(child.pid)[child.pid]
        assert (seen.cwd, seen.cwd_deleted) == (str(folder), False)
        assert seen.argv[-1] == str(tmp_path)
        assert seen.created == psutil.Process(child.pid).create_time()
        shutil.rmtree(folder)
        again = read(child.pid)[child.pid]
        assert (again.cwd, again.cwd_deleted) == (str(folder), True)
        found, _ = anyio.run(functools.partial(processes.observe_processes, [child.pid]))
        assert not isinstance(found, world.Unknown)
        assert found[child.pid].stranded_in(str(folder))
    finally:
        child.kill()
        child.wait(timeout=10)
    assert read(child.pid) == {}
    other = anyio.run(functools.partial(processes.observe_unrecorded, [me], parent=me))
    assert other == {}  # not a child of the given parent: the PID is not the pane's


def test_lost_store_adopts_a_process_runtime_agent(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    spec = {"runtime": "process"}
    bind(repo, {"lane": "a", "participant": "bg", "args": [str(tmp_path)], "spec": spec})
    once(repo)
    first = agents(repo)["bg"]
    wait_until(lambda: len(alive_with(str(tmp_path))) == 2)  # the launcher and its agent
    running = sorted(alive_with(str(tmp_path)))
    for path in (repo.path / ".lanes").glob("state.db*"):
        path.unlink()
    out = once(repo)
    assert "adopted bg" in out and "started" not in out and "unrecorded" not in out
    again = agents(repo)["bg"]
    assert (again["pid"], again["log"], again["state"]) == (first["pid"], first["log"], "running")
    assert sorted(alive_with(str(tmp_path))) == running
    assert "No changes" in once(repo)


def _interrupt_the_start(repo: Repo, binding: str) -> None:
    """Leave the binding's record as a controller killed between recording the start and
    recording the launched process leaves it: ``starting``, with no process."""
    import sqlite3

    with sqlite3.connect(repo.path / ".lanes" / "state.db") as conn:
        done = conn.execute(
            "UPDATE agents SET state = 'starting', pid = NULL, pid_created = NULL,"
            " restarts = 0 WHERE binding = ?",
            (binding,),
        )
        assert done.rowcount == 1


@pytest.mark.parametrize("ended", [False, True], ids=["still-running", "ended"])
def test_a_start_interrupted_after_its_launch_never_starts_a_second_copy(
    repo: Repo, tmux_socket: str, tmp_path: Path, ended: bool
) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    log = tmp_path / "starts.jsonl"
    args = ["--record", str(log), *(["--exit", "0"] if ended else []), str(tmp_path)]
    spec = {"runtime": "process", "restart": "never"}
    bind(repo, {"lane": "a", "participant": "bg", "args": args, "spec": spec})
    once(repo)
    first = agents(repo)["bg"]
    if ended:
        wait_until(lambda: (repo.path / ".lanes" / "run" / "a-bg.exit").exists())
    else:
        wait_until(lambda: len(alive_with(str(tmp_path))) == 2)  # the launcher and its agent
    _interrupt_the_start(repo, "a-bg")
    assert agents(repo)["bg"]["state"] == "starting"
    out = once(repo)
    assert "started bg" not in out
    again = agents(repo)["bg"]
    if ended:
        assert "bg exited (0)" in out
        assert (again["state"], again["restarts"]) == ("exited", 0)
    else:
        assert "adopted bg" in out
        assert (again["pid"], again["state"]) == (first["pid"], "running")
    assert len(log.read_text().splitlines()) == 1  # started once
    assert "No changes" in once(repo)


def test_a_start_interrupted_before_its_launch_starts_the_agent_once(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    workspace(repo, tmux_socket)
    repo.lanes("a")
    log = tmp_path / "starts.jsonl"
    spec = {"runtime": "process", "restart": "never"}
    bind(repo, {"lane": "a", "participant": "bg", "args": ["--record", str(log)], "spec": spec})
    once(repo)
    wait_until(lambda: log.exists())
    first = agents(repo)["bg"]
    subprocess.run(["kill", "-9", str(first["pid"])], check=True)  # no trace of it is left
    wait_until(lambda: (repo.path / ".lanes" / "run" / "a-bg.exit").exists())
    (repo.path / ".lanes" / "run" / "a-bg.exit").unlink()
    _interrupt_the_start(repo, "a-bg")
    out = once(repo)
    assert "started bg" in out
    wait_until(lambda: len(log.read_text().splitlines()) == 2)
    assert agents(repo)["bg"]["state"] == "running"
