"""The JSON view of the trigger queue (DESIGN §8): ``controller triggers --output json``.

Built from the store alone, for the command line and the daemon's API alike
(``GET /v1/triggers``); the text line per job is drawn from these same objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from controller.core import hosts, world
from controller.spec.state import DesiredState
from controller.store import jobs, queries


def triggers_view(
    store: queries.Store, states: Sequence[str] = (), desired: DesiredState | None = None
) -> list[dict[str, Any]]:
    """The trigger jobs (of ``states`` when given), each with its attempts; with `hosts`, a
    queued job whose participant's host is lost says it waits (``waiting: host_lost``)."""
    found = jobs.jobs(store, states=[jobs.JobState(s) for s in states] or None)
    tried = jobs.attempts(store, [j.id for j in found])
    seen = _leases(store, desired)
    return [job_json(j, tried[j.id]) | _waiting(j, desired, seen) for j in found]


def _leases(store: queries.Store, desired: DesiredState | None) -> world.Leases | None:
    """The hosts' leases, with `hosts` only."""
    if desired is None or not desired.workspace.spec.hosts:
        return None
    from controller.store import leases

    return leases.read(store)


def _waiting(
    job: jobs.Job, desired: DesiredState | None, seen: world.Leases | None
) -> dict[str, Any]:
    if job.state != jobs.JobState.QUEUED.value or seen is None or desired is None:
        return {}
    found = hosts.waiting(desired, seen, job.participant)
    return {"waiting": {"reason": found[0], "host": found[1]}} if found else {}


def job_json(job: jobs.Job, attempts: list[jobs.Attempt]) -> dict[str, Any]:
    """One job as ``triggers --output json`` lists it."""
    return {
        "id": job.id,
        "participant": job.participant,
        "thread": job.thread,
        "state": job.state,
        "dueAt": job.due_at.isoformat(),
        "failures": job.failures,
        "forced": job.forced,
        "attempts": [
            {"at": a.at.isoformat(), "verdict": a.verdict, "reason": a.reason, "detail": a.detail}
            for a in attempts
        ],
    }
