"""Wakes, pure: which participants should be woken, and what to do with one trigger job.

``wanted`` turns unread counts into wakes (a policy must select the participant and thread, the
thread must be open, and only messages newer than the last delivered wake count). ``decide``
takes everything known about one job and returns the next step: deliver this text, defer until
a time, take a fallback hop, finish, or fail; with the reason code it is recorded under.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.core import world
from controller.core.safeguards import collision, fallback, loops, payload, ratelimits
from controller.core.safeguards.decisions import Decision, Reason, Verdict
from controller.spec import triggerpolicy
from controller.spec.binding import Binding
from controller.spec.state import DesiredState
from controller.spec.triggerpolicy import TriggerPolicy, TriggerPolicySpec


@dataclass(frozen=True, slots=True)
class Wake:
    """One participant to wake about one thread."""

    participant: str
    thread: str
    unread_seq: int
    count: int
    sender: str


def policy_for(desired: DesiredState, participant: str, thread: str) -> TriggerPolicy | None:
    """The first policy (by name) selecting this participant and thread, if any.

    A policy without ``participants`` selects every managed participant (one with a Binding);
    without ``threads``, every thread.
    """
    managed = set(desired.managed_participants())
    for policy in desired.policies.values():
        people = policy.spec.participants
        threads = policy.spec.threads
        if (participant in people if people is not None else participant in managed) and (
            threads is None or thread in threads
        ):
            return policy
    return None


def wanted(desired: DesiredState, unread: Iterable[world.UnreadCount]) -> list[Wake]:
    """The wakes due now: selected by a policy, open thread, member, news since the last wake."""
    wakes = []
    for u in sorted(unread, key=lambda x: (x.participant, x.thread)):
        thread = desired.threads.get(u.thread)
        if thread is None or thread.spec.closed or u.participant not in thread.spec.participants:
            continue
        if u.last_seq <= u.woken or policy_for(desired, u.participant, u.thread) is None:
            continue
        wakes.append(Wake(u.participant, u.thread, u.last_seq, u.count, u.sender))
    return wakes


def members(desired: DesiredState) -> list[tuple[str, str]]:
    """Every (participant, thread) pair of the declared threads."""
    return sorted((p, name) for name, t in desired.threads.items() for p in t.spec.participants)


class Kind(enum.StrEnum):
    """What to do next with a job."""

    DELIVER = "deliver"  # type ``text`` into the pane, then Enter
    DEFER = "defer"  # try again at ``until`` (no attempt used)
    RESUME = "resume"  # start the binding's resume command, then try again
    SPAWN = "spawn"  # start the binding's spawn command with ``text`` as the summary
    DONE = "done"  # nothing (more) to do: finished
    FAIL = "fail"  # an attempt failed: retry with backoff, or dead after the last


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything known about one claimed job, observed just before deciding."""

    participant: str
    thread: str
    forced: bool
    unread: world.UnreadCount | None
    agent: world.AgentRecord | None = None
    pane: world.Pane | None = None  # the agent's pane, if it exists
    screen: collision.Screen | None = None
    first_check: datetime | None = None
    previous_hash: str | None = None
    own_delivery: datetime | None = None
    resumes: int = 0
    participant_deliveries: Sequence[datetime] = ()
    thread_deliveries: Sequence[datetime] = ()
    loop: loops.LoopState = field(default_factory=loops.LoopState)
    blocked: str | None = None
    running: bool = False  # the agent's process is alive (with or without a terminal)


@dataclass(frozen=True, slots=True)
class Step:
    """The decision for one job."""

    kind: Kind
    reason: Reason
    detail: str = ""
    text: str = ""
    until: datetime | None = None
    block_participant: bool = False  # a loop safeguard tripped: block the participant


def decide(desired: DesiredState, facts: Facts, now: datetime) -> Step:
    """The next step for a job, by the rules of DESIGN §6 (pure; ``now`` passed in)."""
    refused = _eligibility(desired, facts)
    if refused is not None:
        return refused
    binding = desired.binding_of(facts.participant)
    spec = triggerpolicy.settings(policy_for(desired, facts.participant, facts.thread))
    offline = _offline(desired, binding, facts)
    if offline is not None:
        return offline
    live = facts.pane is not None and not facts.pane.dead
    hop = fallback.next_hop(
        managed=binding is not None,
        agent=facts.agent,
        live=live,
        has_resume=bool(binding and binding.spec.resume),
        has_spawn=bool(binding and binding.spec.spawn),
        resumes_used=facts.resumes,
        resume_attempts=spec.fallback.resume_attempts,
        stale_hours=spec.fallback.stale_session_hours,
        now=now,
    )
    if hop.hop != fallback.Hop.DELIVER:
        return _fallback_step(hop, facts)
    return _deliver(spec, facts, now)


