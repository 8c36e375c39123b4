"""Concurrent workers on one queue: no job is ever delivered twice; a dead worker's job is
reclaimed when its lease expires. Real processes, real SQLite and PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from controller.store import jobs, queries, tables
from tests.conftest import wait_until

pytestmark = pytest.mark.integration

WORKER = """
import sys, datetime, time
from controller.store import jobs, queries
from controller.store.jobs import JobState as State, Verdict
url, ws, owner = sys.argv[1:4]
store = queries.Store.open(url, ws)
while True:
    now = datetime.datetime.now(datetime.UTC)
    got = jobs.claim(store, owner, now, lease=60, limit=int(sys.argv[4]))
    if sys.argv[5] == "hold" and got:
        time.sleep(3600)  # die holding the lease
    if not got:
        break
    for job in got:
        jobs.record(store, job, now, verdict=Verdict.DELIVERED, reason="delivered", detail=owner)
        jobs.settle(store, job, owner, now, state=State.DONE)
"""


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    pg: str = request.getfixturevalue("postgres_url")
    return pg


def spawn(url: str, ws: str, owner: str, *, limit: int, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen((sys.executable, "-c", WORKER, url, ws, owner, str(limit), mode))


def test_eight_workers_claim_5000_jobs_without_duplicates(url: str) -> None:
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    store = queries.Store.open(url, ws)
    now = datetime.now(UTC) - timedelta(seconds=1)
    rows = [
        {
            "workspace": ws,
            "participant": f"p{i}",
            "thread": "t",
            "state": "queued",
            "due_at": now,
            "unread_seq": 1,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(5000)
    ]
    with store.engine.begin() as conn:
        conn.execute(sa.insert(tables.trigger_jobs), rows)
    workers = [spawn(url, ws, f"w{i}", limit=8, mode="drain") for i in range(8)]
    try:
        for worker in workers:
            assert worker.wait(timeout=600) == 0
    finally:
        for worker in workers:  # never leave a worker behind, even when the test fails
            worker.kill()
            worker.wait()
    a = tables.trigger_attempts
    with store.engine.connect() as conn:
        per_job = conn.execute(
            sa.select(a.c.job_id, sa.func.count()).where(a.c.workspace == ws).group_by(a.c.job_id)
        ).all()
        owners = conn.execute(
            sa.select(sa.func.count(sa.distinct(a.c.detail))).where(a.c.workspace == ws)
        ).scalar_one()
    assert len(per_job) == 5000
    duplicates = [job for job, n in per_job if n != 1]
    assert duplicates == []
    assert owners > 1  # the work really was shared
    assert jobs.counts(store) == {"done": 5000}
    store.close()


def test_a_killed_worker_loses_its_lease(url: str) -> None:
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    store = queries.Store.open(url, ws)
    job = jobs.enqueue(store, "p", "t", 1, datetime.now(UTC) - timedelta(seconds=1))
    holder = spawn(url, ws, "doomed", limit=1, mode="hold")

    def held() -> bool:
        return [j.lease_owner for j in jobs.jobs(store)] == ["doomed"]

    try:
        wait_until(held, timeout=30)
    finally:
        holder.kill()
        holder.wait()
    lease_over = datetime.now(UTC) + timedelta(seconds=61)
    assert jobs.claim(store, "rescuer", datetime.now(UTC), lease=60) == []  # lease still valid
    (again,) = jobs.claim(store, "rescuer", lease_over, lease=60)
    assert again.id == job.id and again.prev_owner == "doomed"
    store.close()
