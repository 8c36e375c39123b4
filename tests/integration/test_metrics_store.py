"""The store reads behind the metrics, on real SQLite and real PostgreSQL: the time of the
newest unread message (wake latency), the queue by state with its oldest job (one statement),
and usage summed by model."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from controller.core.workflows import model
from controller.store import jobs, messaging, queries, runs, tables

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[queries.Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    s = queries.Store.open(url, f"ws-{uuid.uuid4().hex[:8]}")
    yield s
    s.close()


def test_unread_carries_the_newest_unread_message_time(store: queries.Store) -> None:
    messaging.post(store, "review", "human", "one", NOW)
    messaging.post(store, "review", "human", "two", NOW + timedelta(seconds=3))
    messaging.post(store, "review", "bot", "mine", NOW + timedelta(seconds=9))  # not counted
    (u,) = messaging.unread(store, [("bot", "review")])
    assert (u.count, u.last_seq, u.last_at) == (2, 2, NOW + timedelta(seconds=3))


def test_queue_gives_depth_and_oldest_job_by_state(store: queries.Store) -> None:
    assert jobs.queue(store) == {}
    jobs.enqueue(store, "a", "t", 1, NOW)
    jobs.enqueue(store, "b", "t", 1, NOW + timedelta(seconds=5))
    jobs.enqueue(store, "c", "t", 1, NOW + timedelta(seconds=9))
    jobs.enqueue(store, "a", "t", 2, NOW + timedelta(seconds=20))  # folds into a's job
    (claimed,) = jobs.claim(store, "w", NOW + timedelta(seconds=30), lease=60, limit=1)
    assert claimed.participant == "a"
    found = jobs.queue(store)
    assert found == {
        "queued": (2, NOW + timedelta(seconds=5)),
        "running": (1, NOW),
    }
    assert {state: n for state, (n, _) in found.items()} == jobs.counts(store)


def test_usage_by_model_sums_every_record(store: queries.Store) -> None:
    assert runs.usage_by_model(store) == {}
    rows = [("sonnet", 100, 10, 5, 1, 0.5), ("sonnet", 1, 2, 3, 4, 0.25)]
    rows += [("haiku", 7, 0, 0, 0, 0.0)]
    with store.engine.begin() as conn:
        for n, (name, i, o, r, w, cost) in enumerate(rows):
            conn.execute(
                sa.insert(tables.usage_records).values(
                    workspace=store.workspace,
                    run="r",
                    task=f"t{n}",
                    attempt=1,
                    model=name,
                    source="agent",
                    input_tokens=i,
                    output_tokens=o,
                    cache_read_tokens=r,
                    cache_write_tokens=w,
                    cost_usd=cost,
                    catalog_cost_usd=cost,
                    at=NOW,
                )
            )
    assert runs.usage_by_model(store) == {
        "sonnet": (model.Usage(101, 12, 8, 5), 0.75),
        "haiku": (model.Usage(7, 0, 0, 0), 0.0),
    }
