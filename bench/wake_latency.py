"""Benchmark: wake latency, ``controller post`` to the keystrokes arriving in the agent's pane,
with the daemon and ``quietSeconds: 0``; and the daemon's own ``lanes_wake_latency_seconds``
against it.

Run it from the repository root with the project's interpreter::

    .venv/bin/python bench/wake_latency.py            # 30 wakes (~1 minute)
    .venv/bin/python bench/wake_latency.py --quick    # 8 wakes

The rig is part (b) of bench/wakes.py (a fresh repository, one lane, a private tmux server, a
Thread ``review: [bot, human]``, a TriggerPolicy with ``collision: {quietSeconds: 0}`` and
high rate limits), except the agent: a small Python program that turns canonical mode off on
its terminal (echo stays on), so it reads the wake's bytes as tmux types them, and writes, for
each line, the epoch time its first byte arrived (``first``) and the time of its Enter
(``at``). One untimed ``controller --once`` starts the agent; then the daemon ``controller
run --resync 60`` runs, and K=30 times (8 with ``--quick``), 1.2 s plus a random 0 to 0.25 s
apart: ``controller post review --as human "msg N"`` is spawned (the thin client of
``controller/fast.py``, through the daemon's socket), and, from the epoch time just before the
spawn, are measured:

- **post -> keystrokes**: until the first byte of the wake arrived in the pane (the target:
  p50 < 300 ms);
- **post -> Enter**: until the agent read the whole line (the executor presses Enter 0.15 s
  after typing);
- the ``controller post`` process's own wall time;
- **commit -> keystrokes**: from the message's stored time (``messages.at``) to the first
  byte, what ``lanes_wake_latency_seconds`` measures inside the daemon.

``/metrics`` is read over the socket before and after: the histogram's count must grow by K,
and its mean (sum / count of the increase) is shown next to the commit -> keystrokes mean
measured outside. Baselines in the same run: ``python -c pass`` (5 runs); ratios are to its
median. The daemon, the tmux server, the agent and the temporary folders are removed at the
end, also on error. Exit status: 0, or 1 when a wake did not arrive or the histogram's count
does not match.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import harness as h  # bench/harness.py (scripts run as `python bench/<name>.py`)
import wakes  # bench/wakes.py: the rig of its part (b)
from harness import log
from scrape import get, samples

TARGET_P50 = 0.300
SEED = 20261202
PROBE = r"""
import json, os, sys, termios, time
record = sys.argv[1]
fd = sys.stdin.fileno()
attrs = termios.tcgetattr(fd)
attrs[3] &= ~termios.ICANON  # bytes as tmux types them; echo stays on
attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 1, 0
termios.tcsetattr(fd, termios.TCSANOW, attrs)
with open(record, "a") as out:
    out.write(json.dumps({"ready": time.time()}) + "\n")
pending, first = b"", None
while True:
    chunk = os.read(fd, 4096)
    if not chunk:
        time.sleep(3600)
        break
    now = time.time()
    first = now if first is None else first
    pending += chunk
    while b"\n" in pending:  # Enter arrives as CR, which the terminal maps to LF
        line, _, pending = pending.partition(b"\n")
        with open(record, "a") as out:
            entry = {"line": line.decode(errors="replace"), "first": first, "at": now}
            out.write(json.dumps(entry) + "\n")
        first = now if pending else None
"""
HISTOGRAM = "lanes_wake_latency_seconds"


class Rig(wakes.Rig):
    """bench/wakes.py's rig with the keystroke probe as the agent."""

    def create(self) -> None:
        super().create()
        probe = self.top / "probe.py"
        probe.write_text(PROBE)
        text = (self.desired / "wakes.yaml").read_text()
        stub = f"[{sys.executable}, {h.STUB}, --quiet, --record, {self.record}]"
        assert stub in text, "bench/wakes.py's rig changed: update the probe's command"
        (self.desired / "wakes.yaml").write_text(
            text.replace(stub, f"[{sys.executable}, {probe}, {self.record}]")
        )

    def entries(self) -> list[dict[str, Any]]:
        found = []
        for raw in self.record.read_text().splitlines() if self.record.exists() else []:
            entry = json.loads(raw)
            if "line" in entry:
                found.append(entry)
        return found

    def histogram(self) -> tuple[float, float]:
        code, body = get(self.path / ".lanes" / "controller.sock", "/metrics")
        if code != 200:
            raise RuntimeError(f"/metrics: {code}")
        shown = samples(body.decode())
        return shown[f"{HISTOGRAM}_count"], shown[f"{HISTOGRAM}_sum"]


@dataclass(slots=True)
class Outcome:
    """What the benchmark measured (seconds)."""

    k: int
    keys_s: list[float] = field(default_factory=list)
    enter_s: list[float] = field(default_factory=list)
    post_s: list[float] = field(default_factory=list)
    commit_keys_s: list[float] = field(default_factory=list)
    histogram_count: float = float("nan")
    histogram_mean_s: float = float("nan")
    floor_s: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def bench(k: int) -> Outcome:
    outcome = Outcome(k)
    with h.fresh_repo(Rig, 1, prefix="latency-bench-", tmux=True) as rig:
        try:
            _bench(rig, outcome)
        except Exception:
            log("failed; " + rig.diagnose())
            raise
    return outcome


