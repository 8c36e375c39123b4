"""The typed values of a wake: results, verdicts, the claim, and one act per step kind."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime

import pytest

from controller.core import triggers
from controller.core.safeguards.decisions import Reason
from controller.executors import triggers as deliver
from controller.store import jobs

R = deliver.Result
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
JOB = jobs.Job(7, "p", "t", jobs.JobState.RUNNING, NOW, 3, forced=True)


@pytest.mark.parametrize(
    ("result", "reason", "failed"),
    [
        (R.DELIVERED, Reason.DELIVERED, False),
        (R.SUBMIT_UNCONFIRMED, Reason.SUBMIT_UNCONFIRMED, True),
        (R.DEAD, Reason.FALLBACK_EXHAUSTED, True),
        (R.QUEUED, Reason.SEND_FAILED, True),
        (R.QUEUED, Reason.COLLISION_TIMEOUT, False),
        (R.QUEUED, Reason.RESUMED, False),
        (R.DEFERRED, Reason.COLLISION_DEFERRED, False),
        (R.REFUSED, Reason.NOT_MEMBER, False),
        (R.FALLBACK_REQUIRED, Reason.FALLBACK_REQUIRED_UNMANAGED, False),
        (R.DONE, Reason.NOTHING_UNREAD, False),
    ],
)
def test_which_results_fail_a_pass(result: deliver.Result, reason: Reason, failed: bool) -> None:
    claim = deliver.Claim.unobserved(JOB, "w")
    assert claim.envelope(result, reason).failed is failed


def test_envelope_json_is_plain() -> None:
    claim = deliver.Claim.unobserved(JOB, "w")
    got = claim.envelope(R.DEFERRED, Reason.PANE_IN_MODE, "copy mode", NOW).to_json()
    assert got == {
        "result": "deferred",
        "reason": "pane_in_mode",
        "participant": "p",
        "thread": "t",
        "job": 7,
        "detail": "copy mode",
        "until": NOW.isoformat(),
    }
    assert type(got["result"]) is str


def test_an_unobserved_claim_has_bare_facts() -> None:
    claim = deliver.Claim.unobserved(JOB, "w")
    assert claim.facts == triggers.Facts("p", "t", True, None)
    assert (claim.binding, claim.screen_hash, claim.owner) == (None, None, "w")


def test_every_finished_result_is_a_verdict() -> None:
    """A ``DONE`` step records its result as the attempt's verdict."""
    for reason in Reason:
        result = deliver._result_of(reason)
        assert jobs.Verdict(result.value).value == result.value


def test_one_act_per_kind_with_one_signature() -> None:
    assert set(deliver._ACTS) == set(triggers.Kind)
    shapes = {tuple(inspect.signature(act).parameters) for act in deliver._ACTS.values()}
    assert shapes == {("ctx", "desired", "claim", "step")}
