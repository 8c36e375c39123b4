"""Benchmark: what many hosts cost a pass that changes nothing, and what one lease costs.

Run it from the repository root with the project's interpreter, through a PostgreSQL::

    scripts/with-postgres .venv/bin/python bench/hosts.py --json /tmp/hosts.json
    scripts/with-postgres .venv/bin/python bench/hosts.py --quick

Every ratio printed is between numbers measured in the same run of this script. What is
measured, on one fresh git repository with L=10 lanes (no agents), created by one untimed
``controller --once`` per configuration:

(a) The no-op pass in process. ``Reconciler.run_pass`` of a converged workspace, N=30 times
    (10 with ``--quick``) after 3 untimed ones, in four configurations of one Workspace, the
    configurations taking turns pass by pass (a busy neighbour slows them alike):
    ``sqlite`` (the default store, no ``hosts``: the single-host baseline), ``pg`` (the same on
    PostgreSQL, no ``hosts``), ``pg+hosts`` (PostgreSQL, ``hosts`` with this host owning every
    lane and a second host owning none: each pass also reads the leases) and ``pg+hosts/2``
    (the lanes split between two hosts: this host reconciles 5, the others are another host's
    rows it sets aside). Reported: the median and p90 per pass, and each median against
    ``sqlite`` and against ``pg``.
(b) A lease. ``store.leases.acquire`` (take or renew: the one upsert and the read-back) and
    ``release``, N=200 times each (50 with ``--quick``) on PostgreSQL: the median of each, the
    cost ``--once`` adds with ``hosts`` (one take and one release).
(c) The command. ``controller --once`` as a subprocess, 5 times per configuration (3 with
    ``--quick``), taking turns: the median wall time, for ``pg`` and ``pg+hosts``.

Children compile bytecode once into a private cache. Exit status 0, or 1 when a measured
pass did anything (it must be a no-op) or a configuration failed.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import harness as h  # bench/harness.py (scripts run as `python bench/<name>.py`)

LANES = 10
CONFIGS = ("sqlite", "pg", "pg+hosts", "pg+hosts/2")
ME = "bench-a"


def _desired(config: str, url: str, workspace: str) -> str:
    lanes = "".join(
        f"---\napiVersion: lanes/v1\nkind: Lane\nmetadata:\n  name: l{i}\n"
        f"  labels: {{half: '{i % 2}'}}\n"
        for i in range(LANES)
    )
    spec = [f"  stateUrl: {url}"] if config != "sqlite" else []
    if config == "pg+hosts":
        spec += ["  hosts:", f"    - name: {ME}", "      matchLabels: {}", "      lanes: ["]
        spec[-1] += ", ".join(f"l{i}" for i in range(LANES)) + "]"
        spec += ["    - name: bench-b"]
    elif config == "pg+hosts/2":
        spec += ["  hosts:", f"    - name: {ME}", "      matchLabels: {half: '0'}"]
        spec += ["    - name: bench-b", "      matchLabels: {half: '1'}"]
    body = "\n".join(spec)
    head = f"apiVersion: lanes/v1\nkind: Workspace\nmetadata:\n  name: {workspace}\n"
    return head + (f"spec:\n{body}\n" if body else "") + lanes


def _repo(top: Path, config: str, url: str, env: dict[str, str]) -> Path:
    path = top / config.replace("/", "-").replace("+", "-")
    (path / "desired").mkdir(parents=True)
    workspace = f"bench-{uuid.uuid4().hex[:8]}"
    (path / "desired" / "all.yaml").write_text(_desired(config, url, workspace))
    for argv in (("init", "-q"), ("add", "."), ("commit", "-q", "-m", "desired")):
        h.run_checked(("git", *argv), cwd=path, env=env)
    return path


def _once(path: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        (sys.executable, "-m", "controller", "--once", "--host", ME),
        cwd=path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=h.RUN_TIMEOUT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"--once failed in {path}: {done.stdout}{done.stderr}")
    return time.perf_counter() - start


def _other_host_rows(path: Path, env: dict[str, str], url: str) -> None:
    """pg+hosts/2: the other host's half, as that host would record it (one --once there)."""
    h.run_checked(("git", "clone", "-q", str(path), str(path) + "-b"), cwd=path.parent, env=env)
    done = subprocess.run(
        (sys.executable, "-m", "controller", "--once", "--host", "bench-b"),
        cwd=str(path) + "-b",
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=h.RUN_TIMEOUT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"--once of bench-b failed: {done.stdout}{done.stderr}")


