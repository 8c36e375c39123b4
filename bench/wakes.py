"""Benchmark: the trigger queue's throughput, and how fast a posted message wakes an agent.

Run it from the repository root with the project's interpreter::

    .venv/bin/python bench/wakes.py                  # SQLite only (~1.5 minutes on 2 CPUs)
    scripts/with-postgres .venv/bin/python bench/wakes.py --json /tmp/wakes.json  # + PostgreSQL
    .venv/bin/python bench/wakes.py --quick          # 1,000 jobs, 5 wakes

Every ratio printed is between numbers measured in the same run of this script. What is
measured:

(a) Queue throughput. N=5000 queued jobs (1,000 with ``--quick``), one per participant, are
    bulk-inserted into ``trigger_jobs`` of a fresh database (a new SQLite file
    ``sqlite:///<tmp>/state.db``; on PostgreSQL a new database created for the run and dropped
    after it). Then 1, and in another fresh database 4, worker processes drain them, each
    looping ``jobs.claim(limit=8)`` -> ``jobs.record(verdict="delivered")`` -> ``jobs.settle(
    state="done")`` until a claim comes back empty (the loop of
    tests/integration/test_queue_workers.py). The workers open the store first and say they are
    ready; the clock starts when all of them are told to go and stops at the last one's final
    (empty) claim. Reported: jobs/s (jobs claimed and completed per second), the wall time,
    the mean time of each statement, the workers' CPU per job, the share of all CPUs busy
    during the drain (every process on the machine), and the duplicates: jobs whose number of
    recorded attempts is not 1 (must be 0; jobs with no attempt are counted separately as
    missing). PostgreSQL is measured only when ``CONTROLLER_TEST_POSTGRES_URL`` is set
    (``scripts/with-postgres`` sets it).
(b) Wake latency. A fresh git repository with one lane, one Binding (participant ``bot``
    running ``tests/stubs/agent.py --quiet --record FILE``), a Thread ``review: [bot, human]``,
    and a TriggerPolicy with ``collision: {quietSeconds: 0}``, rate limits of 1000/h and
    ``loop: {maxNoProgressTurns: 1000}``, on a private tmux server (Workspace ``tmuxSocket``,
    short ``TMUX_TMPDIR``) and the default SQLite store. One untimed ``controller --once``
    creates the lane and starts the agent (and warms the bytecode); then the daemon
    ``controller run --resync 60 -o json`` runs in a subprocess (``-o json``: its logs are
    read). Once its first pass is done, K=20 times
    (5 with ``--quick``), 1.2 s plus a random 0 to 0.25 s apart (so that posts land at random
    phases of the daemon's 250 ms poll): ``controller post review --as human "msg N"`` runs
    as a subprocess, and the latency is the time from just before it is spawned until the
    stub's record file has one more ``{"line": ...}`` (polled every 10 ms). The post command's
    own wall time is taken in the same loop, and again with the daemon stopped (its bare cost,
    split at the message's ``at``: before the commit, and the exit after it), next to three
    floors (``python -c pass``, ``python -c 'import sqlalchemy'`` and ``python -c
    'import controller.cli.main'``, 5 runs each).
    The daemon's share is split with the timestamps the store keeps: message ``at`` (post),
    job ``created_at`` (the daemon noticed it: poll wait and enqueue), attempt ``at`` (claim
    and checks done, typing starts), the record line (text, pause, Enter, the stub's read), and
    the ``TriggerDelivered`` event (the confirmation and bookkeeping after the keystrokes).

Children compile bytecode once into a private ``PYTHONPYCACHEPREFIX`` (as an installed
controller would) even where ``PYTHONDONTWRITEBYTECODE`` is set; one untimed command warms it.
The tmux server, the daemon, the stub agents, the worker processes, the temporary folders and
the PostgreSQL databases are removed at the end, also on error. Exit status: 0, or 1 when a
correctness check failed (a duplicate or missing job, a wake that never arrived). The rig
(repository, environment, report frame) is bench/harness.py, shared with the other benchmarks.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import harness as h  # bench/harness.py (scripts run as `python bench/<name>.py`)
import sqlalchemy as sa
from harness import log
from sqlalchemy.engine import make_url

from controller.store import database, jobs, queries, tables

PG_ENV = "CONTROLLER_TEST_POSTGRES_URL"

JOBS, JOBS_QUICK = 5000, 1000
WORKER_COUNTS = (1, 4)
CLAIM_LIMIT = 8
WAKES, WAKES_QUICK = 20, 5
BETWEEN_POSTS = 1.2  # past the own-echo window of the previous delivery
# Plus a random 0 to 1 poll interval: otherwise the fixed rhythm of the loop (line seen -> wait
# -> post) locks each post to the same phase of the daemon's 250 ms poll and the poll wait would
# be nearly the same every time instead of a fair sample of 0 to 250 ms.
POST_JITTER = 0.25
SEED = 20261121
POLL = 0.01
WAKE_TIMEOUT = 20.0
START_TIMEOUT = 90.0
TARGET_P50 = 1.0
FLOOR_RUNS = 5
DAEMON_STOP_TIMEOUT = 30.0
DRAIN_TIMEOUT = 120.0  # a drain still running then is stopped and reported as timed out
WORKSPACE = "bench"


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, linear between closest ranks; nan when empty."""
    data = sorted(v for v in values if not math.isnan(v))
    if not data:
        return float("nan")
    pos = (len(data) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return data[low] + (data[high] - data[low]) * (pos - low)


def ms(seconds: float) -> str:
    """Seconds as milliseconds for the tables."""
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.0f}"


