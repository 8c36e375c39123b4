"""Messaging and the trigger queue on real SQLite and real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.store import jobs, messaging, queries

pytestmark = pytest.mark.integration

State = jobs.JobState
Verdict = jobs.Verdict
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[queries.Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    s = queries.Store.open(url, f"ws-{uuid.uuid4().hex[:8]}")
    yield s
    s.close()


def test_post_read_and_unread(store: queries.Store) -> None:
    assert messaging.post(store, "review", "human", "please look", NOW) == 1
    assert messaging.post(store, "review", "claude-1", "on it", NOW) == 2
    assert messaging.post(store, "review", "human", "thanks", NOW) == 3
    (u,) = messaging.unread(store, [("claude-1", "review")])
    assert (u.count, u.last_seq, u.sender, u.woken) == (2, 3, "human", 0)
    got = messaging.read(store, "review", "claude-1")
    assert [m.body for m in got] == ["please look", "thanks"]  # its own message is not shown
    assert messaging.unread(store, [("claude-1", "review")]) == []
    assert messaging.read(store, "review", "claude-1") == []
    (h,) = messaging.unread(store, [("human", "review")])
    assert (h.count, h.sender) == (1, "claude-1")
    assert messaging.heads(store) == {"review": 3}


def test_woken_is_remembered(store: queries.Store) -> None:
    messaging.post(store, "t", "a", "x", NOW)
    messaging.mark_woken(store, "t", "b", 1)
    (u,) = messaging.unread(store, [("b", "t")])
    assert (u.count, u.woken) == (1, 1)


def test_enqueue_coalesces(store: queries.Store) -> None:
    first = jobs.enqueue(store, "p", "t", 3, NOW)
    again = jobs.enqueue(store, "p", "t", 5, NOW + timedelta(seconds=1))
    older = jobs.enqueue(store, "p", "t", 4, NOW + timedelta(seconds=2))
    assert first.id == again.id == older.id
    assert older.unread_seq == 5 and older.state == "queued"
    assert jobs.counts(store) == {"queued": 1}


def test_claim_lease_settle_and_one_running_per_pair(store: queries.Store) -> None:
    job = jobs.enqueue(store, "p", "t", 1, NOW)
    (claimed,) = jobs.claim(store, "w1", NOW, lease=30)
    assert claimed.id == job.id and claimed.state == "running" and claimed.lease_owner == "w1"
    assert jobs.claim(store, "w2", NOW, lease=30) == []
    newer = jobs.enqueue(store, "p", "t", 2, NOW)  # a second job while one runs
    assert newer.id != job.id
    assert jobs.claim(store, "w2", NOW, lease=30) == []  # not while the first runs
    assert jobs.settle(store, claimed, "w1", NOW, state=State.DONE)
    assert not jobs.settle(store, claimed, "w1", NOW, state=State.DONE)  # no longer running
    (second,) = jobs.claim(store, "w2", NOW, lease=30)
    assert second.id == newer.id


def test_expired_lease_is_reclaimed(store: queries.Store) -> None:
    jobs.enqueue(store, "p", "t", 1, NOW)
    (held,) = jobs.claim(store, "dead-worker", NOW, lease=10)
    assert jobs.claim(store, "w2", NOW + timedelta(seconds=5), lease=10) == []
    (again,) = jobs.claim(store, "w2", NOW + timedelta(seconds=11), lease=10)
    assert again.id == held.id and again.prev_owner == "dead-worker"
    assert not jobs.settle(store, held, "dead-worker", NOW, state=State.DONE)  # lost its lease


def test_deferred_job_waits_and_attempts_are_appended(store: queries.Store) -> None:
    job = jobs.enqueue(store, "p", "t", 1, NOW)
    (claimed,) = jobs.claim(store, "w", NOW, lease=30)
    later = NOW + timedelta(seconds=5)
    jobs.record(
        store, claimed, NOW, verdict=Verdict.DEFERRED, reason="collision_deferred", detail=""
    )
    assert jobs.settle(store, claimed, "w", NOW, state=State.QUEUED, due_at=later)
    assert jobs.claim(store, "w", NOW + timedelta(seconds=4), lease=30) == []
    assert [j.id for j in jobs.claim(store, "w", later, lease=30)] == [job.id]
    (history,) = jobs.attempts(store, [job.id]).values()
    assert [a.reason for a in history] == ["collision_deferred"]


def test_release_and_retry(store: queries.Store) -> None:
    jobs.enqueue(store, "p", "t", 1, NOW)
    (claimed,) = jobs.claim(store, "w", NOW, lease=30)
    assert jobs.release(store, "w", NOW) == 1
    (claimed,) = jobs.claim(store, "w", NOW, lease=30)
    assert jobs.settle(store, claimed, "w", NOW, state=State.DEAD, failures=5)
    assert jobs.retry(store, 999999, NOW) is None
    requeued = jobs.retry(store, claimed.id, NOW)
    assert requeued is not None and requeued.state == "queued" and requeued.failures == 0
    assert jobs.counts(store) == {"done": 1, "queued": 1}


def test_deliveries_window(store: queries.Store) -> None:
    job = jobs.enqueue(store, "p", "t", 1, NOW)
    for minutes in (0, 30, 90):
        at = NOW - timedelta(minutes=minutes)
        jobs.record(store, job, at, verdict=Verdict.DELIVERED, reason="delivered", detail="")
    since = NOW - timedelta(hours=1)
    assert len(jobs.deliveries(store, since=since, participant="p")) == 2
    assert len(jobs.deliveries(store, since=since, thread="t")) == 2
    assert jobs.deliveries(store, since=since, participant="other") == []


def test_one_running_wake_per_participant_across_threads(store: queries.Store) -> None:
    jobs.enqueue(store, "p", "t1", 1, NOW)
    jobs.enqueue(store, "p", "t2", 1, NOW)
    jobs.enqueue(store, "q", "t1", 1, NOW)
    first = jobs.claim(store, "w", NOW, lease=30)
    assert sorted(j.participant for j in first) == ["p", "q"]  # one per participant
    (p_job,) = [j for j in first if j.participant == "p"]
    assert jobs.claim(store, "w2", NOW, lease=30) == []
    jobs.settle(store, p_job, "w", NOW, state=State.DONE)
    (second,) = jobs.claim(store, "w2", NOW, lease=30)
    assert second.participant == "p" and second.thread != p_job.thread


def test_plain_state_and_verdict_values_are_accepted(store: queries.Store) -> None:
    """Scripts outside the package (bench's workers) pass the values, not the enums."""
    jobs.enqueue(store, "p", "t", 1, NOW)
    (claimed,) = jobs.claim(store, "w", NOW, lease=30)
    jobs.record(store, claimed, NOW, verdict="delivered", reason="delivered", detail="")  # type: ignore[arg-type]
    assert jobs.settle(store, claimed, "w", NOW, state="done")  # type: ignore[arg-type]
    (job,) = jobs.jobs(store)
    assert job.state is State.DONE
    assert jobs.attempts(store, [job.id])[job.id][0].verdict is Verdict.DELIVERED
