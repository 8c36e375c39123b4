"""Benchmark: how fast a post made on one host wakes an agent on another, two hosts with a
daemon each, with LISTEN/NOTIFY and with the poll only (issue 12).

Run it from the repository root with the project's interpreter, under a PostgreSQL::

    scripts/with-postgres .venv/bin/python bench/cross_host_wakes.py --json /tmp/xhost.json
    scripts/with-postgres .venv/bin/python bench/cross_host_wakes.py --quick  # 10 posts a mode

Every ratio printed is between numbers measured in the same run of this script.

The set-up is that of two machines sharing one PostgreSQL (DESIGN §9), on one machine: an
origin repository whose committed ``desired/`` declares a Workspace with ``stateUrl`` (a new
PostgreSQL database, created for the run and dropped after it) and ``hosts: [alpha (lane a),
beta (lane b)]``, the Lanes ``a`` and ``b``, a Binding ``bot`` on lane ``a`` running
``tests/stubs/agent.py --quiet --record FILE``, a Thread ``review: [bot, human]`` and a
permissive TriggerPolicy (bench/wakes.py's part (b)). Two clones of it, ``alpha/`` and
``beta/``, each with its own daemon ``controller run --host NAME --resync 60 -o json`` and its
own tmux server (the default socket, which is per clone). An untimed ``--once`` per host
first creates each host's lane (and alpha's agent).

The posts are ``controller post review --as human TEXT`` spawned in beta's clone: the thin
client (controller/fast.py) finds beta's daemon on ``beta/.lanes/controller.sock``, the daemon
writes the message and ``pg_notify`` in its transaction, and alpha's daemon, LISTENing, wakes
its agent (or, polling only, finds the message at its next 250 ms poll). The latency runs from
just before the spawn (the command's own start included, as the target asks) until the stub's
record file has one more line (polled every 10 ms). The store's timestamps split it: message
``at`` (beta's daemon, just before the insert), job ``created_at`` (a daemon queued the wake),
attempt ``at`` (alpha claimed it and starts typing).

That each post went through beta's daemon is checked, not assumed: the post processes run
with ``PGOPTIONS=-c default_transaction_read_only=on``, which only a PostgreSQL connection
made by that process would read. The thin client opens none; had the command line taken over
and written the message itself, its insert would fail and the post exit non-zero (counted as
a problem). Their own wall time is reported too.

Modes (both daemons get the same options): ``listen`` (the default: LISTEN and the 250 ms
poll) and ``poll only`` (``--no-listen``). They take turns: 5 rounds (1 with ``--quick``), in
each of which every mode gets fresh daemons and 10 posts, 1.2 s plus a random 0 to 0.25 s
apart, so 50 posts per mode (10 with ``--quick``). Everything (daemons, tmux servers, agents,
folders, the database) is removed at the end, also on error. Exit status: 0, or 1 when a wake
did not arrive, a post failed, a wake was delivered twice or by beta, a daemon did not exit 0,
or PostgreSQL is missing.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import harness as h  # bench/harness.py (scripts run as `python bench/<name>.py`)
import sqlalchemy as sa
import wakes as w  # bench/wakes.py: percentiles, timings, the database
from harness import log

from controller.runtime.wiring import default_socket
from controller.store import queries, tables

ROUNDS, PER_ROUND = 5, 10
TARGET_P50 = 1.0
HOSTS = ("alpha", "beta")
MODES: dict[str, tuple[str, ...]] = {"listen": (), "poll only": ("--no-listen",)}
BASELINE = "poll only"
READ_ONLY = {"PGOPTIONS": "-c default_transaction_read_only=on"}


@dataclass(slots=True)
class Post:
    """One post made on beta and the wake it caused on alpha (seconds; nan when missing)."""

    n: int
    latency_s: float
    """From just before ``controller post`` is spawned until the stub recorded the line."""
    post_s: float
    """Wall time of the ``controller post`` process."""
    post_start: float
    line_at: float
    returncode: int | None = None
    message_at: float = math.nan
    job_created_at: float = math.nan
    attempt_at: float = math.nan
    jobs: int = 0
    """Trigger jobs queued for bot for this message (a host may queue one after the owner
    claimed the first: it is then claimed and found done)."""


@dataclass(slots=True)
class Mode:
    """The daemons' options, and what the posts made while they ran measured."""

    name: str
    options: tuple[str, ...]
    posts: list[Post] = field(default_factory=list)
    wakes: dict[str, list[str]] = field(default_factory=lambda: {n: [] for n in HOSTS})
    """Each host's daemon's logged wake results (``delivered`` ...)."""
    listening: dict[str, list[str]] = field(default_factory=lambda: {n: [] for n in HOSTS})
    exit_codes: dict[str, list[int | None]] = field(default_factory=lambda: {n: [] for n in HOSTS})
    started_s: list[float] = field(default_factory=list)
    """Seconds until both daemons had passed (and listened)."""


