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
correctness check failed (a duplicate or missing job, a wake that never arrived).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import random
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from controller.store import database, jobs, queries, tables

ROOT = Path(__file__).resolve().parents[1]
STUB = str(ROOT / "tests" / "stubs" / "agent.py")
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

IDENTITY = {
    "GIT_AUTHOR_NAME": "Wake Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "Wake Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}

STARTED = time.perf_counter()


def log(message: str) -> None:
    """Progress goes to stderr (with the seconds since start) so that stdout holds the report."""
    print(f"[{time.perf_counter() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


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


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table, first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = f"{cells[0]:<{widths[0]}}"
        rest = [f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


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


def worker_env() -> dict[str, str]:
    """Our environment for the worker processes (bytecode cached, see ``main``)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(BYTECODE)
    return env


def drain(backend: str, url: str, workers: int, n: int) -> QueueRun:
    """Insert ``n`` queued jobs, let ``workers`` processes drain them, check every job."""
    store = queries.Store.open(url, WORKSPACE)
    procs: list[subprocess.Popen[str]] = []
    try:
        now = datetime.now(UTC) - timedelta(seconds=1)
        rows = [
            {
                "workspace": WORKSPACE,
                "participant": f"p{i}",
                "thread": "t",
                "state": "queued",
                "due_at": now,
                "unread_seq": 1,
                "created_at": now,
                "updated_at": now,
            }
            for i in range(n)
        ]
        t0 = time.perf_counter()
        with store.engine.begin() as conn:
            conn.execute(sa.insert(tables.trigger_jobs), rows)
        insert_s = time.perf_counter() - t0
        env = worker_env()
        for i in range(workers):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, url, WORKSPACE, f"w{i}", str(CLAIM_LIMIT)],
                    cwd=ROOT,
                    env=env,
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
        cpu_before = psutil.cpu_times()
        go = time.time()
        t0 = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        timed_out = False
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=max(0.1, DRAIN_TIMEOUT - (time.time() - go)))
            except subprocess.TimeoutExpired:
                timed_out = True
                break
            if proc.returncode != 0:
                raise RuntimeError(f"worker failed ({proc.returncode}): {err.strip()}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        if timed_out:
            for proc in procs:
                proc.kill()
                proc.communicate()
            results = []
        exit_s = time.perf_counter() - t0
        busy = _busy_share(cpu_before, psutil.cpu_times())
        drain_s = exit_s if timed_out else max(r["ended"] for r in results) - go
        a = tables.trigger_attempts
        with store.engine.connect() as conn:
            per_job: dict[int, int] = dict(
                conn.execute(
                    sa.select(a.c.job_id, sa.func.count())
                    .where(a.c.workspace == WORKSPACE)
                    .group_by(a.c.job_id)
                ).all()
            )
            j = tables.trigger_jobs
            states = {int(i): str(st) for i, st in conn.execute(sa.select(j.c.id, j.c.state))}
        duplicates = len([i for i in states if per_job.get(i, 0) > 1])
        # A drain stopped early leaves queued (and killed running) jobs: not missing.
        missing = len(
            [
                i
                for i, st in states.items()
                if per_job.get(i, 0) == 0 and not (timed_out and st != "done")
            ]
        )
        counts = jobs.counts(store)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        store.close()
    done = counts.get("done", 0) if timed_out else sum(r["jobs"] for r in results)
    claims = sum(r["claims"] for r in results)
    nan = float("nan")
    return QueueRun(
        backend=backend,
        workers=workers,
        jobs=n,
        insert_s=insert_s,
        drain_s=drain_s,
        exit_s=exit_s,
        jobs_per_s=done / drain_s if drain_s > 0 else float("nan"),
        per_worker=results,
        duplicates=duplicates,
        missing=missing,
        lost_leases=sum(r["lost"] for r in results),
        final_counts=counts,
        claim_ms=1000 * sum(r["claim_s"] for r in results) / claims if claims else nan,
        record_ms=1000 * sum(r["record_s"] for r in results) / done if results else nan,
        settle_ms=1000 * sum(r["settle_s"] for r in results) / done if results else nan,
        client_cpu_ms_per_job=1000 * sum(r["cpu_s"] for r in results) / done if results else nan,
        claim_share=sum(r["claim_s"] for r in results) / (workers * drain_s) if results else nan,
        machine_busy=busy,
        timed_out=timed_out,
    )


def _busy_share(before: Any, after: Any) -> float:
    """Share of all CPUs busy between two ``psutil.cpu_times()`` readings."""
    total = sum(after) - sum(before)
    idle = (after.idle + getattr(after, "iowait", 0)) - (before.idle + getattr(before, "iowait", 0))
    return 1.0 - idle / total if total > 0 else float("nan")


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

BYTECODE: dict[str, str] = {}
"""Where children keep bytecode (``PYTHONPYCACHEPREFIX``), set once by ``main``."""


def base_env(home: Path, tmux_tmpdir: Path) -> dict[str, str]:
    """Our environment without anything that could redirect git, tmux or the store."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GIT_", "TMUX", "CONTROLLER_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    config = home / ".gitconfig"
    config.write_text("[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
    env.update(IDENTITY)
    env.update(
        {
            "HOME": str(home),
            "GIT_CONFIG_GLOBAL": str(config),
            "GIT_CONFIG_NOSYSTEM": "1",
            "TMUX_TMPDIR": str(tmux_tmpdir),
            "LC_ALL": "C",
            **BYTECODE,
        }
    )
    return env


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


class Rig:
    """A repository with one bound agent, its private tmux server, and the daemon."""

    def __init__(self, top: Path, tmux_tmpdir: Path) -> None:
        self.top = top
        self.repo = top / "repo"
        self.record = top / "bot.jsonl"
        self.daemon_log = top / "daemon.log"
        self.socket = f"bench-{secrets.token_hex(4)}"
        home = top / "home"
        home.mkdir()
        self.env = base_env(home, tmux_tmpdir)
        self.daemon: subprocess.Popen[bytes] | None = None

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a helper command in the repository."""
        done = subprocess.run(
            argv,
            cwd=self.repo,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
        return done

    def ctl(self, *args: str) -> list[str]:
        """The controller's command line."""
        return [sys.executable, "-m", "controller", *args]

    def create(self) -> None:
        """A git repository with one commit and the desired state of the benchmark."""
        self.repo.mkdir()
        self.run("git", "init", "-q", "-b", "main")
        (self.repo / "README.md").write_text("hello\n")
        (self.repo / ".gitignore").write_text("")
        self.run("git", "add", ".")
        self.run("git", "commit", "-q", "-m", "initial")
        desired = self.repo / "desired"
        desired.mkdir()
        (desired / "workspace.yaml").write_text(
            "apiVersion: lanes/v1\nkind: Workspace\nmetadata: {name: "
            f"{WORKSPACE}}}\nspec: {{tmuxSocket: {self.socket}}}\n"
        )
        (desired / "lanes.yaml").write_text(
            "apiVersion: lanes/v1\nkind: Lane\nmetadata:\n  name: a\n"
        )
        (desired / "wakes.yaml").write_text(
            f"""\
apiVersion: lanes/v1
kind: Binding
metadata: {{name: a-bot}}
spec:
  lane: a
  participant: bot
  command: [{sys.executable}, {STUB}, --quiet, --record, {self.record}]
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
"""
        )

    def start_daemon(self) -> float:
        """Start ``controller run``; return the seconds until the agent ran and a pass ended."""
        t0 = time.perf_counter()
        with self.daemon_log.open("wb") as out:
            self.daemon = subprocess.Popen(
                self.ctl("run", "--resync", "60", "-o", "json"),
                cwd=self.repo,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(
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
            cwd=self.repo,
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
        store = queries.Store.open(f"sqlite:///{self.repo}/.lanes/state.db", WORKSPACE)
        try:
            m = tables.messages
            with store.engine.connect() as conn:
                rows = conn.execute(sa.select(m.c.body, m.c.at).where(m.c.thread == "review"))
                return {str(r.body): _epoch(r.at) for r in rows}
        finally:
            store.close()

    def timestamps(self, wakes: Sequence[Wake]) -> None:
        """Fill each wake's store timestamps (message, job, attempt, delivered event)."""
        store = queries.Store.open(f"sqlite:///{self.repo}/.lanes/state.db", WORKSPACE)
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

    def leftovers(self) -> list[psutil.Process]:
        """Processes still running whose argv names our folder or socket: the tmux server,
        the stub agent, the placeholder session's program.
        """
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline: list[str] = proc.info["cmdline"] or []
            if proc.pid == os.getpid():
                continue
            if any(str(self.top) in part or part == self.socket for part in cmdline):
                found.append(proc)
        return found

    def cleanup(self) -> list[str]:
        """Stop everything this rig started; what had to be killed by force."""
        notes = []
        with contextlib.suppress(Exception):
            self.stop_daemon()
        subprocess.run(
            ("tmux", "-L", self.socket, "kill-server"),
            env=self.env,
            capture_output=True,
            check=False,
            timeout=10,
        )
        # kill-server returns before the server and the agents it hangs up on have exited.
        _, alive = psutil.wait_procs(self.leftovers(), timeout=5)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                notes.append(f"killed leftover {proc.pid}: {' '.join(proc.cmdline())[:120]}")
                proc.kill()
        return notes


def _epoch(value: Any) -> float:
    if not isinstance(value, datetime):
        return float("nan")
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def wait_for(predicate: Callable[[], object], timeout: float, why: Callable[[], str]) -> None:
    """Poll ``predicate`` until it holds; raise with ``why()`` on timeout."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"not ready within {timeout:.0f} s; {why()}")


def timed(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> float:
    """Wall time of one command that must succeed."""
    t0 = time.perf_counter()
    done = subprocess.run(
        list(argv),
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return wall


def bench_wakes(k: int) -> WakeResults:
    """Part (b): K posts against a running daemon, then the post command's bare cost."""
    results = WakeResults()
    jitter = random.Random(SEED)
    top = Path(tempfile.mkdtemp(prefix="wakes-bench-")).resolve()
    # tmux socket paths are limited to 107 bytes: a short folder directly under /tmp.
    tmux_tmpdir = Path(tempfile.mkdtemp(prefix="wb-", dir="/tmp"))
    rig = Rig(top, tmux_tmpdir)
    try:
        rig.create()
        log("(b) warming bytecode, starting the daemon")
        rig.run(*rig.ctl("--once"))  # untimed: compiles bytecode, creates the lane and agent
        wait_for(rig.record.exists, START_TIMEOUT, rig.diagnose)
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
        results.results = [
            str(e.get("result")) for e in rig.log_entries() if e.get("event") == "wake"
        ]
        code = rig.stop_daemon()
        if code != 0:
            results.problems.append(f"daemon exited {code}")
        rig.timestamps(results.wakes)
        log("(b) bare post command (daemon stopped) and floors")
        starts: dict[str, float] = {}
        for n in range(1, k + 1):
            starts[f"bare {n}"] = time.time()
            results.bare_post_s.append(
                timed(
                    rig.ctl("post", "review", "--as", "human", f"bare {n}"),
                    cwd=rig.repo,
                    env=rig.env,
                )
            )
        committed = rig.message_times()
        results.bare_commit_s = [committed.get(b, float("nan")) - t for b, t in starts.items()]
        for _ in range(FLOOR_RUNS):
            results.python_floor_s.append(
                timed([sys.executable, "-c", "pass"], cwd=rig.repo, env=rig.env)
            )
            results.sqlalchemy_floor_s.append(
                timed([sys.executable, "-c", "import sqlalchemy"], cwd=rig.repo, env=rig.env)
            )
            results.import_floor_s.append(
                timed(
                    [sys.executable, "-c", "import controller.cli.main"], cwd=rig.repo, env=rig.env
                )
            )
    except Exception:
        log("(b) failed; " + rig.diagnose())
        raise
    finally:
        for note in rig.cleanup():
            log(note)
        shutil.rmtree(top, ignore_errors=True)
        shutil.rmtree(tmux_tmpdir, ignore_errors=True)
    return results


# -- report -------------------------------------------------------------------------------------


def version(argv: Sequence[str]) -> str:
    """First line a program prints, or '-'."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=10)
    except OSError:
        return "-"
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "-"


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


def code_state() -> dict[str, Any]:
    """Which controller code ran: git HEAD, uncommitted changes, a digest of controller/."""

    def git(*args: str) -> str:
        done = subprocess.run(("git", *args), cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout

    head = git("rev-parse", "--short", "HEAD").strip()
    dirty = git("status", "--porcelain", "--", "controller").splitlines()
    digest = hashlib.sha256()
    for path in sorted((ROOT / "controller").rglob("*.py")):
        digest.update(path.read_bytes())
    return {
        "head": head or "-",
        "uncommitted": [line.strip() for line in dirty if line.strip()],
        "controller_sha256": digest.hexdigest()[:16],
    }


def machine(pg_url: str | None) -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "tmux": version(["tmux", "-V"]),
        "git": version(["git", "--version"]),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg_version(pg_url),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


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


def _code_line(info: Mapping[str, Any]) -> str:
    start, end = info["code_at_start"], info.get("code_at_end", info["code_at_start"])
    dirty = f", uncommitted: {' '.join(start['uncommitted'])}" if start["uncommitted"] else ""
    line = f"code: {start['head']} (controller/ sha256 {start['controller_sha256']}{dirty})"
    if end["controller_sha256"] != start["controller_sha256"]:
        line += (
            f"; WARNING: controller/ changed during the run (now {end['head']}, "
            f"{end['controller_sha256']}): the numbers may mix two versions"
        )
    elif end["head"] != start["head"]:
        line += f"; HEAD moved to {end['head']} during the run, controller/ unchanged"
    return line


def report(
    info: Mapping[str, Any],
    queue: Sequence[QueueRun],
    pg_skipped: bool,
    wakes: WakeResults,
    n: int,
    k: int,
) -> str:
    """The readable tables."""
    out = [
        "Wake benchmark (one run; every ratio is between numbers of this run)",
        f"machine: {info['cpus']} CPUs, {info['memory_gib']} GiB, Python {info['python']}, "
        f"{info['tmux']}, SQLite {info['sqlite']}, PostgreSQL {info['postgresql'] or '-'}, "
        f"{info['platform']}",
        _code_line(info),
        f"load average (1, 5, 15 min) at start: {info['load_average_at_start']}, at end: "
        f"{info.get('load_average_at_end')}",
        "",
        f"(a) queue throughput: {n} jobs, each worker loops claim(limit={CLAIM_LIMIT}) -> "
        "record -> settle until empty",
    ]
    rows = []
    base: dict[str, float] = {}
    for r in queue:
        base.setdefault(r.backend, r.jobs_per_s)
        scale = r.jobs_per_s / base[r.backend]
        rows.append(
            [
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
        )
    out.append(
        table(
            [
                "backend",
                "workers",
                "jobs/s",
                "vs 1",
                "drain s",
                "exit s",
                "claim ms",
                "in claim",
                "record ms",
                "settle ms",
                "dup",
                "missing",
                "lost",
                "final states",
                "cpu ms/job",
                "busy",
                "insert s",
            ],
            rows,
        )
    )
    out += [
        "  jobs/s: jobs claimed and completed per second of drain (go -> last empty claim); "
        "exit s: until every worker exited",
        "  ms: mean per statement (claim per call, record and settle per job); in claim: share "
        "of the workers' drain time spent claiming",
        "  dup: jobs with more than one attempt (must be 0); cpu ms/job: the workers' own CPU "
        "per job; busy: share of all CPUs busy during the drain (every process on the machine)",
    ]
    for r in queue:
        if r.timed_out:
            out.append(
                f"  TIMED OUT: {r.backend} with {r.workers} worker(s) was stopped after "
                f"{DRAIN_TIMEOUT:.0f} s with {r.final_counts.get('done', 0)} of {r.jobs} jobs done"
            )
    if pg_skipped:
        out.append(f"  PostgreSQL skipped: {PG_ENV} is not set (run through scripts/with-postgres)")
    out += [
        "",
        f"(b) wake latency: {k} posts {BETWEEN_POSTS}-{BETWEEN_POSTS + POST_JITTER:.2f} s apart "
        "(random), daemon `run --resync 60`",
    ]
    rows = []
    series = [
        *wake_rows(wakes.wakes).items(),
        ("controller post, daemon stopped (bare)", wakes.bare_post_s),
        ("  bare post: spawned -> message committed", wakes.bare_commit_s),
        (
            "  bare post: committed -> process exited",
            [w - c for w, c in zip(wakes.bare_post_s, wakes.bare_commit_s, strict=True)],
        ),
        ("floor: python -c pass", wakes.python_floor_s),
        ("floor: python -c 'import sqlalchemy'", wakes.sqlalchemy_floor_s),
        ("floor: python -c 'import controller.cli.main'", wakes.import_floor_s),
    ]
    for name, values in series:
        seen = [v for v in values if not math.isnan(v)]
        high, low = (max(seen), min(seen)) if seen else (float("nan"), float("nan"))
        rows.append([name, ms(pct(values, 0.5)), ms(pct(values, 0.95)), ms(high), ms(low)])
    out.append(table(["ms", "p50", "p95", "max", "min"], rows))
    lat = [w.latency_s for w in wakes.wakes]
    p50 = pct(lat, 0.5)
    verdict = "met" if p50 < TARGET_P50 else "MISSED"
    out.append(f"  target p50 post -> keystrokes < {TARGET_P50:.0f} s: {verdict} ({ms(p50)} ms)")
    commit50 = pct([w.message_at - w.post_start for w in wakes.wakes], 0.5)
    daemon50 = pct([w.line_at - w.message_at for w in wakes.wakes], 0.5)
    if p50 > 0 and not math.isnan(commit50 + daemon50):
        out.append(
            f"  of the p50 latency: post until its commit {commit50 / p50:.0%}, daemon side "
            f"(commit -> line) {daemon50 / p50:.0%} (the post's exit after its commit overlaps "
            "the daemon's work)"
        )
    delivered = sum(1 for r in wakes.results if r == "delivered")
    out.append(
        f"  daemon wake results: {delivered} delivered of {len(wakes.results)} logged; "
        f"daemon ready (agent running, first pass done) after {wakes.daemon_start_s:.1f} s"
    )
    out.append(
        "  store timestamps: message 'at' (in post), job 'created_at' (enqueue), attempt 'at' "
        "(before send-keys), TriggerDelivered event (after Enter was confirmed and the job settled)"
    )
    for problem in wakes.problems:
        out.append(f"  PROBLEM: {problem}")
    return "\n".join(out)


def no_nan(value: Any) -> Any:
    """``value`` with every nan replaced by None (JSON has no nan)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [no_nan(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run both parts, print the tables, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help=f"{JOBS_QUICK} jobs, {WAKES_QUICK} wakes"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write raw numbers")
    args = parser.parse_args(argv)
    for tool in ("git", "tmux"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is required")
    n = JOBS_QUICK if args.quick else JOBS
    k = WAKES_QUICK if args.quick else WAKES
    pg_url = os.environ.get(PG_ENV) or None
    info = machine(pg_url)
    info["code_at_start"] = code_state()
    log(f"wake benchmark: {n} jobs, {k} wakes, PostgreSQL {'yes' if pg_url else 'skipped'}")
    with tempfile.TemporaryDirectory(prefix="wakes-bench-pycache-") as pycache:
        BYTECODE["PYTHONPYCACHEPREFIX"] = pycache
        subprocess.run(
            [sys.executable, "-c", "import controller.cli.main, controller.store.jobs"],
            cwd=ROOT,
            env=worker_env(),
            check=True,
            timeout=120,
        )
        queue = bench_queue(n, pg_url)
        wakes = bench_wakes(k)
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    info["code_at_end"] = code_state()
    seconds = time.perf_counter() - STARTED
    print(report(info, queue, pg_url is None, wakes, n, k))
    print(f"\n(benchmark took {seconds:.0f} s)")
    if args.json is not None:
        payload = {
            "machine": info,
            "jobs": n,
            "wakes_count": k,
            "benchmark_seconds": seconds,
            "queue": [asdict(r) for r in queue],
            "postgresql_skipped": pg_url is None,
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
        text = json.dumps(no_nan(payload), indent=2, sort_keys=True, default=str)
        args.json.write_text(text + "\n")
        log(f"wrote {args.json}")
    failed = any(r.duplicates or r.missing for r in queue) or wakes.problems
    if failed:
        log("correctness check failed (see the report)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