def _bench(rig: Rig, outcome: Outcome) -> None:
    rig.create()
    log("warming bytecode, starting the agent, then the daemon")
    rig.run(*rig.ctl("--once"))
    h.wait_for(rig.record.exists, wakes.START_TIMEOUT, rig.diagnose)
    rig.start_daemon()
    time.sleep(1.5)
    count0, sum0 = rig.histogram()
    jitter = random.Random(SEED)
    starts = []
    for n in range(1, outcome.k + 1):
        time.sleep(wakes.BETWEEN_POSTS + jitter.uniform(0, wakes.POST_JITTER))
        wake = rig.wake_once(n)
        starts.append(wake.post_start)
        outcome.post_s.append(wake.post_s)
        if math.isnan(wake.latency_s):
            outcome.problems.append(f"wake {n} did not reach the agent in {wakes.WAKE_TIMEOUT} s")
        log(f"post {n}/{outcome.k}: line after {wake.latency_s * 1000:.0f} ms")
    time.sleep(1.0)  # the last delivery's confirmation and bookkeeping
    count1, sum1 = rig.histogram()
    outcome.histogram_count = count1 - count0
    if outcome.histogram_count:
        outcome.histogram_mean_s = (sum1 - sum0) / outcome.histogram_count
    if outcome.histogram_count != outcome.k:
        outcome.problems.append(
            f"histogram count grew by {outcome.histogram_count}, not {outcome.k}"
        )
    code = rig.stop_daemon()
    if code != 0:
        outcome.problems.append(f"daemon exited {code}")
    committed = rig.message_times()
    entries = rig.entries()
    if len(entries) != outcome.k:
        outcome.problems.append(f"the agent read {len(entries)} lines, not {outcome.k}")
    for n, (start, entry) in enumerate(zip(starts, entries, strict=False), start=1):
        outcome.keys_s.append(entry["first"] - start)
        outcome.enter_s.append(entry["at"] - start)
        outcome.commit_keys_s.append(entry["first"] - committed.get(f"msg {n}", math.nan))
    for _ in range(5):
        outcome.floor_s.append(wakes.timed(rig, [sys.executable, "-c", "pass"]))


def pct(values: Sequence[float], q: float) -> float:
    return wakes.pct(values, q)


def report(o: Outcome, info: dict[str, Any]) -> str:
    floor = statistics.median(o.floor_s)

    def line(label: str, values: Sequence[float]) -> list[str]:
        if not values:
            return [label, "-", "-", "-", "-"]
        p50 = pct(values, 0.5)
        cells = [f"{pct(values, q) * 1000:.0f}" for q in (0.5, 0.95)]
        return [label, *cells, f"{max(values) * 1000:.0f}", f"{p50 / floor:.1f}x"]

    rows = [
        line("post -> keystrokes in the pane", o.keys_s),
        line("post -> Enter read by the agent", o.enter_s),
        line("controller post (fast client)", o.post_s),
        line("commit -> keystrokes", o.commit_keys_s),
        line("python -c pass (baseline)", o.floor_s),
    ]
    p50 = pct(o.keys_s, 0.5) if o.keys_s else math.nan
    measured = statistics.mean(o.commit_keys_s) if o.commit_keys_s else math.nan
    return "\n".join(
        [
            *h.header("Wake latency: post -> keystrokes, with the daemon (quietSeconds 0)", info),
            "",
            f"{o.k} wakes; milliseconds; ratios are p50 / median of `python -c pass`",
            *h.table(["", "p50", "p95", "max", "x python"], rows),
            f"{HISTOGRAM}: count +{o.histogram_count:.0f}, mean "
            f"{o.histogram_mean_s * 1000:.0f} ms (commit -> keystrokes measured outside: mean "
            f"{measured * 1000:.0f} ms)",
            f"target: post -> keystrokes p50 < {TARGET_P50 * 1000:.0f} ms: {p50 * 1000:.0f} ms, "
            f"{h.verdict(p50 < TARGET_P50)}",
            *[f"problem: {p}" for p in o.problems],
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the report, optionally write JSON."""
    args = h.options(__doc__, reps=False).parse_args(argv)
    k = 8 if args.quick else 30
    info = h.machine("tmux")
    with h.private_bytecode("latency-bench-"):
        h.warm_bytecode("controller.fast", "controller.cli.main")
        outcome = bench(k)
    h.at_end(info)
    payload = {"machine": info, **{name: getattr(outcome, name) for name in outcome.__slots__}}
    h.publish(report(outcome, info), payload, args.json)
    return 0 if not outcome.problems else 1


if __name__ == "__main__":
    sys.exit(main())