def _offline(desired: DesiredState, binding: Binding | None, facts: Facts) -> Step | None:
    """A managed participant that cannot take keystrokes now, for a reason no hop fixes."""
    if binding is None:
        return None
    lane = desired.lanes.get(binding.spec.lane)
    if lane is not None and lane.spec.suspend:
        return Step(Kind.DONE, Reason.FALLBACK_REQUIRED_OFFLINE, "its lane is suspended")
    live = facts.pane is not None and not facts.pane.dead
    if facts.running and not live:
        return Step(
            Kind.DONE,
            Reason.FALLBACK_REQUIRED_NO_SESSION,
            "its agent runs without a terminal (runtime: process); it must read with "
            "`controller read`",
        )
    return None


def _eligibility(desired: DesiredState, facts: Facts) -> Step | None:
    thread = desired.threads.get(facts.thread)
    if thread is None:
        return Step(Kind.DONE, Reason.THREAD_UNKNOWN, f"thread {facts.thread} is not declared")
    if facts.participant not in thread.spec.participants:
        return Step(Kind.DONE, Reason.NOT_MEMBER, f"{facts.participant} is not a member")
    if thread.spec.closed:
        return Step(Kind.DONE, Reason.THREAD_CLOSED, f"thread {facts.thread} is closed")
    if facts.unread is None and not facts.forced:
        return Step(Kind.DONE, Reason.NOTHING_UNREAD, "everything was read meanwhile")
    return None


def _fallback_step(hop: fallback.Step, facts: Facts) -> Step:
    if hop.hop == fallback.Hop.RESUME:
        return Step(Kind.RESUME, hop.reason, hop.detail)
    if hop.hop == fallback.Hop.SPAWN:
        return Step(Kind.SPAWN, hop.reason, hop.detail)
    return Step(
        Kind.DONE if hop.hop == fallback.Hop.REQUIRED else Kind.FAIL, hop.reason, hop.detail
    )


def _deliver(spec: TriggerPolicySpec, facts: Facts, now: datetime) -> Step:
    if not facts.forced:
        for decision in _guards(spec, facts, now):
            if not decision.allowed:
                return _from_decision(decision)
    if facts.pane is not None and facts.pane.in_mode:
        return Step(
            Kind.DEFER,
            Reason.PANE_IN_MODE,
            "the pane is in copy mode",
            until=now + timedelta(seconds=spec.collision.recheck_seconds),
        )
    unread = facts.unread
    text = payload.render(
        spec.template,
        participant=facts.participant,
        thread=facts.thread,
        unread=unread.count if unread else 0,
        sender=unread.sender if unread else "",
        max_bytes=spec.payload.max_bytes,
        control_chars=spec.payload.control_chars,
    )
    if isinstance(text, Decision):
        return _from_decision(text)
    reason = Reason.FORCED if facts.forced else Reason.DELIVERED
    return Step(Kind.DELIVER, reason, text=text)


def _guards(spec: TriggerPolicySpec, facts: Facts, now: datetime) -> Iterable[Decision]:
    if facts.blocked:
        yield Decision(Verdict.BLOCK, Reason.PARTICIPANT_BLOCKED, detail=facts.blocked)
    yield loops.decide(
        facts.loop,
        max_no_progress=spec.loop.max_no_progress_turns,
        max_identical=spec.loop.max_identical_findings,
    )
    rates = spec.rate_limits
    yield ratelimits.decide(
        facts.participant_deliveries,
        facts.thread_deliveries,
        per_participant=(rates.per_participant.count, rates.per_participant.per),
        per_thread=(rates.per_thread.count, rates.per_thread.per),
        now=now,
    )
    c = spec.collision
    yield collision.decide(
        facts.screen or collision.Screen(None),
        collision.Policy(c.quiet_seconds, c.recheck_seconds, c.max_defer_seconds),
        now,
        first_check=facts.first_check or now,
        previous_hash=facts.previous_hash,
        own_delivery=facts.own_delivery,
    )


def _from_decision(decision: Decision) -> Step:
    reason = decision.reason or Reason.SEND_FAILED
    if decision.verdict == Verdict.DEFER:
        return Step(Kind.DEFER, reason, decision.detail, until=decision.until)
    loop = reason in (Reason.LOOP_NO_PROGRESS, Reason.LOOP_IDENTICAL_FINDINGS)
    kind = Kind.DONE if loop or reason == Reason.PARTICIPANT_BLOCKED else Kind.FAIL
    return Step(kind, reason, decision.detail, block_participant=loop)


def retry_delay(job_id: int, failures: int, *, backoff: float, max_backoff: float) -> timedelta:
    """Backoff after ``failures`` failed attempts: doubling, capped, jittered by ±20 %.

    The jitter is derived from the job id and attempt number, so it is deterministic (pure) yet
    spreads jobs that failed together.
    """
    base = min(backoff * (1 << min(max(failures - 1, 0), 16)), max_backoff)
    digest = hashlib.sha256(f"{job_id}:{failures}".encode()).digest()
    jitter = 0.8 + 0.4 * (digest[0] / 255)
    return timedelta(seconds=base * jitter)