# -- (a) queue throughput ------------------------------------------------------------------------

WORKER = """
import datetime, json, sys, time
from controller.store import jobs, queries
url, ws, owner, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
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
    got = jobs.claim(store, owner, now, lease=60, limit=limit)
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


@dataclass(slots=True)
class QueueRun:
    """One drain of N jobs by W worker processes."""

    backend: str
    workers: int
    jobs: int
    insert_s: float
    drain_s: float
    """From 'go' to the last worker's final (empty) claim."""
    exit_s: float
    """From 'go' until every worker process exited."""
    jobs_per_s: float
    per_worker: list[dict[str, Any]]
    duplicates: int
    missing: int
    lost_leases: int
    final_counts: dict[str, int]
    claim_ms: float
    record_ms: float
    settle_ms: float
    claim_share: float
    """Share of the workers' drain time spent in ``claim`` (the rest: record, settle, loop)."""
    client_cpu_ms_per_job: float
    """CPU (user + system) of the worker processes per job, during the drain."""
    machine_busy: float
    """Share of all CPUs busy during the drain (every process on the machine, 0 to 1)."""
    timed_out: bool = False
    """The drain was stopped after ``DRAIN_TIMEOUT`` (jobs/s from the jobs done by then)."""


@contextlib.contextmanager
def fresh_database(backend: str, pg_url: str | None) -> Iterator[str]:
    """A URL of a new, empty database; removed afterwards."""
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="wakes-bench-db-")
        try:
            yield f"sqlite:///{folder}/state.db"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    assert pg_url is not None
    name = f"bench_{secrets.token_hex(4)}"
    admin = database.create_engine(pg_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def _insert(store: queries.Store, n: int) -> float:
    """Queue ``n`` due jobs, one per participant, in one statement; the seconds it took."""
    now = datetime.now(UTC) - timedelta(seconds=1)
    job = {"workspace": WORKSPACE, "thread": "t", "state": "queued", "due_at": now}
    stamps = {"unread_seq": 1, "created_at": now, "updated_at": now}
    rows = [{**job, **stamps, "participant": f"p{i}"} for i in range(n)]
    t0 = time.perf_counter()
    with store.engine.begin() as conn:
        conn.execute(sa.insert(tables.trigger_jobs), rows)
    return time.perf_counter() - t0


def _start_workers(url: str, workers: int) -> list[subprocess.Popen[str]]:
    """Worker processes that opened the store and wait for 'go'."""
    procs = []
    for i in range(workers):
        argv = [sys.executable, "-c", WORKER, url, WORKSPACE, f"w{i}", str(CLAIM_LIMIT)]
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


@dataclass(frozen=True, slots=True)
class Drained:
    """What the workers of one drain reported (nothing if it timed out), and when."""

    results: list[dict[str, Any]]
    timed_out: bool
    go: float
    """Epoch seconds when the workers were told to go."""
    exit_s: float
    """From 'go' until every worker process exited."""
    busy: float
    """Share of all CPUs busy meanwhile."""


def _go(procs: Sequence[subprocess.Popen[str]]) -> Drained:
    """Tell every worker to go; collect what each reports."""
    cpu_before = h.cpu_times()
    go = time.time()
    t0 = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=max(0.1, DRAIN_TIMEOUT - (time.time() - go)))
        except subprocess.TimeoutExpired:
            for each in procs:
                each.kill()
                each.communicate()
            busy = h.busy_share(cpu_before, h.cpu_times())
            return Drained([], True, go, time.perf_counter() - t0, busy)
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed ({proc.returncode}): {err.strip()}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    busy = h.busy_share(cpu_before, h.cpu_times())
    return Drained(results, False, go, time.perf_counter() - t0, busy)


