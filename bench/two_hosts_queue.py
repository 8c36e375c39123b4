"""Benchmark: the trigger queue's throughput with 4 workers on 2 hosts, against 4 on one host,
on PostgreSQL (issue 12).

Run it from the repository root with the project's interpreter, under a PostgreSQL::

    scripts/with-postgres .venv/bin/python bench/two_hosts_queue.py --json /tmp/queue2.json
    scripts/with-postgres .venv/bin/python bench/two_hosts_queue.py --quick  # 1,000 jobs, 1 round

Every ratio printed is between numbers measured in the same run of this script.

What is measured is bench/wakes.py's part (a) on PostgreSQL: N=5000 queued jobs (1,000 with
``--quick``), one per participant ``p0`` to ``p4999``, bulk-inserted into ``trigger_jobs`` of
a fresh database (created for the drain, dropped after it); W worker processes open the store,
say they are ready, and on 'go' each loops ``jobs.claim(limit=8)`` -> ``jobs.record(verdict=
"delivered", detail=OWNER)`` -> ``jobs.settle(state="done")`` until a claim comes back empty.
The drain runs from 'go' to the last worker's final (empty) claim.

A worker is what a daemon's wake step does with the queue, without the agent: with
``Workspace.hosts`` the daemon of host H claims with ``participants=`` the participants bound to
H's lanes (decision 113: ``participant IN (...)`` in the one claim statement) and delivers only
those. "4 workers on 2 hosts" is therefore 2 worker processes per host, each claiming with its
host's participants: alpha owns the even ``p0, p2, ...``, beta the odd ones (2,500 each). The
configurations, in turns (3 rounds, 1 with ``--quick``; each drain in a fresh database):

- ``1 host, 1 worker``: no filter (a single host, as bench/wakes.py measures it);
- ``1 host, 4 workers``: no filter: the single-host figure of docs/performance-wakes.md;
- ``1 host, 4 workers, filter all``: one host that owns every participant (the filter's cost
  alone: an ``IN`` of all 5,000 names);
- ``2 hosts x 2 workers``: alpha's 2 workers with alpha's 2,500 names, beta's 2 with beta's.

Checked for every drain: no job has more than one attempt (duplicates), none has none
(missing), and with hosts every attempt's owner (``alpha:w0`` ...) is of the host owning the
job's participant (misplaced: must be 0). Exit status: 0, or 1 when a check failed or
PostgreSQL is missing. The worker processes and the databases are removed also on error.

``--participants P`` spreads the jobs over P participants instead (``p<i % P>``, each job in a
thread of its own, alpha owning the even ones): a host then binds P/2 participants, as a real
host binds tens, and a participant's jobs go one at a time (its earliest first, never two
running), for every configuration alike.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import harness as h  # bench/harness.py (scripts run as `python bench/<name>.py`)
import sqlalchemy as sa
import wakes as w  # bench/wakes.py: the queue drain of its part (a)
from harness import log

from controller.store import jobs, queries, tables

ROUNDS = 3
DRAIN_TIMEOUT = 300.0  # bench/wakes.py's 120 s is short for 1 worker on a busy machine
CLAIM_LIMIT = w.CLAIM_LIMIT
BASELINE = "1 host, 4 workers"

WORKER = """
import datetime, json, sys, time
from controller.store import jobs, queries
url, ws, owner, limit, mine = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
participants = None if mine == "-" else frozenset(json.loads(open(mine).read()))
store = queries.Store.open(url, ws)
print("ready", flush=True)
sys.stdin.readline()
began = time.time()
cpu0 = time.process_time()
done = claims = lost = 0
t_claim = t_record = t_settle = 0.0
while True:
    now = datetime.datetime.now(datetime.UTC)
    t0 = time.perf_counter()
    got = jobs.claim(store, owner, now, lease=60, limit=limit, participants=participants)
    t_claim += time.perf_counter() - t0
    claims += 1
    if not got:
        break
    for job in got:
        t0 = time.perf_counter()
        jobs.record(store, job, now, verdict="delivered", reason="delivered", detail=owner)
        t1 = time.perf_counter()
        ok = jobs.settle(store, job, owner, now, state="done")
        t_record += t1 - t0
        t_settle += time.perf_counter() - t1
        done += 1
        lost += not ok
