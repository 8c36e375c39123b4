"""Many hosts on one PostgreSQL store: one origin repository, a clone per host, each with its
own controller (`--host`), worktrees and tmux server, all on this machine (DESIGN §9)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

from controller.core import hosts
from tests.conftest import Repo, wait_until

LEASE = "2"  # CONTROLLER_LEASE_SECONDS: a lost host shows within seconds


def _workspace(name: str, url: str) -> str:
    return f"""apiVersion: lanes/v1
kind: Workspace
metadata:
  name: {name}
spec:
  stateUrl: {url}
  hosts:
    - name: alpha
      lanes: [a]
    - name: beta
      matchLabels: {{team: b}}
"""


LANES = """apiVersion: lanes/v1
kind: Lane
metadata:
  name: a
---
apiVersion: lanes/v1
kind: Lane
metadata:
  name: b
  labels: {team: b}
---
apiVersion: lanes/v1
kind: Lane
metadata:
  name: c
"""


@pytest.fixture
def clones(repo: Repo, postgres_url: str, tmp_path: Path) -> Iterator[dict[str, Repo]]:
    """The origin with lanes a (alpha's), b (beta's by label) and c (no host's), and one
    clone per host; every controller started by a test is reaped after it."""
    repo.write("workspace.yaml", _workspace(f"hosts-{secrets.token_hex(4)}", postgres_url))
    repo.write("lanes.yaml", LANES)
    # alpha's lane runs an agent; the test folder in its argv lets the fixture reap it.
    agent = [sys.executable, "-c", "import time; time.sleep(3600)", str(tmp_path)]
    spec = {"lane": "a", "participant": "worker", "runtime": "process", "command": agent}
    binding = {"apiVersion": "lanes/v1", "kind": "Binding", "metadata": {"name": "a-worker"}}
    repo.write("bindings.yaml", json.dumps({**binding, "spec": spec}) + "\n")
    repo.git("add", ".")
    repo.git("commit", "-q", "-m", "desired")
    env = {**repo.env, "CONTROLLER_LEASE_SECONDS": LEASE}
    found = {}
    for host in ("alpha", "beta", "alpha2"):
        path = tmp_path / f"clone-{host}"
        repo.git("clone", "-q", str(repo.path), str(path))
        found[host] = Repo(path, env)
    yield found
    from tests.conftest import reap

    reap(str(tmp_path))


def _status(clone: Repo, host: str) -> dict[str, Any]:
    done = clone.ctl("status", "--host", host, "-o", "json")
    assert done.returncode == 0, done.stderr
    view: dict[str, Any] = json.loads(done.stdout)
    return view


def _conditions(view: dict[str, Any], lane: str) -> list[str]:
    found = next(x for x in view["lanes"] if x["name"] == lane)
    return [c["type"] for c in found["conditions"]]


def _agent_pid(clone: Repo) -> int | None:
    """The pid alpha recorded for lane a's agent, as another host's status shows it."""
    view = _status(clone, "beta")
    a = next(x for x in view["lanes"] if x["name"] == "a")
    pids = [agent["pid"] for agent in a["agents"] if agent["state"] == "running"]
    return pids[0] if pids else None


def _daemon(clone: Repo, host: str) -> subprocess.Popen[bytes]:
    """A daemon for ``host`` in ``clone``; its log goes to ``daemon-HOST.log`` beside it."""
    with (clone.path.parent / f"daemon-{host}.log").open("ab") as log:
        return subprocess.Popen(
            (sys.executable, "-m", "controller", "run", "--host", host, "--resync", "0.5"),
            cwd=clone.path,
            env=clone.env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _log(clone: Repo, host: str) -> str:
    return (clone.path.parent / f"daemon-{host}.log").read_text()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_each_host_reconciles_only_its_lanes(clones: dict[str, Repo]) -> None:
    alpha, beta = clones["alpha"], clones["beta"]
    done = alpha.ctl("--once", "--host", "alpha")
    assert done.returncode == 0, done.stdout + done.stderr
    done = beta.ctl("--once", "--host", "beta")
    assert done.returncode == 0, done.stdout + done.stderr
    assert alpha.worktrees() == [str(alpha.root / "a")]
    assert beta.worktrees() == [str(beta.root / "b")]
    # Again: neither removes nor touches the other's lane.
    assert alpha.ctl("--once", "--host", "alpha").returncode == 0
    assert beta.worktrees() == [str(beta.root / "b")]
    assert alpha.worktrees() == [str(alpha.root / "a")]

    view = _status(beta, "beta")
    hosts = {h["name"]: h for h in view["hosts"]}
    assert hosts["alpha"]["lanes"] == ["a"] and hosts["beta"]["lanes"] == ["b"]
    assert hosts["alpha"]["state"] == "stopped"  # each --once gave its lease back
    assert {x["name"]: x["host"] for x in view["lanes"]} == {"a": "alpha", "b": "beta", "c": None}
    assert _conditions(view, "c") == ["Unscheduled"]
    assert _conditions(view, "a") == []  # a released lease is not a lost host
    a = next(x for x in view["lanes"] if x["name"] == "a")
    assert a["phase"] == "running" and a["worktree"] == str(alpha.root / "a")
    (worker,) = a["agents"]  # as alpha recorded it: its process is on alpha
    assert (worker["participant"], worker["state"], worker["host"]) == (
        "worker",
        "running",
        "alpha",
    )

    text = beta.ctl("status", "--host", "beta")
    assert "host alpha: stopped" in text.stdout
    assert "Unscheduled" in text.stdout

    wrong = beta.ctl("attach", "a", "--host", "beta")
    assert wrong.returncode == 1
    assert "lane a runs on host alpha: ssh alpha, then controller attach a" in wrong.stderr


def test_a_second_controller_of_one_host_name_is_refused(clones: dict[str, Repo]) -> None:
    alpha, other = clones["alpha"], clones["alpha2"]
    first = _daemon(alpha, "alpha")
    try:
        wait_until(lambda: alpha.worktrees() == [str(alpha.root / "a")], timeout=60)
        refused = other.ctl("--once", "--host", "alpha")
        assert refused.returncode == 1
        assert "host alpha is held by pid" in refused.stderr
        assert "stop it or use another --host" in refused.stderr
        assert other.worktrees() == []
        # In the daemon's own clone a --once runs under its lease (the workspace lock keeps
        # the two apart), and leaves the lease to the daemon.
        shared = alpha.ctl("--once", "--host", "alpha")
        assert shared.returncode == 0, shared.stderr
        assert _status(clones["beta"], "beta")["hosts"][0]["state"] == "live"
        second = _daemon(other, "alpha")
        assert second.wait(timeout=60) == 1
        assert "host alpha is held by pid" in _log(other, "alpha")
    finally:
        _stop(first)
    assert first.returncode == 0
    # Stopped: the lease is given back, and a --once after a --once is never refused.
    assert alpha.ctl("--once", "--host", "alpha").returncode == 0
    assert alpha.ctl("--once", "--host", "alpha").returncode == 0


def test_concurrent_once_passes_of_one_host_create_once(clones: dict[str, Repo]) -> None:
    alpha = clones["alpha"]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: alpha.ctl("--once", "--host", "alpha"), range(3)))
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert alpha.worktrees() == [str(alpha.root / "a")]
    events = alpha.ctl("events", "--host", "alpha", "-o", "json", "--kind", "LaneProvisioned")
    created = [json.loads(line) for line in events.stdout.splitlines()]
    assert [e["lane"] for e in created] == ["a"], events.stdout + events.stderr


def test_a_killed_host_is_lost_and_left_alone_until_it_returns(clones: dict[str, Repo]) -> None:
    alpha, beta = clones["alpha"], clones["beta"]
    daemon = _daemon(alpha, "alpha")
    try:
        wait_until(lambda: alpha.worktrees() == [str(alpha.root / "a")], timeout=60)
        wait_until(lambda: _agent_pid(beta) is not None, timeout=60)
        pid = _agent_pid(beta)
        (alpha.root / "a" / "work.txt").write_text("unsaved\n")
        wait_until(lambda: _status(beta, "beta")["hosts"][0]["state"] == "live", timeout=30)
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(timeout=30)
        wait_until(lambda: _conditions(_status(beta, "beta"), "a") == ["HostLost"], timeout=30)
        assert beta.ctl("--once", "--host", "beta").returncode == 0
        assert alpha.worktrees() == [str(alpha.root / "a")]
        assert (alpha.root / "a" / "work.txt").read_text() == "unsaved\n"
        assert beta.worktrees() == [str(beta.root / "b")]
        assert pid is not None and psutil.pid_exists(pid)  # its agent runs on, untouched
        daemon = _daemon(alpha, "alpha")  # it returns: the lease is taken again
        wait_until(lambda: _conditions(_status(beta, "beta"), "a") == [], timeout=60)
        assert alpha.worktrees() == [str(alpha.root / "a")]
        assert _agent_pid(beta) == pid  # the same agent, taken back, not started again
    finally:
        _stop(daemon)


def test_hosts_with_a_sqlite_store_are_refused(repo: Repo) -> None:
    repo.write("workspace.yaml", _workspace("w", "sqlite:///.lanes/state.db"))
    repo.write("lanes.yaml", LANES)
    done = repo.ctl("validate")
    assert done.returncode == 1
    assert "workspace.yaml:" in done.stderr and "stateUrl must be postgresql" in done.stderr
    repo.write(
        "workspace.yaml",
        _workspace("w", "sqlite:///x.db").replace("  stateUrl: sqlite:///x.db\n", ""),
    )
    once = repo.ctl("--once", "--host", "alpha")
    assert once.returncode == 1
    assert "workspace.yaml:" in once.stderr and "spec.hosts needs a PostgreSQL store" in once.stderr


@pytest.fixture(params=["sqlite", "postgresql"])
def lease_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    from controller.store import queries

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = queries.Store.open(url, f"leases-{secrets.token_hex(4)}")
    yield store
    store.close()


def test_a_lease_is_taken_renewed_refused_and_given_back(lease_store: Any) -> None:
    from controller.store import leases

    def holder(instance: str, pid: int) -> leases.Holder:
        return leases.Holder("alpha", instance, pid, "m1", "1.0", {"zone": "a"})

    first, second = holder("one", 11), holder("two", 22)
    lease, now = leases.acquire(lease_store, first, seconds=30)
    assert lease.instance == "one" and lease.expires_at > now
    started = lease.started_at
    renewed, _ = leases.acquire(lease_store, first, seconds=30)
    assert renewed.instance == "one" and renewed.started_at == started
    refused, now = leases.acquire(lease_store, second, seconds=30)
    assert refused.instance == "one"  # the live holder's row, unchanged
    message = leases.refusal(refused, now)
    assert message.startswith("host alpha is held by pid 11 on m1 since ")
    assert "stop it or use another --host" in message
    leases.release(lease_store, first)
    seen = leases.read(lease_store)
    assert [x.state(seen.now) for x in seen.items] == [hosts.HostState.STOPPED]
    taken, _ = leases.acquire(lease_store, second, seconds=30)
    assert taken.instance == "two" and not taken.released


def test_an_expired_lease_is_taken_over(lease_store: Any) -> None:
    from controller.store import leases

    gone = leases.Holder("beta", "old", 1, "m", "1", {})
    leases.acquire(lease_store, gone, seconds=0.2)

    def lost() -> bool:
        seen = leases.read(lease_store)
        return seen.items[0].state(seen.now) == hosts.HostState.LOST

    wait_until(lost, timeout=30)
    back = leases.Holder("beta", "new", 2, "m", "1", {})
    taken, _ = leases.acquire(lease_store, back, seconds=30)
    assert taken.instance == "new" and taken.pid == 2


def test_a_host_claims_only_the_jobs_of_its_participants(lease_store: Any) -> None:
    from datetime import UTC, datetime

    from controller.store import jobs

    now = datetime(2026, 12, 2, 20, 0, tzinfo=UTC)
    for who in ("alpha-agent", "beta-agent"):
        jobs.enqueue(lease_store, who, "review", 1, now)
    mine = frozenset({"alpha-agent"})
    taken = jobs.claim(lease_store, "alpha:1", now, lease=60, participants=mine)
    assert [j.participant for j in taken] == ["alpha-agent"]
    assert jobs.claim(lease_store, "alpha:1", now, lease=60, participants=mine) == []
    # beta's job waits for beta, its attempts untouched, and beta takes it.
    (waiting,) = [j for j in jobs.jobs(lease_store) if j.participant == "beta-agent"]
    assert waiting.state == jobs.JobState.QUEUED and waiting.failures == 0
    later = jobs.claim(lease_store, "beta:1", now, lease=60, participants=frozenset({"beta-agent"}))
    assert [j.participant for j in later] == ["beta-agent"]


def test_restart_and_attach_on_the_wrong_host_name_the_host(clones: dict[str, Repo]) -> None:
    beta = clones["beta"]
    done = beta.ctl("restart", "a", "--reason", "stuck", "--host", "beta")
    assert done.returncode == 1
    assert "lane a runs on host alpha: ssh alpha, then controller restart a" in done.stderr
    done = beta.ctl("attach", "c", "--host", "beta")
    assert done.returncode == 1 and "lane c is Unscheduled" in done.stderr


def test_a_daemon_paused_past_its_lease_stops_and_takes_it_again(clones: dict[str, Repo]) -> None:
    alpha, beta = clones["alpha"], clones["beta"]
    daemon = _daemon(alpha, "alpha")
    try:
        wait_until(lambda: "host lease taken" in _log(alpha, "alpha"), timeout=60)
        wait_until(lambda: alpha.worktrees() == [str(alpha.root / "a")], timeout=60)
        daemon.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: _conditions(_status(beta, "beta"), "a") == ["HostLost"], timeout=30)
        finally:
            daemon.send_signal(signal.SIGCONT)
        lapsed = "host lease lapsed and was taken again"
        wait_until(lambda: lapsed in _log(alpha, "alpha"), timeout=60)
        wait_until(lambda: _conditions(_status(beta, "beta"), "a") == [], timeout=30)
        assert alpha.worktrees() == [str(alpha.root / "a")]
    finally:
        _stop(daemon)


def test_jobs_of_a_lost_hosts_participant_wait_as_host_lost(
    clones: dict[str, Repo], postgres_url: str
) -> None:
    from datetime import UTC, datetime

    from controller.store import jobs, leases, queries

    beta = clones["beta"]
    store = queries.Store.open(postgres_url, _status(beta, "beta")["workspace"])
    try:
        leases.acquire(store, leases.Holder("alpha", "gone", 1, "m", "1", {}), seconds=0.2)
        jobs.enqueue(store, "worker", "review", 1, datetime.now(UTC))

        def waiting() -> list[Any]:
            done = beta.ctl("triggers", "--host", "beta", "-o", "json")
            return [j.get("waiting") for j in json.loads(done.stdout)]

        wait_until(lambda: waiting() == [{"reason": "host_lost", "host": "alpha"}], timeout=30)
        text = beta.ctl("triggers", "--host", "beta").stdout
        assert "queued  attempts 0" in text and "waiting: host_lost (host alpha)" in text
        leases.acquire(store, leases.Holder("alpha", "back", 2, "m", "1", {}), seconds=30)
        assert waiting() == [None]  # alpha is back: its controller delivers it
    finally:
        store.close()


def test_a_daemon_is_ready_only_while_it_holds_its_host_lease(
    clones: dict[str, Repo], postgres_url: str
) -> None:
    from controller.store import leases, queries
    from tests.integration.test_server import get, samples

    alpha = clones["alpha"]
    path = alpha.path / ".lanes" / "controller.sock"
    daemon = _daemon(alpha, "alpha")
    try:
        wait_until(lambda: "host lease taken" in _log(alpha, "alpha"), timeout=60)
        wait_until(lambda: get(path, "/readyz")[0] == 200, timeout=60)
        hosts_by_state = {
            k: v for k, v in samples(get(path, "/metrics")[1]).items() if "lanes_hosts{" in k
        }
        assert hosts_by_state['lanes_hosts{state="live"}'] >= 1
        daemon.send_signal(signal.SIGSTOP)
        store = queries.Store.open(postgres_url, _status(clones["beta"], "beta")["workspace"])
        try:  # its lease lapses while it is paused, and another holder takes the name
            wait_until(lambda: _conditions(_status(clones["beta"], "beta"), "a") == ["HostLost"])
            leases.acquire(store, leases.Holder("alpha", "other", 1, "m", "1", {}), seconds=30)
        finally:
            daemon.send_signal(signal.SIGCONT)
        code, body = get(path, "/readyz")
        wait_until(lambda: get(path, "/readyz")[0] == 503, timeout=30)
        assert "host lease of alpha not held" in get(path, "/readyz")[1], (code, body)
        store.close()
    finally:
        _stop(daemon)


def test_logs_on_the_wrong_host_names_the_host(clones: dict[str, Repo]) -> None:
    alpha, beta = clones["alpha"], clones["beta"]
    # Before any pass (desired state gives lane a to alpha) and after (alpha's record says so).
    for _ in range(2):
        done = beta.ctl("logs", "a", "--host", "beta")
        assert done.returncode == 1 and done.stdout == ""
        assert "lane a runs on host alpha: ssh alpha, then controller logs a" in done.stderr
        done = beta.ctl("logs", "a", "worker", "--host", "beta", "-o", "json")
        assert done.returncode == 1 and done.stdout == ""
        assert "ssh alpha, then controller logs a worker" in done.stderr
        assert alpha.ctl("--once", "--host", "alpha").returncode == 0
    done = beta.ctl("logs", "c", "--host", "beta")
    assert done.returncode == 1 and "lane c is Unscheduled" in done.stderr
    # On its own host the command shows the agent's output as before (its log file).
    done = alpha.ctl("logs", "a", "--host", "alpha")
    assert done.returncode == 0, done.stderr


def _hosts(clone: Repo, host: str) -> dict[str, Any]:
    done = clone.ctl("hosts", "--host", host, "-o", "json")
    assert done.returncode == 0, done.stderr
    view: dict[str, Any] = json.loads(done.stdout)
    return view


def test_hosts_lists_them_and_forgets_only_a_host_gone_for_good(
    clones: dict[str, Repo], postgres_url: str
) -> None:
    from datetime import UTC, datetime

    from controller.core import world
    from controller.core.phases import Phase
    from controller.store import leases, queries

    alpha, beta = clones["alpha"], clones["beta"]
    assert alpha.ctl("--once", "--host", "alpha").returncode == 0
    view = _hosts(beta, "beta")
    assert view["host"] == "beta"
    listed = {h["name"]: (h["state"], h["declared"], h["lanes"]) for h in view["hosts"]}
    assert listed == {
        "alpha": ("stopped", True, ["a"]),
        "beta": ("unknown", True, ["b"]),
    }
    # A third machine that once held a lease, then went away for good.
    store = queries.Store.open(postgres_url, _status(beta, "beta")["workspace"])
    try:
        gamma = leases.Holder("gamma", "old", 4242, "m3", "1", {})
        leases.acquire(store, gamma, seconds=600)
        text = beta.ctl("hosts", "--host", "beta").stdout
        assert "host gamma (not declared): live, pid 4242 on m3, lease until " in text
        assert "host beta (this host): unknown; lanes: b" in text

        def forget(name: str) -> subprocess.CompletedProcess[str]:
            return beta.ctl("hosts", "forget", name, "--reason", "disk died", "--host", "beta")

        refused = {
            "delta": "host delta holds no lease row: nothing to forget",
            "Alpha": "host Alpha is still declared in the Workspace's hosts (",
            "gamma": "host gamma is live (pid 4242 on m3, lease expires in ",
        }
        for name, message in refused.items():
            done = forget(name)
            assert done.returncode == 1 and message in done.stderr, (name, done.stderr)
        # Expired, but a lane is still recorded on its disk: nobody else may touch it.
        leases.acquire(store, gamma, seconds=0.1)
        wait_until(lambda: leases.read(store).state("gamma") == hosts.HostState.LOST)
        store.host = "gamma"
        record = world.LaneRecord("old", Phase.RUNNING, "/elsewhere/old", "lane/old")
        store.put_lane(record, datetime.now(UTC))
        done = forget("gamma")
        assert done.returncode == 1 and "host gamma still holds lane old: " in done.stderr
        assert "gamma" in {h["name"] for h in _hosts(beta, "beta")["hosts"]}
        store.delete_lane("old")  # as gamma itself would, once back, remove it
        done = forget("GAMMA")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "forgot host gamma\n"
    finally:
        store.close()
    assert {h["name"] for h in _hosts(beta, "beta")["hosts"]} == {"alpha", "beta"}
    assert {h["name"] for h in _status(alpha, "alpha")["hosts"]} == {"alpha", "beta"}
    done = beta.ctl("events", "--host", "beta", "-o", "json", "--kind", "HostForgotten")
    (event,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert event["reason"] == "disk died" and event["data"]["host"] == "gamma"
    # alpha's lease row (alpha is declared, and stopped) is left as it was.
    assert [h["state"] for h in _hosts(beta, "beta")["hosts"]] == ["stopped", "unknown"]


def test_hosts_needs_a_workspace_with_hosts(repo: Repo) -> None:
    repo.lanes("a")
    for argv in (("hosts",), ("hosts", "forget", "x", "--reason", "r")):
        done = repo.ctl(*argv)
        assert done.returncode == 1 and "the Workspace declares no hosts" in done.stderr


def test_a_lease_row_is_forgotten_only_when_expired_and_unused(lease_store: Any) -> None:
    from datetime import UTC, datetime

    from controller.core import world
    from controller.core.phases import Phase
    from controller.store import events, leases

    def forget() -> bool:
        at = datetime.now(UTC)
        event = events.Event("HostForgotten", "r", at, "c")
        return leases.forget(lease_store, "gamma", event=event) is not None

    gamma = leases.Holder("gamma", "one", 1, "m", "1", {})
    leases.acquire(lease_store, gamma, seconds=600)
    assert not forget()  # live
    lease_store.host = "Gamma"  # names compare case-insensitively
    record = world.LaneRecord("x", Phase.RUNNING, "/x", "lane/x")
    lease_store.put_lane(record, datetime.now(UTC))
    leases.release(lease_store, gamma)
    assert not forget()  # stopped, but a lane is still recorded on it
    lease_store.delete_lane("x")
    assert forget()
    assert leases.read(lease_store).items == ()
    assert [e.kind for e in lease_store.read_events()] == ["HostForgotten"]
    assert not forget()  # nothing left to forget


def test_a_host_gone_with_its_disk_is_forgotten_with_its_lanes(lease_store: Any) -> None:
    """With ``drop_lanes`` the host's lane and agent records (and lane memory) go with its
    lease row, each lane logged; another host's records and memory stay as they were."""
    from datetime import UTC, datetime

    from controller.core import memory, world
    from controller.core.phases import Phase
    from controller.store import events, leases

    at = datetime.now(UTC)

    def put(host: str, lane: str) -> None:
        lease_store.host = host
        lease_store.put_lane(world.LaneRecord(lane, Phase.RUNNING, f"/{lane}", f"lane/{lane}"), at)
        agent = world.AgentRecord(
            f"{lane}-w", lane, "w", "tmux", world.AgentState.RUNNING, "h", pid=7
        )
        lease_store.put_agent(agent, at)

    put("Gamma", "old")
    put("gamma", "older")
    put("alpha", "kept")
    failed = memory.LaneMemory(failures=2, last_error="boom")
    lease_store.put_memories({"old": failed, "kept": failed})
    gamma = leases.Holder("gamma", "one", 1, "m", "1", {})
    leases.acquire(lease_store, gamma, seconds=600)
    event = events.Event("HostForgotten", "disk died", at, "c1", data={"host": "gamma"})
    assert leases.forget(lease_store, "gamma", event=event, drop_lanes=True) is None  # live
    leases.release(lease_store, gamma)
    assert leases.forget(lease_store, "gamma", event=event) is None  # records, no drop_lanes
    gone = leases.forget(lease_store, "gamma", event=event, drop_lanes=True)
    assert gone == leases.Forgotten("gamma", ("old", "older"), ("old-w", "older-w"))
    assert set(lease_store.lane_records()) == {"kept"}
    assert set(lease_store.agent_records()) == {"kept-w"}
    assert set(lease_store.memories()) == {"kept"}
    assert leases.read(lease_store).items == ()
    written = [(e.kind, e.reason, e.lane, dict(e.data)) for e in lease_store.read_events()]
    assert written == [
        (
            "HostForgotten",
            "disk died",
            None,
            {"host": "gamma", "lanes": ["old", "older"], "agents": ["old-w", "older-w"]},
        ),
        (
            "LaneForgotten",
            "host_forgotten",
            "old",
            {"host": "gamma", "path": "/old", "branch": "lane/old", "agents": ["w"]},
        ),
        (
            "LaneForgotten",
            "host_forgotten",
            "older",
            {"host": "gamma", "path": "/older", "branch": "lane/older", "agents": ["w"]},
        ),
    ]


def test_a_dead_hosts_lane_moves_once_it_is_forgotten_with_its_lanes(
    clones: dict[str, Repo],
) -> None:
    """alpha's machine is gone for good: desired/ gives its lane to beta, `hosts forget
    --drop-lanes` lets its records go, and beta creates the lane; alpha's disk is untouched."""
    alpha, beta = clones["alpha"], clones["beta"]
    assert alpha.ctl("--once", "--host", "alpha").returncode == 0
    wait_until(lambda: _agent_pid(beta) is not None, timeout=60)
    pid = _agent_pid(beta)
    (alpha.root / "a" / "work.txt").write_text("unsaved\n")
    workspace = (beta.desired / "workspace.yaml").read_text()
    moved = workspace.split("  hosts:\n")[0] + "  hosts:\n    - name: beta\n      lanes: [a, b]\n"
    beta.write("workspace.yaml", moved)
    assert beta.ctl("--once", "--host", "beta").returncode == 0
    assert beta.worktrees() == [str(beta.root / "b")]  # a is still on alpha's records
    assert _conditions(_status(beta, "beta"), "a") == ["OnAnotherHost"]

    def forget(*more: str) -> subprocess.CompletedProcess[str]:
        return beta.ctl(
            "hosts", "forget", "alpha", "--reason", "disk died", "--host", "beta", *more
        )

    refused = forget()
    assert refused.returncode == 1
    assert "host alpha still holds lane a, agent worker (lane a): " in refused.stderr
    assert "add --drop-lanes to forget their records too" in refused.stderr
    done = forget("--drop-lanes", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "host": "alpha",
        "forgotten": True,
        "droppedLanes": ["a"],
        "droppedAgents": ["a-worker"],
    }
    assert beta.ctl("--once", "--host", "beta").returncode == 0
    assert beta.worktrees() == [str(beta.root / "a"), str(beta.root / "b")]
    view = _status(beta, "beta")
    assert [h["name"] for h in view["hosts"]] == ["beta"]
    assert {x["name"]: x["host"] for x in view["lanes"]} == {"a": "beta", "b": "beta", "c": None}
    assert _conditions(view, "a") == []
    # Nothing on alpha's disk was touched: its worktree, its unsaved file and its agent.
    assert alpha.worktrees() == [str(alpha.root / "a")]
    assert (alpha.root / "a" / "work.txt").read_text() == "unsaved\n"
    assert pid is not None and psutil.pid_exists(pid)
    logged = beta.ctl("events", "--host", "beta", "-o", "json", "--kind", "LaneForgotten")
    (event,) = [json.loads(line) for line in logged.stdout.splitlines()]
    assert (event["lane"], event["reason"]) == ("a", "host_forgotten")
    assert event["data"]["path"] == str(alpha.root / "a")
    # Should the machine come back after all, its controller owns none of it: the worktree is
    # left alone (its process, unrecorded now, is stopped as any stray one is).
    again = alpha.ctl("--once", "--host", "alpha")
    assert again.returncode == 0, again.stderr
    assert "is in the worktree root but not in the controller's inventory" in again.stdout
    assert alpha.worktrees() == [str(alpha.root / "a")]
    assert (alpha.root / "a" / "work.txt").read_text() == "unsaved\n"
