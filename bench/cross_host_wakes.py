"""Benchmark: how fast a post made on another host wakes an agent, with LISTEN/NOTIFY and without.

Run it from the repository root with the project's interpreter, under a PostgreSQL::

    scripts/with-postgres .venv/bin/python bench/cross_host_wakes.py --json /tmp/xhost.json
    scripts/with-postgres .venv/bin/python bench/cross_host_wakes.py --quick   # 10 posts a mode

Every ratio printed is between numbers measured in the same run of this script.

The set-up is bench/wakes.py's part (b) (one lane, a Binding ``bot`` running
``tests/stubs/agent.py --quiet --record FILE``, a Thread ``review: [bot, human]``, a permissive
TriggerPolicy, a private tmux server), with two differences. The store is a new PostgreSQL
database (created for the run, dropped after it; ``CONTROLLER_STATE``). And the posts come from
"another host": a second clone of the repository with the same ``desired/`` and store, where no
daemon answers on ``.lanes/controller.sock``, so each ``controller post`` writes to PostgreSQL
itself, as on another machine, instead of asking the daemon (which would nudge its wake loop
directly). There is one daemon (``controller run --resync 60 -o json``) in the first clone:
this clone has no ``--host`` yet, so the two hosts share one machine and one tmux server.

The daemon runs in three modes, against the same agent:

- ``listen``: the default, LISTEN on PostgreSQL and the 250 ms poll;
- ``poll only``: ``--no-listen`` (the poll alone, as before LISTEN/NOTIFY);
- ``listen, poll 30 s``: ``--wake-poll 30``: nothing but the notification can explain a wake
  under 30 s.

The modes take turns: 10 rounds, in each of which every mode gets a fresh daemon and 10 posts
(so load from other processes on the machine falls on every mode alike). That is 100 posts
per mode (10 with ``--quick``: 1 round), 1.2 s plus a random 0 to 0.25 s apart (the previous
delivery's own-echo window passes, and posts land at random phases of the poll). Each post is
made in one of two ways, alternately, so each mode has 50 of each (5 with ``--quick``):

- ``cli``: ``controller post`` spawned in the other clone; latency from just before it is
  spawned (the command's own start included, as the target asks);
- ``resident``: a long-running Python process of the other host, with the store open, posts
  with ``messaging.post`` (what a daemon on the other host does for a ``post`` that reached
  it through its socket); latency from just before the request is written to its stdin.

The latency ends when the stub's record file has one more line (polled every 10 ms). The
store's timestamps split it: message ``at`` (taken just before the insert) and job
``created_at`` (the daemon noticed the message and queued the wake). Everything is removed
at the end, also on error. Exit status: 0, or 1 when a wake did not arrive, a daemon did not
exit 0, or PostgreSQL is missing.
"""

from __future__ import annotations

import math
import os
import random
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import harness as h  # bench/harness.py (scripts run as `python bench/<name>.py`)
import sqlalchemy as sa
import wakes as w  # bench/wakes.py: the rig of its part (b)
from harness import log

from controller.store import queries, tables

ROUNDS = 10
PER_ROUND = 10
TARGET_P50 = 1.0
MODES: dict[str, tuple[str, ...]] = {
    "listen": (),
    "poll only": ("--no-listen",),
    "listen, poll 30 s": ("--wake-poll", "30"),
}
BASELINE = "poll only"
WAYS = ("cli", "resident")

POSTER = """
import sys
from datetime import UTC, datetime
from controller.store import messaging, queries
store = queries.Store.open(sys.argv[1], sys.argv[2])
print("ready", flush=True)
for line in sys.stdin:
    print(messaging.post(store, "review", "human", line.strip(), datetime.now(UTC)), flush=True)
"""


@dataclass(slots=True)
class Mode:
    """A daemon's options, and what the posts made while it ran measured."""

    name: str
    options: tuple[str, ...]
    wakes: dict[str, list[w.Wake]] = field(default_factory=lambda: {way: [] for way in WAYS})
    results: list[str] = field(default_factory=list)
    """The daemons' logged wake results (``delivered`` ...)."""
    listening: list[str] = field(default_factory=list)
    """The daemons' listener events (``listening for posts`` ...)."""
    exit_codes: list[int | None] = field(default_factory=list)