ended = time.time()
cpu = time.process_time() - cpu0
store.close()
print(json.dumps({"owner": owner, "jobs": done, "claims": claims, "lost": lost,
                  "began": began, "ended": ended, "claim_s": t_claim, "record_s": t_record,
                  "settle_s": t_settle, "cpu_s": cpu}), flush=True)
"""


@dataclass(frozen=True, slots=True)
class Config:
    """How many workers each host runs, and whether they claim with a participants filter."""

    name: str
    workers: Mapping[str, int]
    """Workers by host name ("" for a single host without ``hosts``: no filter)."""


CONFIGS = (
    Config("1 host, 1 worker", {"": 1}),
    Config(BASELINE, {"": 4}),
    Config("1 host, 4 workers, filter all", {"alpha": 4}),
    Config("2 hosts x 2 workers", {"alpha": 2, "beta": 2}),
)


def owner_of(participant: str, config: Config) -> str:
    """The host owning ``participant`` (``p<i>``): alpha the even, beta the odd ones."""
    hosts = [name for name in config.workers if name]
    if len(hosts) < 2:
        return hosts[0] if hosts else ""
    return hosts[int(participant[1:]) % 2]


@dataclass(slots=True)
class Drain:
    """One drain of one configuration, and its checks."""

    config: str
    round: int
    run: w.QueueRun
    misplaced: int
    """Attempts made by a worker of a host that does not own the job's participant."""
    by_host: dict[str, int] = field(default_factory=dict)
    """Jobs delivered by each host's workers."""


def insert(store: queries.Store, n: int, participants: int | None) -> float:
    """Queue ``n`` due jobs in one statement: one per participant (bench/wakes.py's), or
    spread over ``participants`` (``p<i % P>``, a thread each); the seconds it took."""
    if participants is None:
        return w._insert(store, n)
    now = datetime.now(UTC) - timedelta(seconds=1)
    job = {"workspace": w.WORKSPACE, "state": "queued", "due_at": now, "unread_seq": 1}
    stamps = {"created_at": now, "updated_at": now}
    rows = [
        {**job, **stamps, "participant": f"p{i % participants}", "thread": f"t{i}"}
        for i in range(n)
    ]
    t0 = time.perf_counter()
    with store.engine.begin() as conn:
        conn.execute(sa.insert(tables.trigger_jobs), rows)
    return time.perf_counter() - t0