def _check(store: queries.Store, *, timed_out: bool) -> tuple[int, int]:
    """Jobs with more than one attempt (duplicates) and jobs with none (missing)."""
    a, j = tables.trigger_attempts, tables.trigger_jobs
    counted = sa.select(a.c.job_id, sa.func.count()).where(a.c.workspace == WORKSPACE)
    with store.engine.connect() as conn:
        per_job = {int(i): int(c) for i, c in conn.execute(counted.group_by(a.c.job_id))}
        states = {int(i): str(st) for i, st in conn.execute(sa.select(j.c.id, j.c.state))}
    duplicates = len([i for i in states if per_job.get(i, 0) > 1])
    # A drain stopped early leaves queued (and killed running) jobs: not missing.
    missing = [
        i for i, st in states.items() if per_job.get(i, 0) == 0 and not (timed_out and st != "done")
    ]
    return duplicates, len(missing)


def drain(backend: str, url: str, workers: int, n: int) -> QueueRun:
    """Insert ``n`` queued jobs, let ``workers`` processes drain them, check every job."""
    store = queries.Store.open(url, WORKSPACE)
    procs: list[subprocess.Popen[str]] = []
    try:
        insert_s = _insert(store, n)
        procs = _start_workers(url, workers)
        drained = _go(procs)
        duplicates, missing = _check(store, timed_out=drained.timed_out)
        counts = jobs.counts(store)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        store.close()
    checked = {"duplicates": duplicates, "missing": missing, "final_counts": counts}
    return _queue_run(
        drained, backend=backend, workers=workers, jobs=n, insert_s=insert_s, **checked
    )


def _queue_run(drained: Drained, **given: Any) -> QueueRun:
    """The figures of one drain from what its workers reported (and the checks in ``given``)."""
    results, workers = drained.results, given["workers"]
    if drained.timed_out:
        drain_s, done = drained.exit_s, given["final_counts"].get("done", 0)
    else:
        drain_s, done = (
            max(r["ended"] for r in results) - drained.go,
            sum(r["jobs"] for r in results),
        )
    claims = sum(r["claims"] for r in results)

    def per(key: str, count: int) -> float:
        """Milliseconds of ``key`` per ``count`` over every worker (nan without workers)."""
        return 1000 * sum(r[key] for r in results) / count if results and count else math.nan

    return QueueRun(
        **given,
        drain_s=drain_s,
        exit_s=drained.exit_s,
        jobs_per_s=done / drain_s if drain_s > 0 else math.nan,
        per_worker=results,
        lost_leases=sum(r["lost"] for r in results),
        claim_ms=per("claim_s", claims),
        record_ms=per("record_s", done),
        settle_ms=per("settle_s", done),
        client_cpu_ms_per_job=per("cpu_s", done),
        claim_share=per("claim_s", 1000 * workers) / drain_s if drain_s > 0 else math.nan,
        machine_busy=drained.busy,
        timed_out=drained.timed_out,
    )


def bench_queue(n: int, pg_url: str | None) -> list[QueueRun]:
    """Every backend available, 1 and 4 workers, each in a fresh database."""
    runs = []
    backends = ["sqlite"] + (["postgresql"] if pg_url else [])
    for backend in backends:
        for workers in WORKER_COUNTS:
            log(f"(a) {backend}: {n} jobs, {workers} worker(s)")
            with fresh_database(backend, pg_url) as url:
                runs.append(drain(backend, url, workers, n))
            r = runs[-1]
            log(f"    {r.jobs_per_s:.0f} jobs/s, {r.drain_s:.2f} s, duplicates {r.duplicates}")
    return runs