class Rig(w.Rig):
    """bench/wakes.py's rig on PostgreSQL, with another clone that posts."""

    url = ""
    workspace = ""

    @property
    def other(self) -> Path:
        """The other host's clone of the repository."""
        return self.top / "other"

    def create(self) -> None:
        """bench/wakes.py's desired state under a workspace of its own, and the other clone."""
        super().create()
        self.workspace = f"xhost{secrets.token_hex(3)}"
        text = (self.desired / "workspace.yaml").read_text()
        self.write(
            "workspace.yaml", text.replace(f"name: {w.WORKSPACE}}}", f"name: {self.workspace}}}")
        )
        self.env["CONTROLLER_STATE"] = self.url
        argv = ("git", "clone", "-q", str(self.path), str(self.other))
        h.run_checked(argv, cwd=self.top, env=self.env)
        shutil.copytree(self.desired, self.other / "desired")

    def start(self, options: Sequence[str]) -> float:
        """Start the daemon with ``options``; seconds until it is ready (and listening)."""
        t0 = time.perf_counter()
        with self.daemon_log.open("wb") as out:
            self.daemon = subprocess.Popen(
                self.ctl("run", "--resync", "60", "-o", "json", *options),
                cwd=self.path,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wanted = {"pass"} if "--no-listen" in options else {"pass", "listening for posts"}
        h.wait_for(lambda: wanted <= set(self.events()), w.START_TIMEOUT, self.diagnose)
        return time.perf_counter() - t0

    poster: subprocess.Popen[str] | None = None

    def start_poster(self) -> None:
        """The other host's resident process that posts (``POSTER``)."""
        self.poster = subprocess.Popen(
            [sys.executable, "-c", POSTER, self.url, self.workspace],
            cwd=self.other,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.poster.stdout is not None
        if self.poster.stdout.readline().strip() != "ready":
            raise RuntimeError("the resident poster did not start")

    def stop_poster(self) -> None:
        """Close its stdin: it exits."""
        if self.poster is not None:
            if self.poster.stdin is not None:
                self.poster.stdin.close()
            self.poster.wait(timeout=30)
            if self.poster.stdout is not None:
                self.poster.stdout.close()
            self.poster = None

    def post_once(self, n: int, body: str, way: str) -> w.Wake:
        """Post ``body`` from the other host (``way``: cli or resident); time it until the
        agent read the wake."""
        before = self.lines()
        post_start = time.time()
        t0 = time.perf_counter()
        if way == "resident":
            assert self.poster is not None
            assert self.poster.stdin is not None
            self.poster.stdin.write(body + "\n")
            self.poster.stdin.flush()
            latency, line_at = self._until_read(before, t0)
            assert self.poster.stdout is not None
            self.poster.stdout.readline()  # its sequence number
            return w.Wake(n, latency, math.nan, post_start, line_at)
        proc = subprocess.Popen(
            self.ctl("post", "review", "--as", "human", body),
            cwd=self.other,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            latency, line_at = self._until_read(before, t0)
            proc.wait(timeout=w.WAKE_TIMEOUT)  # the wake may come before the post exits
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"controller post exited {proc.returncode}")
        return w.Wake(n, latency, math.nan, post_start, line_at)

    def _until_read(self, before: int, t0: float) -> tuple[float, float]:
        """Seconds from ``t0`` until the record has more than ``before`` lines, and when."""
        while time.perf_counter() < t0 + w.WAKE_TIMEOUT:
            if self.lines() > before:
                return time.perf_counter() - t0, time.time()
            time.sleep(w.POLL)
        return math.nan, math.nan

    def cleanup(self) -> list[str]:
        """Stop the poster too."""
        if self.poster is not None:
            self.poster.kill()
            self.poster.wait()
            self.poster = None
        return super().cleanup()

    def stamp(self, wakes: Mapping[str, w.Wake]) -> None:
        """Each wake's message ``at`` and job ``created_at`` (by its post's body)."""
        store = queries.Store.open(self.url, self.workspace)
        m, j = tables.messages, tables.trigger_jobs
        try:
            with store.engine.connect() as conn:
                where = (m.c.workspace == self.workspace, m.c.thread == "review")
                query = sa.select(m.c.body, m.c.seq, m.c.at).where(*where)
                messages = {str(r.body): (int(r.seq), r.at) for r in conn.execute(query)}
                where = (j.c.workspace == self.workspace, j.c.participant == "bot")
                query = sa.select(j.c.unread_seq, j.c.created_at).where(*where)
                jobs = {int(r.unread_seq): r.created_at for r in conn.execute(query)}
        finally:
            store.close()
        for text, wake in wakes.items():
            seq, at = messages.get(text, (0, None))
            wake.message_at = w._epoch(at)
            wake.job_created_at = w._epoch(jobs.get(seq))


def bench(url: str, rounds: int) -> list[Mode]:
    """The modes in turn, ``rounds`` times: a daemon each, ``PER_ROUND`` posts."""
    modes = [Mode(name, options) for name, options in MODES.items()]
    with h.fresh_repo(Rig, 1, prefix="xhost-bench-", tmux=True) as rig:
        rig.url = url
        try:
            rig.create()
            log("warming bytecode, creating the lane and the agent")
            rig.run(*rig.ctl("--once"))
            h.wait_for(rig.record.exists, w.START_TIMEOUT, rig.diagnose)
            argv = rig.ctl("post", "review", "--as", "human", "warm")
            h.run_checked(argv, cwd=rig.other, env=rig.env)
            rig.start_poster()
            posted: dict[str, w.Wake] = {}
            for r in range(1, rounds + 1):
                for mode in modes:
                    posted.update(run_mode(rig, mode, r))
            rig.stop_poster()
            rig.stamp(posted)
        except Exception:
            log("failed; " + rig.diagnose())
            raise
    return modes


def run_mode(rig: Rig, mode: Mode, r: int) -> dict[str, w.Wake]:
    """One daemon, ``PER_ROUND`` posts alternating the ways, the daemon stopped; the posts
    by their bodies."""
    jitter = random.Random(f"{w.SEED} {mode.name} {r}")
    log(f"round {r}, {mode.name}: starting the daemon {' '.join(mode.options)}")
    rig.start(mode.options)
    time.sleep(1.5)  # the wake of the previous daemon's last post, if any, has passed
    posted = {}
    for i in range(PER_ROUND):
        way = WAYS[i % len(WAYS)]
        n = len(mode.wakes[way]) + 1
        time.sleep(w.BETWEEN_POSTS + jitter.uniform(0, w.POST_JITTER))
        text = f"{mode.name} {way} {n}"
        wake = posted[text] = rig.post_once(n, text, way)
        mode.wakes[way].append(wake)
        log(f"round {r}, {mode.name}: {way} post {n}: latency {w.ms(wake.latency_s)} ms")
    time.sleep(1.0)  # the last delivery's bookkeeping
    entries = rig.log_entries()
    mode.results += [str(e.get("result")) for e in entries if e.get("event") == "wake"]
    mode.listening += [
        str(e["event"]) for e in entries if str(e.get("event", "")).startswith("listening")
    ]
    mode.exit_codes.append(rig.stop_daemon())
    return posted


# -- report -------------------------------------------------------------------------------------


def rows(mode: Mode) -> dict[str, list[float]]:
    """The latency and its parts (seconds) over the mode's posts, by way."""
    found: dict[str, list[float]] = {}
    for way, ws in mode.wakes.items():
        start = "spawned" if way == "cli" else "written"
        found |= {
            f"{way}: post -> keystrokes (latency)": [x.latency_s for x in ws],
            f"{way}: post {start} -> message committed": [x.message_at - x.post_start for x in ws],
            f"{way}: message -> job enqueued (noticed)": [
                x.job_created_at - x.message_at for x in ws
            ],
            f"{way}: message -> line recorded (daemon side)": [
                x.line_at - x.message_at for x in ws
            ],
        }
    return found


def problems(modes: Sequence[Mode]) -> list[str]:
    """What went wrong: a wake that never came, a daemon that did not exit 0."""
    found = []
    for mode in modes:
        missing = sum(math.isnan(x.latency_s) for ws in mode.wakes.values() for x in ws)
        if missing:
            found.append(f"{mode.name}: {missing} wake(s) did not reach the agent in time")
        if any(code != 0 for code in mode.exit_codes):
            found.append(f"{mode.name}: daemon exit codes {mode.exit_codes}")
    return found


def p50(mode: Mode, way: str) -> float:
    """The median latency of one way of posting in one mode."""
    return w.pct([x.latency_s for x in mode.wakes[way]], 0.5)


def report(info: Mapping[str, Any], modes: Sequence[Mode], rounds: int) -> str:
    """The readable table, one block of rows per mode, and the ratios."""
    title = "Cross-host wake benchmark (one run; every ratio is between numbers of this run)"
    out = [*h.header(title, info), ""]
    out.append(
        f"{rounds} round(s) x {len(modes)} modes x {PER_ROUND} posts (ways alternating), "
        f"{w.BETWEEN_POSTS}-{w.BETWEEN_POSTS + w.POST_JITTER:.2f} s apart, from another clone "
        "(no daemon socket there); one daemon `run --resync 60` per mode and round (no --host "
        "in this clone: both hosts on one machine)"
    )
    table = []
    for mode in modes:
        for name, values in rows(mode).items():
            seen = [v for v in values if not math.isnan(v)]
            high, low = (max(seen), min(seen)) if seen else (math.nan, math.nan)
            cells = [w.pct(values, 0.5), w.pct(values, 0.95), high, low]
            table.append([f"{mode.name}: {name}", *(w.ms(c) for c in cells)])
    out += h.table(["ms", "p50", "p95", "max", "min"], table)
    base = next(m for m in modes if m.name == BASELINE)
    for mode in modes:
        ratios = ", ".join(
            f"{way} p50 {w.ms(p50(mode, way))} ms ({p50(mode, way) / p50(base, way):.2f}x)"
            for way in WAYS
        )
        delivered = sum(r == "delivered" for r in mode.results)
        met = h.verdict(p50(mode, "cli") < TARGET_P50)
        out.append(
            f"  {mode.name}: {ratios} (x: of {BASELINE}); target cli p50 < {TARGET_P50:.0f} s: "
            f"{met}; {delivered} delivered of {len(mode.results)} wakes logged; "
            f"listener: {', '.join(sorted(set(mode.listening))) or 'off'}"
        )
    return "\n".join(out + [f"  PROBLEM: {p}" for p in problems(modes)])


def payload(info: Mapping[str, Any], modes: Sequence[Mode], rounds: int) -> dict[str, Any]:
    """Every raw number."""
    return {
        "machine": info,
        "rounds": rounds,
        "per_round": PER_ROUND,
        "modes": {
            m.name: {
                "options": list(m.options),
                "wakes": {way: [asdict(x) for x in ws] for way, ws in m.wakes.items()},
                "components_s": rows(m),
                "daemon_wake_results": m.results,
                "listener_events": m.listening,
                "exit_codes": m.exit_codes,
            }
            for m in modes
        },
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
    log(f"cross-host wake benchmark: {rounds} round(s) of {len(MODES)} modes")
    with h.private_bytecode("xhost-bench-"), w.fresh_database("postgresql", pg_url) as url:
        h.warm_bytecode("controller.store.notifications")
        modes = bench(url, rounds)
    h.at_end(info)
    h.publish(report(info, modes, rounds), payload(info, modes, rounds), args.json)
    return 1 if problems(modes) else 0


if __name__ == "__main__":
    sys.exit(main())
