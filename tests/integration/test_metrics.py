"""The metric families of DESIGN §11 that need more than a status object, through a real
``controller run``, a real tmux agent and real HTTP: the wake latency histogram after a delivered
wake, the queue's oldest age beside its depth, and tokens and cost by model against
``controller usage``."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from controller.store import queries, tables
from tests.conftest import Repo, wait_until
from tests.integration.test_server import answering, daemon, get, samples, status
from tests.integration.test_wakes import lines, setup

CATALOG = """\
apiVersion: lanes/v1
kind: ModelCatalog
metadata: {name: models}
spec:
  models:
    - {name: sonnet, contextWindow: 200000, inputPerMTok: 3, outputPerMTok: 15,
       aliases: [claude-sonnet-4-5]}
    - {name: haiku, contextWindow: 200000, inputPerMTok: 1, outputPerMTok: 5}
"""


def metrics(path: Path) -> dict[str, float]:
    code, text = get(path, "/metrics")
    assert code == 200, text
    return samples(text)


def test_a_delivered_wake_moves_the_latency_histogram_and_a_deferred_one_ages_in_the_queue(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    # One delivery per hour: the first post is delivered, the second waits in the queue.
    policy = "rateLimits: {perParticipant: {count: 1, per: 1h}}"
    record = setup(repo, tmux_socket, tmp_path, policy=policy)
    path = repo.path / ".lanes" / "controller.sock"
    with daemon(repo, log=tmp_path / "daemon.log"):
        wait_until(lambda: answering(path) and get(path, "/readyz")[0] == 200)
        before = metrics(path)
        assert before["lanes_wake_latency_seconds_count"] == 0
        assert before['lanes_trigger_queue_oldest_age_seconds{state="queued"}'] == 0
        assert before['lanes_trigger_queue_oldest_age_seconds{state="running"}'] == 0

        posted = time.monotonic()
        assert repo.ctl("post", "review", "--as", "human", "first").returncode == 0
        wait_until(lambda: metrics(path)["lanes_wake_latency_seconds_count"] == 1)
        elapsed = time.monotonic() - posted
        after = metrics(path)
        delivered = 'lanes_wakes_total{reason="delivered",result="delivered"}'
        assert after[delivered] == before.get(delivered, 0) + 1
        assert 0 < after["lanes_wake_latency_seconds_sum"] <= elapsed
        assert after['lanes_wake_latency_seconds_bucket{le="+Inf"}'] == 1
        wait_until(lambda: len(lines(record)) == 1)

        assert repo.ctl("post", "review", "--as", "human", "second").returncode == 0
        queued = 'lanes_trigger_queue_depth{state="queued"}'
        wait_until(lambda: metrics(path)[queued] == 1)

        def agree() -> bool:
            """The scrape and `status` are two looks: the wake loop may hold the job (running)
            during one of them; they agree once it is back in the queue."""
            found = metrics(path)
            depth = {k: v for k, v in found.items() if k.startswith("lanes_trigger_queue_d") and v}
            return depth == {
                f'lanes_trigger_queue_depth{{state="{s}"}}': float(n)
                for s, n in status(repo)["triggers"].items()
                if n
            }

        wait_until(agree)
        wait_until(lambda: metrics(path)[queued] == 1)
        age = 'lanes_trigger_queue_oldest_age_seconds{state="queued"}'
        first = metrics(path)[age]
        assert first > 0
        wait_until(lambda: metrics(path)[age] > first)  # it ages while it waits
        assert metrics(path)[age] <= time.monotonic() - posted
        created = queued_since(repo)  # the store's word: the scrape's age lies between two looks
        low = (datetime.now(UTC) - created).total_seconds()
        scraped = metrics(path)[age]
        assert low <= scraped <= (datetime.now(UTC) - created).total_seconds()
        assert metrics(path)["lanes_wake_latency_seconds_count"] == 1  # deferred: no latency
    assert len(lines(record)) == 1


def test_tokens_and_cost_by_model_sum_what_usage_shows(repo: Repo, tmp_path: Path) -> None:
    repo.write("workspace.yaml", "apiVersion: lanes/v1\nkind: Workspace\nmetadata: {name: test}\n")
    repo.lanes("a")
    repo.write("models.yaml", CATALOG)
    path = repo.path / ".lanes" / "controller.sock"
    with daemon(repo, log=tmp_path / "daemon.log"):
        wait_until(lambda: answering(path) and get(path, "/readyz")[0] == 200)
        zero = metrics(path)
        for model in ("haiku", "sonnet"):  # every declared model, used or not
            assert zero[f'lanes_cost_usd_total{{model="{model}"}}'] == 0
            assert zero[f'lanes_tokens_total{{kind="input",model="{model}"}}'] == 0
        # Usage as task agents record it: by a name, an alias, and a model no catalog declares.
        used = [("sonnet", 100, 10, 5, 0.5), ("claude-sonnet-4-5", 200, 20, 0, 1.25)]
        used += [("mystery-model", 7, 3, 1, 0.01)]
        store = queries.Store.open(f"sqlite:///{repo.path / '.lanes' / 'state.db'}", "test")
        try:
            with store.engine.begin() as conn:
                for n, (model, i, o, r, cost) in enumerate(used):
                    conn.execute(
                        sa.insert(tables.usage_records).values(**_row(n, model, i, o, r, cost))
                    )
        finally:
            store.close()
        shown = json.loads(repo.ctl("usage", "-o", "json").stdout)["models"]
        by_name = {m["model"]: m for m in shown}
        found = metrics(path)

    def tokens(model: str, kind: str) -> float:
        return found[f'lanes_tokens_total{{kind="{kind}",model="{model}"}}']

    sonnet = [by_name["sonnet"], by_name["claude-sonnet-4-5"]]
    assert tokens("sonnet", "input") == sum(m["inputTokens"] for m in sonnet) == 300
    assert tokens("sonnet", "output") == sum(m["outputTokens"] for m in sonnet) == 30
    assert tokens("sonnet", "cache_read") == 5
    assert found['lanes_cost_usd_total{model="sonnet"}'] == sum(m["costUsd"] for m in sonnet)
    assert tokens("other", "input") == by_name["mystery-model"]["inputTokens"] == 7
    assert found['lanes_cost_usd_total{model="other"}'] == by_name["mystery-model"]["costUsd"]
    assert tokens("haiku", "output") == 0
    assert not [k for k in found if "mystery" in k]  # an undeclared name never becomes a label


def queued_since(repo: Repo) -> datetime:
    """When the one queued trigger job was created, read from the store."""
    store = queries.Store.open(f"sqlite:///{repo.path / '.lanes' / 'state.db'}", "test")
    try:
        jobs = tables.trigger_jobs
        query = sa.select(jobs.c.created_at).where(jobs.c.state == "queued")
        with store.engine.connect() as conn:
            (created,) = conn.execute(query).scalars().all()
    finally:
        store.close()
    assert isinstance(created, datetime)
    return created


def _row(n: int, model: str, i: int, o: int, r: int, cost: float) -> dict[str, object]:
    return {
        "workspace": "test",
        "run": "r",
        "task": f"t{n}",
        "attempt": 1,
        "model": model,
        "source": "manual",
        "input_tokens": i,
        "output_tokens": o,
        "cache_read_tokens": r,
        "cache_write_tokens": 0,
        "cost_usd": cost,
        "catalog_cost_usd": cost,
        "reported_cost_usd": None,
        "at": datetime.now(UTC),
    }