async def _passes(repos: dict[str, Path], count: int) -> dict[str, list[float]]:
    """``count`` no-op passes per configuration, interleaved round-robin (after 3 untimed
    rounds) so that a busy neighbour slows every configuration alike."""
    from controller.runtime import reconcile, sources, wiring
    from controller.spec.state import DesiredState

    recs, wanted = {}, {}
    for config, path in repos.items():
        desired = sources.load(path / "desired").result
        assert isinstance(desired, DesiredState)
        paths = wiring.resolve_paths(path / "desired", desired, host=ME)
        recs[config], wanted[config] = reconcile.Reconciler(wiring.build(paths)), desired
    times: dict[str, list[float]] = {config: [] for config in repos}
    try:
        for i in range(count + 3):
            for config, rec in recs.items():
                start = time.perf_counter()
                result = await rec.run_pass(wanted[config])
                if result.outcomes or result.plan.actions:
                    raise RuntimeError(f"a measured pass did something ({config})")
                if i >= 3:
                    times[config].append(time.perf_counter() - start)
    finally:
        for rec in recs.values():
            rec.wiring.close()
    return times


def _leases(url: str, count: int) -> dict[str, float]:
    from controller.store import leases, queries

    store = queries.Store.open(url, f"bench-{uuid.uuid4().hex[:8]}")
    holder = leases.Holder(ME, uuid.uuid4().hex, os.getpid(), "bench", "0", {})
    took, gave = [], []
    try:
        for _ in range(count):
            start = time.perf_counter()
            leases.acquire(store, holder, seconds=15)
            took.append(time.perf_counter() - start)
            start = time.perf_counter()
            leases.release(store, holder)
            gave.append(time.perf_counter() - start)
    finally:
        store.close()
    return {"acquire": statistics.median(took), "release": statistics.median(gave)}


def _p90(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = h.options(__doc__, reps=False)
    args = parser.parse_args(argv)
    h.require(parser, "git")
    url = os.environ.get("CONTROLLER_TEST_POSTGRES_URL")
    if not url:
        parser.error("needs PostgreSQL: run through scripts/with-postgres")
    passes, leases_n, commands = (10, 50, 3) if args.quick else (30, 200, 5)
    info = h.machine("git")
    results: dict[str, Any] = {"passes": {}, "commands": {}}
    with h.private_bytecode("hosts-"), tempfile.TemporaryDirectory(prefix="hosts-") as tmp:
        top = Path(tmp)
        env = h.base_env(top)
        repos = {}
        for config in CONFIGS:
            repos[config] = _repo(top, config, url, env)
            h.log(f"{config}: creating {LANES} lanes")
            _once(repos[config], env)
            if config == "pg+hosts/2":
                _other_host_rows(repos[config], env, url)
        h.log(f"{passes} no-op passes in process per configuration, interleaved")
        results["passes"] = anyio.run(functools.partial(_passes, repos, passes))
        h.log(f"{commands} --once commands per configuration, interleaved")
        timed = ("pg", "pg+hosts")
        runs = [(c, _once(repos[c], env)) for _ in range(commands) for c in timed]
        results["commands"] = {c: [t for k, t in runs if k == c] for c in timed}
        h.log(f"{leases_n} lease takes and releases")
        results["leases"] = _leases(url, leases_n)
    h.at_end(info)
    report = _report(results, info)
    h.publish(report, {"info": info, **results}, args.json)
    return 0


def _report(results: dict[str, Any], info: dict[str, Any]) -> str:
    med = {k: statistics.median(v) for k, v in results["passes"].items()}
    rows = [
        [
            config,
            f"{med[config] * 1000:.1f}",
            f"{_p90(results['passes'][config]) * 1000:.1f}",
            f"{med[config] / med['sqlite']:.2f}x",
            f"{med[config] / med['pg']:.2f}x",
        ]
        for config in CONFIGS
    ]
    lines = h.header("Many hosts: the no-op pass and the lease", info)
    lines += ["", "(a) no-op pass in process (10 lanes, no agents)", ""]
    lines += h.table(["config", "median ms", "p90 ms", "vs sqlite", "vs pg"], rows)
    lease = results["leases"]
    lines += ["", "(b) one lease statement on PostgreSQL", ""]
    lines += h.table(
        ["statement", "median ms"],
        [
            ["acquire (take or renew)", f"{lease['acquire'] * 1000:.2f}"],
            ["release", f"{lease['release'] * 1000:.2f}"],
        ],
    )
    cmd = {k: statistics.median(v) for k, v in results["commands"].items()}
    lines += ["", "(c) controller --once (subprocess, no-op)", ""]
    lines += h.table(
        ["config", "median s", "vs pg"],
        [[k, f"{v:.3f}", f"{v / cmd['pg']:.2f}x"] for k, v in cmd.items()],
    )
    return (
        "\n".join(lines) + "\n" + json.dumps({"medians_ms": {k: v * 1000 for k, v in med.items()}})
    )


if __name__ == "__main__":
    sys.exit(main())