# -- (b) wake latency ----------------------------------------------------------------------------


@dataclass(slots=True)
class Wake:
    """One post and the wake it caused (seconds; nan when it never came)."""

    n: int
    latency_s: float
    """From just before ``controller post`` is spawned until the stub recorded the line."""
    post_s: float
    """Wall time of the ``controller post`` process."""
    post_start: float
    """Epoch seconds just before the post was spawned (to match the store's timestamps)."""
    line_at: float
    """Epoch seconds when the line was seen in the record file."""
    # Filled from the store afterwards (epoch seconds).
    message_at: float = float("nan")
    job_created_at: float = float("nan")
    attempt_at: float = float("nan")
    delivered_event_at: float = float("nan")


@dataclass(slots=True)
class WakeResults:
    """Everything part (b) measured."""

    wakes: list[Wake] = field(default_factory=list)
    bare_post_s: list[float] = field(default_factory=list)
    bare_commit_s: list[float] = field(default_factory=list)
    """Bare posts: from spawn until the message's ``at`` (taken just before its insert)."""
    python_floor_s: list[float] = field(default_factory=list)
    import_floor_s: list[float] = field(default_factory=list)
    sqlalchemy_floor_s: list[float] = field(default_factory=list)
    daemon_start_s: float = float("nan")
    results: list[str] = field(default_factory=list)
    """The daemon's logged wake results (``delivered`` ...), in order."""
    problems: list[str] = field(default_factory=list)


