"""The JSON view of the trigger queue (DESIGN §8): ``controller triggers --output json``.

Built from the store alone, for the command line and the daemon's API alike
(``GET /v1/triggers``); the text line per job is drawn from these same objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from controller.store import jobs, queries


def triggers_view(store: queries.Store, states: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The trigger jobs (of ``states`` when given), each with its attempts."""
    found = jobs.jobs(store, states=[jobs.JobState(s) for s in states] or None)
    tried = jobs.attempts(store, [j.id for j in found])
    return [job_json(j, tried[j.id]) for j in found]


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