@dataclass(slots=True)
class Host:
    """One clone with its own ``--host`` and daemon."""

    name: str
    path: Path
    log_path: Path
    daemon: subprocess.Popen[bytes] | None = None

    def entries(self) -> list[dict[str, Any]]:
        """The daemon's JSON log lines so far."""
        found = []
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    found.append(entry)
        return found

    def events(self) -> set[str]:
        """The event names logged so far."""
        return {str(e.get("event", "")) for e in self.entries()}

    def stop(self) -> int | None:
        """SIGTERM the daemon and wait (SIGKILL after a while); its exit status."""
        proc, self.daemon = self.daemon, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=w.DAEMON_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode


class Rig(h.Repo):
    """An origin repository with the desired state, and a clone per host."""

    url = ""
    workspace = ""
    hosts: dict[str, Host]

    @property
    def record(self) -> Path:
        """What the stub agent on alpha read from its terminal (JSON lines)."""
        return self.top / "bot.jsonl"

    def sockets(self) -> tuple[str, ...]:
        """Each clone's own tmux server (the default socket name is per repository)."""
        return tuple(default_socket(self.top / name) for name in HOSTS)

    def ctl(self, *args: str) -> list[str]:
        """The controller's command line."""
        return [sys.executable, "-m", "controller", *args]

    def create(self) -> None:
        """The desired state, committed in the origin, and the two clones."""
        home = self.top / "home"
        home.mkdir()
        self.env["HOME"] = str(home)
        self.workspace = f"xhost{secrets.token_hex(3)}"
        self.write(
            "workspace.yaml",
            f"""\
apiVersion: lanes/v1
kind: Workspace
metadata: {{name: {self.workspace}}}
spec:
  stateUrl: "{self.url}"
  hosts:
    - {{name: alpha, lanes: [a]}}
    - {{name: beta, lanes: [b]}}
""",
        )
        self.write("lanes.yaml", LANES)
        command = f"[{sys.executable}, {h.STUB}, --quiet, --record, {self.record}]"
        self.write("wakes.yaml", WAKES.format(command=command))
        for argv in (("add", "desired"), ("commit", "-qm", "desired")):
            h.run_checked(("git", *argv), cwd=self.path, env=self.env)
        self.hosts = {}
        for name in HOSTS:
            clone = self.top / name
            h.run_checked(
                ("git", "clone", "-q", str(self.path), str(clone)), cwd=self.top, env=self.env
            )
            self.hosts[name] = Host(name, clone, self.top / f"daemon-{name}.log")

    def once(self, host: str) -> None:
        """An untimed ``--once`` on ``host``: its lane (and agent) exist afterwards."""
        h.run_checked(self.ctl("--once", "--host", host), cwd=self.hosts[host].path, env=self.env)

    def start(self, options: Sequence[str]) -> float:
        """Both daemons with ``options``; seconds until both passed (and listen)."""
        t0 = time.perf_counter()
        for host in self.hosts.values():
            with host.log_path.open("wb") as out:
                host.daemon = subprocess.Popen(
                    self.ctl("run", "--host", host.name, "--resync", "60", "-o", "json", *options),
                    cwd=host.path,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
        wanted = {"pass"} if "--no-listen" in options else {"pass", "listening for posts"}

        def ready() -> bool:
            return all(wanted <= host.events() for host in self.hosts.values())

        h.wait_for(ready, w.START_TIMEOUT, self.diagnose)
        return time.perf_counter() - t0

    def stop(self) -> dict[str, int | None]:
        """Stop both daemons; their exit statuses."""
        return {name: host.stop() for name, host in self.hosts.items()}

    def diagnose(self) -> str:
        """What to show when something did not happen in time."""
        parts = []
        for host in getattr(self, "hosts", {}).values():
            tail = (
                host.log_path.read_text(errors="replace")[-2000:] if host.log_path.exists() else ""
            )
            alive = host.daemon is not None and host.daemon.poll() is None
            parts.append(f"{host.name}: daemon alive: {alive}; log tail:\n{tail}")
        return "\n".join(parts)

    def lines(self) -> int:
        """How many lines the stub read from its terminal so far."""
        if not self.record.exists():
            return 0
        count = 0
        for raw in self.record.read_text().splitlines():
            with contextlib.suppress(ValueError):
                count += "line" in json.loads(raw)
        return count

    def post_once(self, n: int, body: str) -> Post:
        """Post ``body`` in beta's clone; time the post process and the line reaching alpha's
        agent."""
        before = self.lines()
        post_start = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            self.ctl("post", "review", "--as", "human", body),
            cwd=self.hosts["beta"].path,
            env={**self.env, **READ_ONLY},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        post = Post(n, math.nan, math.nan, post_start, math.nan)
        try:
            while time.perf_counter() < t0 + w.WAKE_TIMEOUT:
                if math.isnan(post.post_s) and proc.poll() is not None:
                    post.post_s = time.perf_counter() - t0
                    post.returncode = proc.returncode
                if math.isnan(post.latency_s) and self.lines() > before:
                    post.latency_s = time.perf_counter() - t0
                    post.line_at = time.time()
                if not (math.isnan(post.post_s) or math.isnan(post.latency_s)):
                    break
                if post.returncode not in (None, 0):
                    break
                time.sleep(w.POLL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            if proc.stderr is not None:
                proc.stderr.close()
        if proc.returncode != 0:
            log(f"  post {n} exited {proc.returncode}: {err.strip()[-300:]}")
        return post

    def stamp(self, posts: Mapping[str, Post]) -> None:
        """Each post's message ``at``, its job's ``created_at`` and delivered attempt ``at``."""
        store = queries.Store.open(self.url, self.workspace)
        m, j, a = tables.messages, tables.trigger_jobs, tables.trigger_attempts
        try:
            with store.engine.connect() as conn:
                where = (m.c.workspace == self.workspace, m.c.thread == "review")
                query = sa.select(m.c.body, m.c.seq, m.c.at).where(*where)
                messages = {str(r.body): (int(r.seq), r.at) for r in conn.execute(query)}
                where = (j.c.workspace == self.workspace, j.c.participant == "bot")
                query = sa.select(j.c.id, j.c.unread_seq, j.c.created_at).where(*where)
                jobs = [(int(r.id), int(r.unread_seq), r.created_at) for r in conn.execute(query)]
                query = sa.select(a.c.job_id, a.c.at).where(
                    a.c.workspace == self.workspace, a.c.verdict == "delivered"
                )
                attempts: dict[int, Any] = {}
                for r in conn.execute(query.order_by(a.c.id)):
                    attempts.setdefault(int(r.job_id), r.at)
        finally:
            store.close()
        # Both hosts may queue a wake for one message (anyone may enqueue): the first job
        # created, and the delivered attempt of any job of that message, count.
        created: dict[int, list[float]] = {}
        typed: dict[int, list[float]] = {}
        for job_id, seq, at in jobs:
            created.setdefault(seq, []).append(w._epoch(at))
            if job_id in attempts:
                typed.setdefault(seq, []).append(w._epoch(attempts[job_id]))
        for text, post in posts.items():
            seq, at = messages.get(text, (0, None))
            post.message_at = w._epoch(at)
            post.job_created_at = min(created.get(seq, [math.nan]))
            post.attempt_at = min(typed.get(seq, [math.nan]))
            post.jobs = len(created.get(seq, []))

    def control(self) -> int:
        """With both daemons stopped, one post in beta as the measured ones are made: the
        command line then writes to the store itself, which ``READ_ONLY`` must make fail.
        Its exit status (non-zero: the check of the measured posts holds)."""
        argv = self.ctl("post", "review", "--as", "human", "control: no daemon")
        env = {**self.env, **READ_ONLY}
        done = h.run_quiet(argv, cwd=self.hosts["beta"].path, env=env)
        log(
            f"control post without beta's daemon exited {done.returncode}: "
            f"{done.stderr.strip().splitlines()[-1:]}"
        )
        return done.returncode

    def delivered_events(self) -> list[dict[str, Any]]:
        """The ``TriggerDelivered`` events' data (job and host, when the event has them)."""
        store = queries.Store.open(self.url, self.workspace)
        e = tables.events
        try:
            with store.engine.connect() as conn:
                query = sa.select(e.c.data).where(
                    e.c.workspace == self.workspace, e.c.kind == "TriggerDelivered"
                )
                return [dict(r.data or {}) for r in conn.execute(query)]
        finally:
            store.close()

    def cleanup(self) -> list[str]:
        """Stop the daemons first, then everything else this rig started."""
        with contextlib.suppress(Exception):
            self.stop()
        return super().cleanup()


LANES = """\
apiVersion: lanes/v1
kind: Lane
metadata: {name: a}
---
apiVersion: lanes/v1
kind: Lane
metadata: {name: b}
"""

WAKES = """\
apiVersion: lanes/v1
kind: Binding
metadata: {{name: a-bot}}
spec:
  lane: a
  participant: bot
  command: {command}
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


@dataclass(frozen=True, slots=True)
class Checks:
    """What the run checks besides the posts: the deliveries, and the control post."""

    delivered: list[dict[str, Any]]
    """The ``TriggerDelivered`` events' data."""
    control_exit: int
    """The exit status of the post made with beta's daemon stopped (must not be 0)."""


def bench(url: str, rounds: int) -> tuple[list[Mode], Checks]:
    """The modes in turn, ``rounds`` times: fresh daemons each, ``PER_ROUND`` posts."""
    modes = [Mode(name, options) for name, options in MODES.items()]
    with h.fresh_repo(Rig, 1, prefix="xhost-bench-", tmux=True) as rig:
        rig.url = url
        try:
            rig.create()
            log("creating each host's lane and alpha's agent (untimed --once per host)")
            rig.once("alpha")
            rig.once("beta")
            h.wait_for(rig.record.exists, w.START_TIMEOUT, rig.diagnose)
            posted: dict[str, Post] = {}
            for r in range(1, rounds + 1):
                for mode in modes:
                    posted.update(run_mode(rig, mode, r))
            control = rig.control()
            rig.stamp(posted)
            delivered = rig.delivered_events()
        except Exception:
            log("failed; " + rig.diagnose())
            raise
    return modes, Checks(delivered, control)


def run_mode(rig: Rig, mode: Mode, r: int) -> dict[str, Post]:
    """Fresh daemons, ``PER_ROUND`` posts, the daemons stopped; the posts by their bodies."""
    jitter = random.Random(f"{w.SEED} {mode.name} {r}")
    log(f"round {r}, {mode.name}: starting both daemons {' '.join(mode.options)}")
    mode.started_s.append(rig.start(mode.options))
    time.sleep(1.5)  # the daemons' first wakes, if any, have passed
    posted = {}
    for _ in range(PER_ROUND):
        n = len(mode.posts) + 1
        time.sleep(w.BETWEEN_POSTS + jitter.uniform(0, w.POST_JITTER))
        text = f"{mode.name} {n}"
        post = posted[text] = rig.post_once(n, text)
        mode.posts.append(post)
        log(
            f"round {r}, {mode.name}: post {n}: latency {w.ms(post.latency_s)} ms, "
            f"post command {w.ms(post.post_s)} ms"
        )
    time.sleep(1.0)  # the last delivery's bookkeeping
    for name, host in rig.hosts.items():
        entries = host.entries()
        mode.wakes[name] += [str(e.get("result")) for e in entries if e.get("event") == "wake"]
        mode.listening[name] += [
            str(e["event"]) for e in entries if str(e.get("event", "")).startswith("listening")
        ]
    for name, code in rig.stop().items():
        mode.exit_codes[name].append(code)
    return posted


# -- report -------------------------------------------------------------------------------------


def rows(mode: Mode) -> dict[str, list[float]]:
    """The latency and its parts (seconds) over the mode's posts."""
    ps = mode.posts
    return {
        "post -> keystrokes (latency)": [x.latency_s for x in ps],
        "controller post in beta (own wall time)": [x.post_s for x in ps],
        "post spawned -> message committed (beta)": [x.message_at - x.post_start for x in ps],
        "message -> job enqueued (noticed)": [x.job_created_at - x.message_at for x in ps],
        "job enqueued -> typing starts (alpha)": [x.attempt_at - x.job_created_at for x in ps],
        "typing starts -> line recorded": [x.line_at - x.attempt_at for x in ps],
        "message -> typing starts (noticed, claimed)": [x.attempt_at - x.message_at for x in ps],
        "message -> line recorded (alpha's side)": [x.line_at - x.message_at for x in ps],
    }


def problems(modes: Sequence[Mode], checks: Checks) -> list[str]:
    """What went wrong: a wake that never came, a failed post, a double or misplaced delivery,
    a daemon that did not exit 0."""
    found = []
    for mode in modes:
        missing = sum(math.isnan(x.latency_s) for x in mode.posts)
        if missing:
            found.append(f"{mode.name}: {missing} wake(s) did not reach the agent in time")
        failed = [x.n for x in mode.posts if x.returncode != 0]
        if failed:
            found.append(f"{mode.name}: posts {failed} failed (not through beta's daemon?)")
        if "delivered" in mode.wakes["beta"]:
            found.append(f"{mode.name}: beta delivered a wake (only alpha owns bot)")
        if mode.wakes["alpha"].count("delivered") != len(mode.posts):
            found.append(
                f"{mode.name}: alpha delivered {mode.wakes['alpha'].count('delivered')} wakes "
                f"for {len(mode.posts)} posts"
            )
        for host, codes in mode.exit_codes.items():
            if any(code != 0 for code in codes):
                found.append(f"{mode.name}: {host}'s daemon exit codes {codes}")
    jobs = [d.get("job") for d in checks.delivered]
    if len(jobs) != len(set(jobs)):
        found.append("a job was delivered more than once (TriggerDelivered events)")
    if checks.control_exit == 0:
        found.append("the control post (no daemon) succeeded: PGOPTIONS proves nothing here")
    return found


def results(mode: Mode, host: str) -> str:
    """A host's logged wake results, counted (``delivered 50, done 3``)."""
    counted = Counter(mode.wakes[host]).most_common()
    return ", ".join(f"{name} {n}" for name, n in counted) or "none"


def stats(values: Sequence[float]) -> list[float]:
    """p50, p95, max, min (nan-free)."""
    seen = [v for v in values if not math.isnan(v)]
    high, low = (max(seen), min(seen)) if seen else (math.nan, math.nan)
    return [w.pct(values, 0.5), w.pct(values, 0.95), high, low]


def report(
    info: Mapping[str, Any],
    modes: Sequence[Mode],
    checks: Checks,
    rounds: int,
) -> str:
    """The readable table, one block of rows per mode, the ratios and the checks."""
    title = "Cross-host wake benchmark, two hosts with a daemon each (one run; ratios within it)"
    out = [*h.header(title, info), ""]
    out.append(
        f"{rounds} round(s) x {len(modes)} modes x {PER_ROUND} posts, "
        f"{w.BETWEEN_POSTS}-{w.BETWEEN_POSTS + w.POST_JITTER:.2f} s apart: `controller post` "
        "spawned in beta's clone (through beta's daemon), agent on alpha; fresh daemons "
        "`run --host alpha|beta --resync 60` per mode and round"
    )
    table = []
    for mode in modes:
        for name, values in rows(mode).items():
            table.append([f"{mode.name}: {name}", *(w.ms(c) for c in stats(values))])
    out += h.table(["ms", "p50", "p95", "max", "min"], table)
    latency = {m.name: [x.latency_s for x in m.posts] for m in modes}
    for mode in modes:
        p50, p95 = w.pct(latency[mode.name], 0.5), w.pct(latency[mode.name], 0.95)
        b50, b95 = w.pct(latency[BASELINE], 0.5), w.pct(latency[BASELINE], 0.95)
        fast = sum(x.post_s < 0.3 for x in mode.posts)
        started = w.pct(mode.started_s, 0.5)
        ok = all(x.returncode == 0 for x in mode.posts)
        queued = ", ".join(
            f"{k} x {v}" for k, v in sorted(Counter(x.jobs for x in mode.posts).items())
        )
        out.append(
            f"  {mode.name}: latency p50 {w.ms(p50)} ms ({p50 / b50:.2f}x of {BASELINE}), "
            f"p95 {w.ms(p95)} ms ({p95 / b95:.2f}x), max {w.ms(max(latency[mode.name]))} ms; "
            f"target p50 < {TARGET_P50:.0f} s: {h.verdict(p50 < TARGET_P50)}"
        )
        out.append(
            f"    {len(mode.posts)} posts, all exit 0 under PGOPTIONS read-only: {ok}; "
            f"{fast} took under 300 ms; wake results logged by alpha: {results(mode, 'alpha')}, "
            f"by beta: {results(mode, 'beta')}; listener: "
            f"{', '.join(sorted(set(mode.listening['alpha']))) or 'off'}; both daemons ready "
            f"after {started:.1f} s (median); jobs queued per post (jobs x posts): {queued}"
        )
    jobs = [d.get("job") for d in checks.delivered]
    out.append(
        f"  TriggerDelivered events: {len(jobs)}, distinct jobs {len(set(jobs))}; control post "
        f"in beta with its daemon stopped (under the same PGOPTIONS): exit {checks.control_exit} "
        "(must fail: the command line cannot write there)"
    )
    return "\n".join(out + [f"  PROBLEM: {p}" for p in problems(modes, checks)])


def payload(
    info: Mapping[str, Any],
    modes: Sequence[Mode],
    checks: Checks,
    rounds: int,
) -> dict[str, Any]:
    """Every raw number."""
    return {
        "machine": info,
        "rounds": rounds,
        "per_round": PER_ROUND,
        "delivered_events": checks.delivered,
        "control_post_exit": checks.control_exit,
        "modes": {
            m.name: {
                "options": list(m.options),
                "posts": [asdict(x) for x in m.posts],
                "components_s": rows(m),
                "daemon_wake_results": m.wakes,
                "listener_events": m.listening,
                "exit_codes": m.exit_codes,
                "daemons_ready_s": m.started_s,
            }
            for m in modes
        },
        "problems": problems(modes, checks),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run every mode, print the table, optionally write JSON."""
    parser = h.options(__doc__, reps=False)
    args = parser.parse_args(argv)
    h.require(parser, "git", "tmux")
    pg_url = os.environ.get(w.PG_ENV) or None
    if pg_url is None:
        log(f"PostgreSQL needed: {w.PG_ENV} is not set (run through scripts/with-postgres)")
        return 1
    rounds = 1 if args.quick else ROUNDS
    info = h.machine("git", "tmux")
    info["tools"]["PostgreSQL"] = w.pg_version(pg_url)
    log(f"cross-host wake benchmark: {rounds} round(s) of {len(MODES)} modes, two hosts")
    with h.private_bytecode("xhost-bench-"), w.fresh_database("postgresql", pg_url) as url:
        h.warm_bytecode("controller.store.notifications", "controller.fast")
        modes, checks = bench(url, rounds)
    h.at_end(info)
    h.publish(report(info, modes, checks, rounds), payload(info, modes, checks, rounds), args.json)
    return 1 if problems(modes, checks) else 0


if __name__ == "__main__":
    sys.exit(main())