class Rig(h.Repo):
    """A repository with one bound agent, its private tmux server, and the daemon."""

    daemon: subprocess.Popen[bytes] | None = None

    @property
    def record(self) -> Path:
        """What the stub agent read from its terminal (JSON lines)."""
        return self.top / "bot.jsonl"

    @property
    def daemon_log(self) -> Path:
        """The daemon's JSON log lines."""
        return self.top / "daemon.log"

    def run(self, *argv: str) -> str:
        """Run a helper command in the repository; it must succeed."""
        return h.run_checked(argv, cwd=self.path, env=self.env)

    def ctl(self, *args: str) -> list[str]:
        """The controller's command line."""
        return [sys.executable, "-m", "controller", *args]

    def create(self) -> None:
        """The desired state of the benchmark, and a private HOME."""
        home = self.top / "home"
        home.mkdir()
        self.env["HOME"] = str(home)
        self.write(
            "workspace.yaml",
            "apiVersion: lanes/v1\nkind: Workspace\nmetadata: {name: "
            f"{WORKSPACE}}}\nspec: {{tmuxSocket: {self.socket}}}\n",
        )
        self.write("lanes.yaml", "apiVersion: lanes/v1\nkind: Lane\nmetadata:\n  name: a\n")
        self.write(
            "wakes.yaml",
            f"""\
apiVersion: lanes/v1
kind: Binding
metadata: {{name: a-bot}}
spec:
  lane: a
  participant: bot
  command: [{sys.executable}, {h.STUB}, --quiet, --record, {self.record}]
---
apiVersion: lanes/v1
kind: Thread
metadata: {{name: review}}
spec: {{participants: [bot, human]}}
---
apiVersion: lanes/v1
kind: TriggerPolicy
metadata: {{name: default}}
spec:
  collision: {{quietSeconds: 0, recheckSeconds: 1, maxDeferSeconds: 30}}
  rateLimits: {{perParticipant: {{count: 1000, per: 1h}}, perThread: {{count: 1000, per: 1h}}}}
  loop: {{maxNoProgressTurns: 1000}}
""",
        )

    def start_daemon(self) -> float:
        """Start ``controller run``; return the seconds until the agent ran and a pass ended."""
        t0 = time.perf_counter()
        with self.daemon_log.open("wb") as out:
            self.daemon = subprocess.Popen(
                self.ctl("run", "--resync", "60", "-o", "json"),
                cwd=self.path,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        h.wait_for(
            lambda: self.record.exists() and "pass" in self.events(), START_TIMEOUT, self.diagnose
        )
        return time.perf_counter() - t0

    def events(self) -> list[str]:
        """The event names the daemon logged so far."""
        return [e.get("event", "") for e in self.log_entries()]

    def log_entries(self) -> list[dict[str, Any]]:
        """The daemon's JSON log lines."""
        found = []
        text = self.daemon_log.read_text(errors="replace") if self.daemon_log.exists() else ""
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    found.append(entry)
        return found

    def diagnose(self) -> str:
        """What to show when something did not happen in time."""
        tail = (
            self.daemon_log.read_text(errors="replace")[-3000:] if self.daemon_log.exists() else ""
        )
        alive = self.daemon is not None and self.daemon.poll() is None
        return f"daemon alive: {alive}; daemon log tail:\n{tail}"

    def lines(self) -> int:
        """How many lines the stub read from its terminal so far."""
        if not self.record.exists():
            return 0
        count = 0
        for raw in self.record.read_text().splitlines():
            with contextlib.suppress(ValueError):
                count += "line" in json.loads(raw)
        return count

    def wake_once(self, n: int) -> Wake:
        """Post one message; time the post process and the line reaching the agent."""
        before = self.lines()
        post_start = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            self.ctl("post", "review", "--as", "human", f"msg {n}"),
            cwd=self.path,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        post_s = latency = line_at = float("nan")
        deadline = t0 + WAKE_TIMEOUT
        try:
            while time.perf_counter() < deadline:
                if math.isnan(post_s) and proc.poll() is not None:
                    post_s = time.perf_counter() - t0
                    if proc.returncode != 0:
                        err = proc.stderr.read().decode() if proc.stderr else ""
                        raise RuntimeError(f"controller post failed: {err}")
                if math.isnan(latency) and self.lines() > before:
                    latency = time.perf_counter() - t0
                    line_at = time.time()
                if not (math.isnan(post_s) or math.isnan(latency)):
                    break
                time.sleep(POLL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        return Wake(n, latency, post_s, post_start, line_at)

    def stop_daemon(self) -> int | None:
        """SIGTERM the daemon and wait for it (SIGKILL after a while); its exit status."""
        if self.daemon is None:
            return None
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout=DAEMON_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        return self.daemon.returncode

    def message_times(self) -> dict[str, float]:
        """Epoch ``at`` of every message in the thread, by body."""
        store = queries.Store.open(f"sqlite:///{self.path}/.lanes/state.db", WORKSPACE)
        try:
            m = tables.messages
            with store.engine.connect() as conn:
                rows = conn.execute(sa.select(m.c.body, m.c.at).where(m.c.thread == "review"))
                return {str(r.body): _epoch(r.at) for r in rows}
        finally:
            store.close()

    def timestamps(self, wakes: Sequence[Wake]) -> None:
        """Fill each wake's store timestamps (message, job, attempt, delivered event)."""
        store = queries.Store.open(f"sqlite:///{self.path}/.lanes/state.db", WORKSPACE)
        try:
            with store.engine.connect() as conn:
                m, j, a = tables.messages, tables.trigger_jobs, tables.trigger_attempts
                e = tables.events
                messages = {
                    int(r.seq): r.at
                    for r in conn.execute(
                        sa.select(m.c.seq, m.c.at).where(
                            m.c.thread == "review", m.c.sender == "human"
                        )
                    )
                }
                job_rows = conn.execute(
                    sa.select(j.c.id, j.c.unread_seq, j.c.created_at).where(
                        j.c.participant == "bot"
                    )
                ).all()
                attempts: dict[int, Any] = {}
                for r in conn.execute(sa.select(a.c.job_id, a.c.at, a.c.verdict).order_by(a.c.id)):
                    if r.verdict == "delivered":
                        attempts.setdefault(int(r.job_id), r.at)
                delivered: dict[int, Any] = {}
                for ev in conn.execute(
                    sa.select(e.c.at, e.c.data).where(e.c.kind == "TriggerDelivered")
                ):
                    job = (ev.data or {}).get("job")
                    if job is not None:
                        delivered.setdefault(int(job), ev.at)
        finally:
            store.close()
        by_seq = {int(r.unread_seq): (int(r.id), r.created_at) for r in job_rows}
        ordered = sorted(messages)
        for wake, seq in zip(wakes, ordered, strict=False):
            wake.message_at = _epoch(messages[seq])
            if seq in by_seq:
                job_id, created = by_seq[seq]
                wake.job_created_at = _epoch(created)
                wake.attempt_at = _epoch(attempts.get(job_id))
                wake.delivered_event_at = _epoch(delivered.get(job_id))

    def cleanup(self) -> list[str]:
        """Stop the daemon first, then everything else this rig started."""
        with contextlib.suppress(Exception):
            self.stop_daemon()
        return super().cleanup()


def _epoch(value: Any) -> float:
    if not isinstance(value, datetime):
        return float("nan")
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def timed(rig: Rig, argv: Sequence[str]) -> float:
    """Wall time of one command that must succeed."""
    t0 = time.perf_counter()
    h.run_checked(argv, cwd=rig.path, env=rig.env)
    return time.perf_counter() - t0


def bench_wakes(k: int) -> WakeResults:
    """Part (b): K posts against a running daemon, then the post command's bare cost."""
    results = WakeResults()
    with h.fresh_repo(Rig, 1, prefix="wakes-bench-", tmux=True) as rig:
        try:
            rig.create()
            _wakes(rig, k, results)
            _bare_posts(rig, k, results)
            _floors(rig, results)
        except Exception:
            log("(b) failed; " + rig.diagnose())
            raise
    return results


def _wakes(rig: Rig, k: int, results: WakeResults) -> None:
    """K posts against the daemon, each timed until the agent read its wake."""
    jitter = random.Random(SEED)
    log("(b) warming bytecode, starting the daemon")
    rig.run(*rig.ctl("--once"))  # untimed: compiles bytecode, creates the lane and agent
    h.wait_for(rig.record.exists, START_TIMEOUT, rig.diagnose)
    rig.run(*rig.ctl("read", "review", "--as", "bot"))
    results.daemon_start_s = rig.start_daemon()
    time.sleep(1.5)
    for n in range(1, k + 1):
        time.sleep(BETWEEN_POSTS + jitter.uniform(0, POST_JITTER))
        wake = rig.wake_once(n)
        results.wakes.append(wake)
        log(f"(b) post {n}/{k}: latency {ms(wake.latency_s)} ms, post {ms(wake.post_s)} ms")
        if math.isnan(wake.latency_s):
            results.problems.append(f"wake {n} did not reach the agent in {WAKE_TIMEOUT} s")
    time.sleep(1.0)  # the last delivery's bookkeeping (confirmation, settle, event)
    results.results = [str(e.get("result")) for e in rig.log_entries() if e.get("event") == "wake"]
    code = rig.stop_daemon()
    if code != 0:
        results.problems.append(f"daemon exited {code}")
    rig.timestamps(results.wakes)


def _bare_posts(rig: Rig, k: int, results: WakeResults) -> None:
    """K posts with the daemon stopped: the post command's own cost, split at its commit."""
    log("(b) bare post command (daemon stopped) and floors")
    starts: dict[str, float] = {}
    for n in range(1, k + 1):
        starts[f"bare {n}"] = time.time()
        argv = rig.ctl("post", "review", "--as", "human", f"bare {n}")
        results.bare_post_s.append(timed(rig, argv))
    committed = rig.message_times()
    results.bare_commit_s = [committed.get(b, float("nan")) - t for b, t in starts.items()]


def _floors(rig: Rig, results: WakeResults) -> None:
    """What starting Python, SQLAlchemy and the CLI costs alone."""
    floors = {
        "pass": results.python_floor_s,
        "import sqlalchemy": results.sqlalchemy_floor_s,
        "import controller.cli.main": results.import_floor_s,
    }
    for _ in range(FLOOR_RUNS):
        for code, into in floors.items():
            into.append(timed(rig, [sys.executable, "-c", code]))


# -- report -------------------------------------------------------------------------------------


def pg_version(url: str | None) -> str | None:
    """The server version of the PostgreSQL at ``url``."""
    if not url:
        return None
    engine = database.create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SHOW server_version")).scalar())
    finally:
        engine.dispose()


def wake_rows(wakes: Sequence[Wake]) -> dict[str, list[float]]:
    """Each latency component (seconds) over the wakes."""
    return {
        "post -> keystrokes (latency)": [w.latency_s for w in wakes],
        "controller post (own wall time)": [w.post_s for w in wakes],
        "post spawned -> message committed": [w.message_at - w.post_start for w in wakes],
        "message -> job enqueued (poll wait + detect)": [
            w.job_created_at - w.message_at for w in wakes
        ],
        "job enqueued -> typing starts (claim + checks)": [
            w.attempt_at - w.job_created_at for w in wakes
        ],
        "typing starts -> line recorded (text, pause, Enter, read)": [
            w.line_at - w.attempt_at for w in wakes
        ],
        "message -> line recorded (daemon side)": [w.line_at - w.message_at for w in wakes],
        "typing starts -> TriggerDelivered (whole delivery)": [
            w.delivered_event_at - w.attempt_at for w in wakes
        ],
    }


# One word per column of (a); "-" stands for a space.
QUEUE_HEADER = (
    "backend workers jobs/s vs-1 drain-s exit-s claim-ms in-claim record-ms settle-ms dup "
    "missing lost final-states cpu-ms/job busy insert-s"
)


def report(
    info: Mapping[str, Any], queue: Sequence[QueueRun], wakes: WakeResults, *, n: int, k: int
) -> str:
    """The readable tables."""
    title = "Wake benchmark (one run; every ratio is between numbers of this run)"
    out = [*h.header(title, info), "", *queue_report(queue, n, info), ""]
    return "\n".join([*out, *wake_report(wakes, k)])


def queue_row(r: QueueRun, scale: float) -> list[str]:
    """One drain in the table of (a)."""
    return [
        r.backend,
        str(r.workers),
        f"{r.jobs_per_s:.0f}",
        f"{scale:.2f}x",
        f"{r.drain_s:.2f}",
        f"{r.exit_s:.2f}",
        f"{r.claim_ms:.2f}",
        f"{r.claim_share:.0%}",
        f"{r.record_ms:.2f}",
        f"{r.settle_ms:.2f}",
        str(r.duplicates),
        str(r.missing),
        str(r.lost_leases),
        " ".join(f"{s}={c}" for s, c in sorted(r.final_counts.items())),
        f"{r.client_cpu_ms_per_job:.2f}",
        f"{r.machine_busy:.0%}",
        f"{r.insert_s:.2f}",
    ]


def queue_report(queue: Sequence[QueueRun], n: int, info: Mapping[str, Any]) -> list[str]:
    """Part (a): throughput and the correctness checks of every drain."""
    base: dict[str, float] = {}
    rows = []
    for r in queue:
        base.setdefault(r.backend, r.jobs_per_s)
        rows.append(queue_row(r, r.jobs_per_s / base[r.backend]))
    header = [name.replace("-", " ") for name in QUEUE_HEADER.split()]
    out = [
        f"(a) queue throughput: {n} jobs, each worker loops claim(limit={CLAIM_LIMIT}) -> "
        "record -> settle until empty",
        *h.table(header, rows),
        "  jobs/s: jobs claimed and completed per second of drain (go -> last empty claim); "
        "exit s: until every worker exited",
        "  ms: mean per statement (claim per call, record and settle per job); in claim: share "
        "of the workers' drain time spent claiming",
        "  dup: jobs with more than one attempt (must be 0); cpu ms/job: the workers' own CPU "
        "per job; busy: share of all CPUs busy during the drain (every process on the machine)",
    ]
    for r in (r for r in queue if r.timed_out):
        out.append(
            f"  TIMED OUT: {r.backend} with {r.workers} worker(s) was stopped after "
            f"{DRAIN_TIMEOUT:.0f} s with {r.final_counts.get('done', 0)} of {r.jobs} jobs done"
        )
    if info["tools"].get("PostgreSQL") is None:
        out.append(f"  PostgreSQL skipped: {PG_ENV} is not set (run through scripts/with-postgres)")
    return out


def wake_series(wakes: WakeResults) -> list[tuple[str, list[float]]]:
    """Every row of the table of (b): the wakes' components, the bare post, the floors."""
    exits = [w - c for w, c in zip(wakes.bare_post_s, wakes.bare_commit_s, strict=True)]
    return [
        *wake_rows(wakes.wakes).items(),
        ("controller post, daemon stopped (bare)", wakes.bare_post_s),
        ("  bare post: spawned -> message committed", wakes.bare_commit_s),
        ("  bare post: committed -> process exited", exits),
        ("floor: python -c pass", wakes.python_floor_s),
        ("floor: python -c 'import sqlalchemy'", wakes.sqlalchemy_floor_s),
        ("floor: python -c 'import controller.cli.main'", wakes.import_floor_s),
    ]


def wake_report(wakes: WakeResults, k: int) -> list[str]:
    """Part (b): the latency of a wake, its parts, and what the daemon said."""
    rows = []
    for name, values in wake_series(wakes):
        seen = [v for v in values if not math.isnan(v)]
        high, low = (max(seen), min(seen)) if seen else (math.nan, math.nan)
        rows.append([name, ms(pct(values, 0.5)), ms(pct(values, 0.95)), ms(high), ms(low)])
    p50 = pct([w.latency_s for w in wakes.wakes], 0.5)
    out = [
        f"(b) wake latency: {k} posts {BETWEEN_POSTS}-{BETWEEN_POSTS + POST_JITTER:.2f} s apart "
        "(random), daemon `run --resync 60`",
        *h.table(["ms", "p50", "p95", "max", "min"], rows),
        f"  target p50 post -> keystrokes < {TARGET_P50:.0f} s: {h.verdict(p50 < TARGET_P50)} "
        f"({ms(p50)} ms)",
    ]
    commit50 = pct([w.message_at - w.post_start for w in wakes.wakes], 0.5)
    daemon50 = pct([w.line_at - w.message_at for w in wakes.wakes], 0.5)
    if p50 > 0 and not math.isnan(commit50 + daemon50):
        out.append(
            f"  of the p50 latency: post until its commit {commit50 / p50:.0%}, daemon side "
            f"(commit -> line) {daemon50 / p50:.0%} (the post's exit after its commit overlaps "
            "the daemon's work)"
        )
    delivered = sum(1 for r in wakes.results if r == "delivered")
    out += [
        f"  daemon wake results: {delivered} delivered of {len(wakes.results)} logged; "
        f"daemon ready (agent running, first pass done) after {wakes.daemon_start_s:.1f} s",
        "  store timestamps: message 'at' (in post), job 'created_at' (enqueue), attempt 'at' "
        "(before send-keys), TriggerDelivered event (after Enter was confirmed and the job "
        "settled)",
    ]
    return out + [f"  PROBLEM: {problem}" for problem in wakes.problems]


def payload(
    info: Mapping[str, Any], queue: Sequence[QueueRun], wakes: WakeResults, n: int, k: int
) -> dict[str, Any]:
    """Every raw number."""
    return {
        "machine": info,
        "jobs": n,
        "wakes_count": k,
        "queue": [asdict(r) for r in queue],
        "postgresql_skipped": info["tools"].get("PostgreSQL") is None,
        "wakes": [asdict(w) for w in wakes.wakes],
        "wake_components_s": wake_rows(wakes.wakes),
        "bare_post_s": wakes.bare_post_s,
        "bare_commit_s": wakes.bare_commit_s,
        "python_floor_s": wakes.python_floor_s,
        "import_floor_s": wakes.import_floor_s,
        "sqlalchemy_floor_s": wakes.sqlalchemy_floor_s,
        "daemon_start_s": wakes.daemon_start_s,
        "daemon_wake_results": wakes.results,
        "problems": wakes.problems,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run both parts, print the tables, optionally write JSON."""
    parser = h.options(__doc__, reps=False)
    args = parser.parse_args(argv)
    h.require(parser, "git", "tmux")
    n = JOBS_QUICK if args.quick else JOBS
    k = WAKES_QUICK if args.quick else WAKES
    pg_url = os.environ.get(PG_ENV) or None
    info = h.machine("git", "tmux")
    info["tools"].update({"SQLite": sqlite3.sqlite_version, "PostgreSQL": pg_version(pg_url)})
    log(f"wake benchmark: {n} jobs, {k} wakes, PostgreSQL {'yes' if pg_url else 'skipped'}")
    with h.private_bytecode("wakes-bench-"):
        h.warm_bytecode("controller.store.jobs")
        queue = bench_queue(n, pg_url)
        wakes = bench_wakes(k)
    h.at_end(info)
    text = report(info, queue, wakes, n=n, k=k)
    h.publish(text, payload(info, queue, wakes, n, k), args.json)
    failed = any(r.duplicates or r.missing for r in queue) or wakes.problems
    if failed:
        log("correctness check failed (see the report)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
