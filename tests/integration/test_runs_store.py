"""Workflow runs in the store, on real SQLite and real PostgreSQL: creation once, dispatch with
an atomic budget reservation, usage increments that are never counted twice, settlement once.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.core.workflows import model, naming
from controller.store import queries, runs

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    pg: str = request.getfixturevalue("postgres_url")
    return pg


@pytest.fixture
def store(url: str) -> Iterator[queries.Store]:
    s = queries.Store.open(url, f"ws-{uuid.uuid4().hex[:8]}")
    yield s
    s.close()


def snapshot(n: int = 2, *, max_cost: float | None = 1.0) -> model.RunSnapshot:
    tasks = tuple(model.TaskSpec(f"t{i}", "m", ("x",)) for i in range(n))
    return model.RunSnapshot(
        workflow="w",
        template_hash="h",
        tasks=tasks,
        models={"m": model.ModelSpec("m", 1000, 100, 1.0, 2.0)},
        budget=model.BudgetSpec(max_cost_usd=max_cost, max_tokens=None),
    )


def create(store: queries.Store, name: str = "r", n: int = 2, **kw: float | None) -> None:
    snap = snapshot(n, **kw)
    lanes = {
        t.name: (naming.lane_name(name, t.name), naming.branch(name, t.name)) for t in snap.tasks
    }
    record = model.RunRecord(name=name, workflow="w", snapshot=snap, created_at=NOW)
    assert runs.create(store, record, source="submit", lanes=lanes, now=NOW)


def dispatch(store: queries.Store, task: str, usd: float, run: str = "r") -> bool:
    d = runs.Dispatch(run, task, 1, usd, 10, naming.session_id("ws", run, task, 1), None)
    return runs.dispatch(store, d, NOW)


def test_a_run_is_created_once_with_pending_tasks(store: queries.Store) -> None:
    create(store)
    again = model.RunRecord(name="r", workflow="w", snapshot=snapshot(), created_at=NOW)
    assert not runs.create(store, again, source="document", lanes={}, now=NOW)
    row = runs.get(store, "r")
    assert row is not None and row.record.snapshot == snapshot() and row.source == "submit"
    found = runs.tasks(store, run="r")
    assert {k: v.record.phase for k, v in found.items()} == {
        ("r", "t0"): model.TaskPhase.PENDING,
        ("r", "t1"): model.TaskPhase.PENDING,
    }
    assert found[("r", "t0")].lane == "r--t0" and found[("r", "t0")].branch == "runs/r/t0"


def test_dispatch_reserves_and_refuses_what_does_not_fit(store: queries.Store) -> None:
    create(store, n=3)
    assert dispatch(store, "t0", 0.6)
    assert not dispatch(store, "t1", 0.5)  # 0.6 + 0.5 > 1.0
    assert dispatch(store, "t1", 0.4)  # exactly what is left fits
    row = runs.get(store, "r")
    assert row is not None and row.record.reserved_usd == pytest.approx(1.0)
    t0 = runs.tasks(store, run="r")[("r", "t0")].record
    assert t0.phase == model.TaskPhase.RUNNING and t0.attempt == 1 and t0.reserved_usd == 0.6


def test_usage_counts_once_and_settlement_releases_once(store: queries.Store) -> None:
    create(store)
    assert dispatch(store, "t0", 0.5)
    inc = runs.Increment(
        "r",
        "t0",
        1,
        "m",
        model.Usage(100, 20),
        cost_usd=0.14,
        catalog_cost_usd=0.14,
        from_offset=0,
        log_offset=120,
        progress={"k": 1},
    )
    assert runs.add_usage(store, inc, NOW)
    assert not runs.add_usage(store, inc, NOW)  # the same increment again: offset moved on
    ending = runs.Ending(
        "r", "t0", model.TaskPhase.SUCCEEDED, head_commit="abc", final_message="ok"
    )
    assert runs.end_attempt(store, ending, NOW + timedelta(seconds=1))
    assert not runs.end_attempt(store, ending, NOW + timedelta(seconds=2))
    row = runs.get(store, "r")
    assert row is not None
    assert row.record.spent_usd == pytest.approx(0.14) and row.record.spent_tokens == 120
    assert row.record.reserved_usd == pytest.approx(0.0)
    t0 = runs.tasks(store, run="r")[("r", "t0")]
    assert t0.record.usage == model.Usage(100, 20) and t0.log_offset == 120
    assert t0.record.phase == model.TaskPhase.SUCCEEDED and t0.record.head_commit == "abc"
    assert [u.usage.tokens for u in runs.usage(store, run="r")] == [120]


def test_abort_finish_and_reopen(store: queries.Store) -> None:
    create(store)
    assert runs.request_abort(store, "r", "enough", NOW)
    assert not runs.request_abort(store, "nope", "enough", NOW)
    assert runs.finish(store, "r", model.RunPhase.ABORTED, model.RunReason.USER_ABORT, "", NOW)
    assert not runs.finish(store, "r", model.RunPhase.FAILED, model.RunReason.DEADLOCK, "", NOW)
    assert not runs.request_abort(store, "r", "again", NOW)  # already ended
    runs.reopen(store, "r", NOW)
    row = runs.get(store, "r")
    assert row is not None and row.record.phase == model.RunPhase.RUNNING
    assert row.record.abort_reason is None


def _reserve_worker(
    url: str, workspace: str, worker: int, out: multiprocessing.Queue[list[str]]
) -> None:
    s = queries.Store.open(url, workspace)
    won = []
    try:
        for i in range(40):
            task = f"t{worker * 40 + i}"
            d = runs.Dispatch("r", task, 1, 0.07, 10, "s", None)
            if runs.dispatch(s, d, NOW):
                won.append(task)
    finally:
        s.close()
        out.put(won)


def test_eight_processes_racing_for_one_budget_never_overshoot(url: str) -> None:
    workspace = f"ws-{uuid.uuid4().hex[:8]}"
    s = queries.Store.open(url, workspace)
    try:
        create(s, n=320, max_cost=5.0)
        ctx = multiprocessing.get_context("spawn")
        out: multiprocessing.Queue[list[str]] = ctx.Queue()
        procs = [
            ctx.Process(target=_reserve_worker, args=(url, workspace, w, out)) for w in range(8)
        ]
        for p in procs:
            p.start()
        won = [t for _ in procs for t in out.get(timeout=240)]
        for p in procs:
            p.join(timeout=60)
        row = runs.get(s, "r")
        assert row is not None
        assert len(won) == 71  # floor(5.0 / 0.07): every dollar used, none overshot
        assert row.record.reserved_usd == pytest.approx(0.07 * 71)
        assert row.record.reserved_usd <= 5.0 + 1e-9
        running = [t for t in runs.tasks(s, run="r").values() if t.record.phase == "running"]
        assert sorted(t.record.name for t in running) == sorted(won)
    finally:
        s.close()