def start_workers(url: str, config: Config, folder: Path, n: int) -> list[subprocess.Popen[str]]:
    """The configuration's workers, each with its host's share of the ``n`` participants;
    ready for 'go'."""
    procs = []
    for host, count in config.workers.items():
        mine = "-"
        if host:
            names = [f"p{i}" for i in range(n) if owner_of(f"p{i}", config) == host]
            path = folder / f"{host}.json"
            path.write_text(json.dumps(names))
            mine = str(path)
        for i in range(count):
            owner = f"{host}:w{i}" if host else f"w{i}"
            argv = [sys.executable, "-c", WORKER, url, w.WORKSPACE, owner, str(CLAIM_LIMIT), mine]
            procs.append(
                subprocess.Popen(
                    argv,
                    cwd=h.ROOT,
                    env=h.python_env(),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
    for proc in procs:
        assert proc.stdout is not None
        ready = proc.stdout.readline().strip()
        if ready != "ready":
            _, err = proc.communicate(timeout=30)
            raise RuntimeError(f"worker did not start: {ready!r} {err}")
    return procs


def placement(store: queries.Store, config: Config) -> tuple[int, dict[str, int]]:
    """Attempts by a host that does not own the job's participant, and jobs done by host."""
    a, j = tables.trigger_attempts, tables.trigger_jobs
    query = sa.select(a.c.detail, j.c.participant).join(j, j.c.id == a.c.job_id)
    with store.engine.connect() as conn:
        rows = conn.execute(query.where(a.c.workspace == w.WORKSPACE)).all()
    misplaced = 0
    by_host: Counter[str] = Counter()
    for detail, participant in rows:
        host = str(detail).split(":", 1)[0] if ":" in str(detail) else ""
        by_host[host or "(single host)"] += 1
        misplaced += host != owner_of(str(participant), config)
    return misplaced, dict(by_host)


def drain(url: str, config: Config, n: int, r: int, participants: int | None) -> Drain:
    """Insert ``n`` queued jobs, let the configuration's workers drain them, check each job."""
    store = queries.Store.open(url, w.WORKSPACE)
    procs: list[subprocess.Popen[str]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="queue2-bench-") as folder:
            insert_s = insert(store, n, participants)
            procs = start_workers(url, config, Path(folder), participants or n)
            drained = w._go(procs)
        duplicates, missing = w._check(store, timed_out=drained.timed_out)
        misplaced, by_host = placement(store, config)
        counts = jobs.counts(store)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        store.close()
    workers = sum(config.workers.values())
    checked = {"duplicates": duplicates, "missing": missing, "final_counts": counts}
    run = w._queue_run(
        drained, backend="postgresql", workers=workers, jobs=n, insert_s=insert_s, **checked
    )
    return Drain(config.name, r, run, misplaced, by_host)


def bench(pg_url: str, n: int, rounds: int, participants: int | None) -> list[Drain]:
    """Every configuration in turn, ``rounds`` times, each drain in a fresh database."""
    found = []
    for r in range(1, rounds + 1):
        for config in CONFIGS:
            log(f"round {r}: {config.name}: {n} jobs")
            with w.fresh_database("postgresql", pg_url) as url:
                found.append(drain(url, config, n, r, participants))
            d = found[-1]
            log(
                f"    {d.run.jobs_per_s:.0f} jobs/s, {d.run.drain_s:.2f} s, duplicates "
                f"{d.run.duplicates}, missing {d.run.missing}, misplaced {d.misplaced}"
            )
    return found


# -- report -------------------------------------------------------------------------------------


def spread(n: int, participants: int | None) -> str:
    """How the jobs are spread over participants, in words."""
    if participants is None:
        return "one per participant"
    return f"over {participants} participants, {n // participants} each, a thread per job"


def problems(drains: Sequence[Drain]) -> list[str]:
    """Every failed check."""
    found = []
    for d in drains:
        r = d.run
        if r.duplicates or r.missing or d.misplaced or r.timed_out or r.lost_leases:
            found.append(
                f"round {d.round}, {d.config}: duplicates {r.duplicates}, missing {r.missing}, "
                f"misplaced {d.misplaced}, lost leases {r.lost_leases}, timed out {r.timed_out}"
            )
    return found


def report(
    info: Mapping[str, Any], drains: Sequence[Drain], n: int, rounds: int, participants: int | None
) -> str:
    """One row per drain, then the medians per configuration and their ratios."""
    title = "Queue throughput on two hosts (one run; every ratio is between numbers of this run)"
    out = [*h.header(title, info), ""]
    out.append(
        f"{n} jobs ({spread(n, participants)}) on PostgreSQL, each worker loops claim(limit="
        f"{CLAIM_LIMIT}) -> record -> settle until empty; {rounds} round(s), configurations in "
        "turn, a fresh database per drain; hosts: alpha owns p0, p2, ..., beta p1, p3, ..."
    )
    base = {d.round: d.run.jobs_per_s for d in drains if d.config == BASELINE}
    rows = []
    for d in drains:
        r = d.run
        rows.append(
            [
                str(d.round),
                d.config,
                f"{r.jobs_per_s:.0f}",
                f"{r.jobs_per_s / base[d.round]:.2f}x",
                f"{r.drain_s:.2f}",
                f"{r.claim_ms:.2f}",
                f"{r.claim_share:.0%}",
                f"{r.record_ms:.2f}",
                f"{r.settle_ms:.2f}",
                f"{r.client_cpu_ms_per_job:.2f}",
                f"{r.machine_busy:.0%}",
                str(r.duplicates),
                str(r.missing),
                str(d.misplaced),
                " ".join(f"{k}={v}" for k, v in sorted(d.by_host.items())),
            ]
        )
    header = [
        "round",
        "config",
        "jobs/s",
        f"vs {BASELINE}",
        "drain s",
        "claim ms",
        "in claim",
        "record ms",
        "settle ms",
        "cpu ms/job",
        "busy",
        "dup",
        "missing",
        "misplaced",
        "delivered by",
    ]
    out += h.table(header, rows)
    out += ["", "median over the rounds:"]
    medians = []
    for config in CONFIGS:
        mine = [d for d in drains if d.config == config.name]
        speed = statistics.median(d.run.jobs_per_s for d in mine)
        ratio = statistics.median(d.run.jobs_per_s / base[d.round] for d in mine)
        claim = statistics.median(d.run.claim_ms for d in mine)
        medians.append([config.name, f"{speed:.0f}", f"{ratio:.2f}x", f"{claim:.2f}"])
    out += h.table(["config", "jobs/s", f"vs {BASELINE} (per round)", "claim ms"], medians)
    out += [
        "  jobs/s: jobs claimed and completed per second of drain ('go' -> last empty claim); "
        "ms: mean per statement (claim per call, record and settle per job)",
        "  in claim: share of the workers' drain time spent claiming; busy: share of all CPUs "
        "busy during the drain (every process on the machine)",
        "  dup: jobs with more than one attempt; missing: jobs with none; misplaced: attempts "
        "by a host not owning the job's participant (all must be 0)",
    ]
    return "\n".join(out + [f"  PROBLEM: {p}" for p in problems(drains)])


def payload(
    info: Mapping[str, Any], drains: Sequence[Drain], n: int, rounds: int, participants: int | None
) -> dict[str, Any]:
    """Every raw number."""
    return {
        "machine": info,
        "jobs": n,
        "rounds": rounds,
        "participants": participants,
        "configs": {c.name: dict(c.workers) for c in CONFIGS},
        "drains": [asdict(d) for d in drains],
        "problems": problems(drains),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run every configuration, print the tables, optionally write JSON."""
    parser = h.options(__doc__, reps=False)
    parser.add_argument(
        "--participants", type=int, default=None, metavar="P", help="spread the jobs over P"
    )
    args = parser.parse_args(argv)
    pg_url = os.environ.get(w.PG_ENV) or None
    if pg_url is None:
        log(f"PostgreSQL needed: {w.PG_ENV} is not set (run through scripts/with-postgres)")
        return 1
    n = w.JOBS_QUICK if args.quick else w.JOBS
    rounds = 1 if args.quick else ROUNDS
    info = h.machine()
    info["tools"]["PostgreSQL"] = w.pg_version(pg_url)
    log(f"two-host queue benchmark: {n} jobs, {rounds} round(s) of {len(CONFIGS)} configurations")
    w.DRAIN_TIMEOUT = DRAIN_TIMEOUT  # read by wakes._go at each drain
    with h.private_bytecode("queue2-bench-"):
        h.warm_bytecode("controller.store.jobs")
        drains = bench(pg_url, n, rounds, args.participants)
    h.at_end(info)
    shown = report(info, drains, n, rounds, args.participants)
    h.publish(shown, payload(info, drains, n, rounds, args.participants), args.json)
    found = problems(drains)
    if found:
        log("correctness check failed (see the report)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
