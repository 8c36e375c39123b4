"""Many hosts: another host's due job is not this host's work (found by bench/cross_host_wakes.py).

A job queued for a participant of another host's lane was counted as this host's next due
job: its daemon's wake loop then ran a wake step every poll (4 a second), each enqueueing the
job again, for as long as it waited (until the owner claimed it, or while the owner was lost).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from controller.store import jobs, messaging, queries, tables
from tests.conftest import Repo, wait_until
from tests.integration.test_hosts import _status, clones  # noqa: F401 (the fixture)

RUN = (sys.executable, "-m", "controller", "run")
THREAD = """apiVersion: lanes/v1
kind: Thread
metadata:
  name: review
spec:
  participants: [worker, human]
---
apiVersion: lanes/v1
kind: TriggerPolicy
metadata:
  name: default
spec:
  collision: {quietSeconds: 0}
"""


def test_next_due_counts_only_the_given_participants(tmp_path: Path) -> None:
    store = queries.Store.open(f"sqlite:///{tmp_path / 'state.db'}", "w")
    try:
        now = datetime(2026, 12, 2, 20, 0, tzinfo=UTC)
        jobs.enqueue(store, "alpha-agent", "review", 1, now)
        jobs.enqueue(store, "beta-agent", "review", 1, now + timedelta(seconds=5))
        assert jobs.next_due(store) == now
        assert jobs.next_due(store, frozenset({"beta-agent"})) == now + timedelta(seconds=5)
        assert jobs.next_due(store, frozenset({"gamma-agent"})) is None
        assert jobs.next_due(store, frozenset()) is None
    finally:
        store.close()


def _updated(store: queries.Store) -> list[datetime]:
    """When each job was last written (an enqueue of a queued job rewrites it)."""
    j = tables.trigger_jobs
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(j.c.updated_at).order_by(j.c.id)).scalars())


def _events(log: Path) -> list[str]:
    found = []
    for line in log.read_text().splitlines():
        try:
            found.append(str(json.loads(line).get("event")))
        except ValueError:
            continue
    return found


def test_a_job_waiting_for_another_host_does_not_spin_this_hosts_wake_loop(
    clones: dict[str, Repo],  # noqa: F811
    postgres_url: str,
) -> None:
    beta = clones["beta"]
    beta.write("threads.yaml", THREAD)
    store = queries.Store.open(postgres_url, _status(beta, "beta")["workspace"])
    log = beta.path.parent / "daemon-beta.json"
    try:
        # Alpha's participant has news, and alpha never runs: its wake waits for alpha.
        messaging.post(store, "review", "human", "for alpha's worker", datetime.now(UTC))
        with log.open("wb") as out:
            daemon = subprocess.Popen(
                [*RUN, "--host", "beta", "--resync", "60", "-o", "json"],
                cwd=beta.path,
                env=beta.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(lambda: {"pass", "listening for posts"} <= set(_events(log)), timeout=60)
            wait_until(lambda: len(jobs.jobs(store)) == 1, timeout=30)  # beta may enqueue it
            before = _updated(store)
            time.sleep(2)  # a wake step per poll (4 a second) would enqueue it again and again
            (job,) = jobs.jobs(store)
            assert job.state == jobs.JobState.QUEUED and job.failures == 0
            assert _updated(store) == before, _events(log)
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=60)
        assert daemon.returncode == 0, log.read_text()[-2000:]
    finally:
        store.close()
