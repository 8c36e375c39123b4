"""Processing one claimed trigger job: observe, decide (pure), act, record, settle.

Delivery types the wake prompt with ``send-keys -l --`` (text only, never key names), waits a
moment, presses Enter separately, and checks the prompt left the input line (Enter is retried at
most twice, else ``submit_unconfirmed``). The pane is probed just before: a dead pane is never
typed into. Every attempt is recorded with its reason code; the job is settled only while this
worker still holds its lease.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from controller.core import agents as planned
from controller.core import triggers, world
from controller.core.safeguards import collision, loops, payload
from controller.core.safeguards.decisions import Reason
from controller.core.triggers import Kind
from controller.executors import agents, rescue, signals
from controller.executors.context import Context
from controller.spec import triggerpolicy
from controller.spec.binding import Binding
from controller.spec.state import DesiredState
from controller.store import jobs, messaging, participants

SUBMIT_PAUSE = 0.15
CONFIRM_PAUSE = 0.3
ENTER_RETRIES = 2
RESUME_GRACE = timedelta(seconds=2)
SUMMARY_BYTES = 4000
REFUSALS = frozenset(
    {
        Reason.NOT_MEMBER,
        Reason.THREAD_CLOSED,
        Reason.THREAD_UNKNOWN,
        Reason.PARTICIPANT_BLOCKED,
        Reason.LOOP_NO_PROGRESS,
        Reason.LOOP_IDENTICAL_FINDINGS,
    }
)
Verdict = jobs.Verdict
JobState = jobs.JobState


class Result(enum.StrEnum):
    """What one trigger came to, as ``controller trigger`` prints it."""

    DELIVERED = "delivered"
    SUBMIT_UNCONFIRMED = "submit_unconfirmed"  # typed, but the prompt kept the text: retried
    QUEUED = "queued"  # tried again later (a retry, a resume's grace, another worker's turn)
    DEFERRED = "deferred"  # not now (collision, rate limit, copy mode): no attempt used
    FALLBACK_REQUIRED = "fallback_required"  # a person must take over
    REFUSED = "refused"  # not allowed (not a member, closed thread, blocked participant)
    DEAD = "dead"  # out of attempts
    DONE = "done"  # nothing (more) to do


FAILING = frozenset({Result.DEAD, Result.SUBMIT_UNCONFIRMED})
"""Results that make ``--once`` exit 2 (with a retry queued after ``send_failed``)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """The result of one trigger, as ``controller trigger`` prints it."""

    result: Result
    reason: str
    participant: str
    thread: str
    job: int | None = None
    detail: str = ""
    until: datetime | None = None
    waited: float | None = None
    """For a delivered wake: seconds from the newest unread message's commit to its keystrokes
    (``lanes_wake_latency_seconds``); not part of the JSON."""

    @property
    def failed(self) -> bool:
        """Whether the wake failed: it died, was not confirmed, or could not be typed."""
        retried = self.result == Result.QUEUED and self.reason == Reason.SEND_FAILED
        return self.result in FAILING or retried

    def to_json(self) -> dict[str, Any]:
        """Stable JSON."""
        return {
            "result": str(self.result),
            "reason": self.reason,
            "participant": self.participant,
            "thread": self.thread,
            "job": self.job,
            "detail": self.detail,
            "until": self.until.isoformat() if self.until else None,
        }


@dataclass(frozen=True, slots=True)
class Claim:
    """One claimed job, the lease owner working it, and what was observed just before deciding.

    Every act takes the same four arguments (context, desired state, claim, step); a claim that
    failed before anything was observed carries bare facts (``Claim.unobserved``).
    """

    job: jobs.Job
    owner: str
    facts: triggers.Facts
    binding: Binding | None = None
    screen_hash: str | None = None

    @classmethod
    def unobserved(cls, job: jobs.Job, owner: str) -> Claim:
        """A claim nothing was observed for (observing it failed)."""
        return cls(job, owner, triggers.Facts(job.participant, job.thread, job.forced, None))

    def envelope(
        self, result: Result, reason: Reason, detail: str = "", until: datetime | None = None
    ) -> Envelope:
        """The envelope of this claim's job."""
        job = self.job
        return Envelope(result, str(reason), job.participant, job.thread, job.id, detail, until)


Act = Callable[[Context, DesiredState, Claim, triggers.Step], Awaitable[Envelope]]


async def process(job: jobs.Job, ctx: Context, desired: DesiredState, owner: str) -> Envelope:
    """Take one claimed job one step further."""
    now = ctx.clock.now()
    if job.prev_owner and job.prev_owner != owner:
        expired = f"lease of {job.prev_owner} expired"
        await _record(ctx, job, now, Verdict.RECLAIMED, Reason.LEASE_EXPIRED, expired)
    claim = await _observe(ctx, desired, job, owner, now)
    step = triggers.decide(desired, claim.facts, now)
    return await _ACTS[step.kind](ctx, desired, claim, step)


async def _record(
    ctx: Context, job: jobs.Job, now: datetime, verdict: Verdict, reason: Reason, detail: str
) -> None:
    """Append one attempt of ``job``."""
    await ctx.db(
        jobs.record, ctx.store, job, now, verdict=verdict, reason=str(reason), detail=detail
    )


async def _observe(
    ctx: Context, desired: DesiredState, job: jobs.Job, owner: str, now: datetime
) -> Claim:
    """Everything known about ``job`` now: its agent, pane, screen, loop state, deliveries."""
    binding = desired.binding_of(job.participant)
    unread = await _unread(ctx, job)
    record = await ctx.db(ctx.store.agent_record, binding.name) if binding else None
    pane, screen, screen_hash = await _screen(ctx, record)
    state = await ctx.db(participants.get, ctx.store, job.participant)
    loop_now = await _loop_now(ctx, job.participant, record, state)
    mine, thread = await _deliveries(ctx, desired, job, now)
    facts = triggers.Facts(
        participant=job.participant,
        thread=job.thread,
        forced=job.forced,
        unread=unread,
        agent=record,
        pane=pane,
        screen=screen,
        first_check=job.first_check_at,
        previous_hash=job.screen_hash,
        own_delivery=max(mine, default=None),
        resumes=job.resumes,
        participant_deliveries=mine,
        thread_deliveries=thread,
        loop=loop_now,
        blocked=state.blocked,
        running=await _running(record),
    )
    return Claim(job, owner, facts, binding=binding, screen_hash=screen_hash)


async def _deliveries(
    ctx: Context, desired: DesiredState, job: jobs.Job, now: datetime
) -> tuple[list[datetime], list[datetime]]:
    """Recent deliveries to the participant and in the thread, over their rate-limit windows."""
    policy = triggers.policy_for(desired, job.participant, job.thread)
    rates = triggerpolicy.settings(policy).rate_limits
    per_p = timedelta(seconds=rates.per_participant.per)
    per_t = timedelta(seconds=rates.per_thread.per)
    mine = await ctx.db(jobs.deliveries, ctx.store, since=now - per_p, participant=job.participant)
    thread = await ctx.db(jobs.deliveries, ctx.store, since=now - per_t, thread=job.thread)
    return mine, thread


async def _running(record: world.AgentRecord | None) -> bool:
    if record is None or record.pid is None or record.state != world.AgentState.RUNNING:
        return False
    return await anyio.to_thread.run_sync(signals.matches, record.pid, record.pid_created)


async def _unread(ctx: Context, job: jobs.Job) -> world.UnreadCount | None:
    found = await ctx.db(messaging.unread, ctx.store, [(job.participant, job.thread)])
    fresh = [u for u in found if u.last_seq > u.woken]
    return fresh[0] if fresh else None


async def _screen(
    ctx: Context, record: world.AgentRecord | None
) -> tuple[world.Pane | None, collision.Screen | None, str | None]:
    """Probe the agent's pane now: alive? in a mode? recent activity? what does it show?"""
    if record is None or ctx.tmux is None or not record.pane_id:
        return None, None, None
    probe = await ctx.tmux.probe(record.pane_id)
    if probe is None or probe.pid != record.pid:
        return None, None, None
    pane = world.Pane(
        probe.session_id,
        record.window_id or "",
        record.pane_id,
        probe.pid,
        dead=probe.dead,
        in_mode=probe.in_mode,
    )
    if probe.dead:
        return pane, None, None
    clients = await ctx.tmux.client_activity(probe.session_id)
    digest = hashlib.sha256((await ctx.tmux.capture(record.pane_id)).encode()).hexdigest()[:32]
    screen = collision.Screen(_epoch(probe.activity), _epoch(clients), digest)
    return pane, screen, digest


def _epoch(seconds: int) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


async def _loop_now(
    ctx: Context, participant: str, record: world.AgentRecord | None, state: participants.State
) -> loops.LoopState:
    """The loop state as it will be once the previous turn's outcome is counted."""
    if state.turn is None:
        return state.loop
    posted = await ctx.db(messaging.posted_since, ctx.store, participant, state.turn["seqs"])
    worktree = await _worktree_digest(ctx, record)
    changed = worktree is not None and worktree != state.turn.get("worktree")
    progress = loops.Progress(posted=tuple(posted), worktree_changed=changed)
    return loops.after_turn(state.loop, progress)


async def _worktree_digest(ctx: Context, record: world.AgentRecord | None) -> str | None:
    """HEAD and pending changes of the participant's lane (commits and edits are progress)."""
    if record is None:
        return None
    lane = await ctx.db(ctx.store.lane_record, record.lane)
    if lane is None:
        return None
    try:
        state = await rescue.inspect(ctx.runner, ctx.root_of(lane.path) / lane.name)
    except Exception:  # an unreadable worktree is "unknown", not progress
        return None
    return hashlib.sha256(repr((state.head, state.changes)).encode()).hexdigest()[:32]


# -- acting on a step ---------------------------------------------------------------------------


async def _deliver(
    ctx: Context, desired: DesiredState, claim: Claim, step: triggers.Step
) -> Envelope:
    assert ctx.tmux is not None
    assert claim.facts.pane is not None
    pane = claim.facts.pane.pane_id
    now = ctx.clock.now()
    if not await ctx.tmux.send_text(pane, step.text):
        failed = replace(step, reason=Reason.SEND_FAILED, detail="send-keys failed")
        return await fail(ctx, desired, claim, failed)
    waited = _waited(claim.facts.unread, ctx.clock.now())
    confirmed = await _submit(ctx, pane, step.text)
    reason = step.reason if confirmed else Reason.SUBMIT_UNCONFIRMED
    verdict = Verdict.DELIVERED if confirmed else Verdict.UNCONFIRMED
    await _record(ctx, claim.job, now, verdict, reason, step.text)
    await _after_delivery(ctx, claim)
    await ctx.db(jobs.settle, ctx.store, claim.job, claim.owner, now, state=JobState.DONE)
    await _delivered_event(ctx, claim.job, reason, forced=claim.job.forced)
    if not confirmed:
        return claim.envelope(Result.SUBMIT_UNCONFIRMED, reason, step.text)
    return replace(claim.envelope(Result.DELIVERED, reason, step.text), waited=waited)


def _waited(unread: world.UnreadCount | None, typed: datetime) -> float | None:
    """Seconds from the newest unread message's commit to the keystrokes about it."""
    if unread is None or unread.last_at is None:
        return None
    return max(0.0, (typed - unread.last_at).total_seconds())


async def _delivered_event(ctx: Context, job: jobs.Job, reason: Reason, **data: Any) -> None:
    await ctx.emit(
        "TriggerDelivered",
        str(reason),
        participant=job.participant,
        thread=job.thread,
        job=job.id,
        **data,
    )


async def _submit(ctx: Context, pane: str, text: str) -> bool:
    """Press Enter, then check the prompt left the input line; retry Enter at most twice."""
    assert ctx.tmux is not None
    tail = text[-24:]
    await ctx.clock.sleep(SUBMIT_PAUSE)
    for _ in range(1 + ENTER_RETRIES):
        await ctx.tmux.send_enter(pane)
        await ctx.clock.sleep(CONFIRM_PAUSE)
        probe = await ctx.tmux.probe(pane)
        screen = (await ctx.tmux.capture(pane)).split("\n")
        line = screen[probe.cursor_y] if probe and probe.cursor_y < len(screen) else ""
        if tail not in line:
            return True
    return False


async def _after_delivery(ctx: Context, claim: Claim) -> None:
    """Remember what this turn starts from, and that these messages were announced."""
    job, facts = claim.job, claim.facts
    seq = facts.unread.last_seq if facts.unread else job.unread_seq
    await ctx.db(messaging.mark_woken, ctx.store, job.thread, job.participant, seq)
    state = await ctx.db(participants.get, ctx.store, job.participant)
    turn = {
        "seqs": await ctx.db(messaging.last_seqs, ctx.store),
        "worktree": await _worktree_digest(ctx, facts.agent),
    }
    started = replace(state, loop=facts.loop, turn=turn)
    await ctx.db(participants.put, ctx.store, job.participant, started, ctx.clock.now())


async def _defer(
    ctx: Context, desired: DesiredState, claim: Claim, step: triggers.Step
) -> Envelope:
    now = ctx.clock.now()
    job = claim.job
    await _record(ctx, job, now, Verdict.DEFERRED, step.reason, step.detail)
    await ctx.db(
        jobs.settle,
        ctx.store,
        job,
        claim.owner,
        now,
        state=JobState.QUEUED,
        due_at=step.until,
        first_check_at=job.first_check_at or now,
        screen_hash=claim.screen_hash,
    )
    return claim.envelope(Result.DEFERRED, step.reason, step.detail, step.until)


async def fail(ctx: Context, desired: DesiredState, claim: Claim, step: triggers.Step) -> Envelope:
    """An attempt failed: queue a retry with backoff, or give the job up after the last."""
    now = ctx.clock.now()
    policy = triggers.policy_for(desired, claim.job.participant, claim.job.thread)
    retry = triggerpolicy.settings(policy).retry
    failures = claim.job.failures + 1
    await _record(ctx, claim.job, now, Verdict.FAILED, step.reason, step.detail)
    if failures >= retry.max_attempts:
        return await _give_up(ctx, claim, step, failures)
    delay = triggers.retry_delay(
        claim.job.id,
        failures,
        backoff=retry.backoff,
        max_backoff=retry.max_backoff,
    )
    await ctx.db(
        jobs.settle,
        ctx.store,
        claim.job,
        claim.owner,
        now,
        state=JobState.QUEUED,
        due_at=now + delay,
        failures=failures,
        first_check_at=None,
        screen_hash=None,
    )
    return claim.envelope(Result.QUEUED, step.reason, step.detail, now + delay)


async def _give_up(ctx: Context, claim: Claim, step: triggers.Step, failures: int) -> Envelope:
    """The last attempt failed: the job is dead, and its messages settled."""
    job = claim.job
    now = ctx.clock.now()
    await ctx.db(
        jobs.settle, ctx.store, job, claim.owner, now, state=JobState.DEAD, failures=failures
    )
    await _settled_messages(ctx, job)  # only `triggers retry` brings these back
    await ctx.emit(
        "TriggerDead",
        str(step.reason),
        participant=job.participant,
        thread=job.thread,
        job=job.id,
        failures=failures,
    )
    return claim.envelope(Result.DEAD, step.reason, step.detail)


async def _done(ctx: Context, desired: DesiredState, claim: Claim, step: triggers.Step) -> Envelope:
    now = ctx.clock.now()
    job = claim.job
    result = _result_of(step.reason)
    await _record(ctx, job, now, Verdict(result.value), step.reason, step.detail)
    await ctx.db(jobs.settle, ctx.store, job, claim.owner, now, state=JobState.DONE)
    await _settled_messages(ctx, job)
    if step.block_participant:
        await _block(ctx, claim, step, now)
    if result == Result.FALLBACK_REQUIRED:
        await ctx.emit(
            "FallbackRequired",
            step.detail,
            participant=job.participant,
            thread=job.thread,
            code=str(step.reason),
        )
    return claim.envelope(result, step.reason, step.detail)


async def _block(ctx: Context, claim: Claim, step: triggers.Step, now: datetime) -> None:
    """A loop safeguard tripped: block the participant until a person lifts it."""
    job = claim.job
    state = await ctx.db(participants.get, ctx.store, job.participant)
    blocked = replace(state, blocked=f"{step.reason}: {step.detail}", loop=claim.facts.loop)
    await ctx.db(participants.put, ctx.store, job.participant, blocked, now)
    await ctx.emit(
        "ParticipantBlocked",
        step.detail,
        participant=job.participant,
        thread=job.thread,
        code=str(step.reason),
    )


async def _settled_messages(ctx: Context, job: jobs.Job) -> None:
    """These messages were dealt with (refused, handed to a person, given up): newer ones
    create a new job, these do not, pass after pass."""
    await ctx.db(messaging.mark_woken, ctx.store, job.thread, job.participant, job.unread_seq)


def _result_of(reason: Reason) -> Result:
    if reason.value.startswith("fallback_required"):
        return Result.FALLBACK_REQUIRED
    return Result.REFUSED if reason in REFUSALS else Result.DONE


async def _resume(
    ctx: Context, desired: DesiredState, claim: Claim, step: triggers.Step
) -> Envelope:
    binding = claim.binding
    assert binding is not None
    assert binding.spec.resume is not None
    started = await _start(ctx, binding, binding.spec.resume, step.reason)
    if not started:
        return await fail(ctx, desired, claim, replace(step, detail="resume did not start"))
    now = ctx.clock.now()
    job = claim.job
    await _record(ctx, job, now, Verdict.FALLBACK, step.reason, step.detail)
    await ctx.db(
        jobs.settle,
        ctx.store,
        job,
        claim.owner,
        now,
        state=JobState.QUEUED,
        due_at=now + RESUME_GRACE,
        resumes=job.resumes + 1,
    )
    detail = "resumed; the wake follows once it is up"
    return claim.envelope(Result.QUEUED, step.reason, detail, now + RESUME_GRACE)


async def _spawn(
    ctx: Context, desired: DesiredState, claim: Claim, step: triggers.Step
) -> Envelope:
    binding = claim.binding
    assert binding is not None
    assert binding.spec.spawn is not None
    job = claim.job
    summary = await _summary(ctx, job.thread)
    argv = tuple(arg.replace("{summary}", summary) for arg in binding.spec.spawn)
    if not await _start(ctx, binding, argv, step.reason):
        return await fail(ctx, desired, claim, replace(step, detail="spawn did not start"))
    now = ctx.clock.now()
    await _record(ctx, job, now, Verdict.DELIVERED, step.reason, step.detail)
    await _after_delivery(ctx, claim)
    await ctx.db(jobs.settle, ctx.store, job, claim.owner, now, state=JobState.DONE)
    await _delivered_event(ctx, job, step.reason, spawned=True)
    detail = "spawned a fresh session with a summary of the thread"
    return claim.envelope(Result.DELIVERED, step.reason, detail)


async def _summary(ctx: Context, thread: str) -> str:
    """A bounded, sanitised summary of the thread's latest messages."""
    recent = await ctx.db(messaging.history, ctx.store, thread, limit=20)
    lines = [f"{m.sender}: {payload.sanitize(m.body)}" for m in recent]
    return payload.truncate(" | ".join(lines), SUMMARY_BYTES)


async def _start(ctx: Context, binding: Binding, argv: tuple[str, ...], why: Reason) -> bool:
    """Start the binding's agent with another command (resume or spawn)."""
    lane = await ctx.db(ctx.store.lane_record, binding.spec.lane)
    if lane is None:
        return False
    action = planned.start(binding, None, path=lane.path, reason=f"fallback: {why}", command=argv)
    outcome = await agents.start_agent(action, ctx)
    return outcome.status == "applied"


_ACTS: Mapping[Kind, Act] = {
    Kind.DELIVER: _deliver,
    Kind.DEFER: _defer,
    Kind.FAIL: fail,
    Kind.DONE: _done,
    Kind.RESUME: _resume,
    Kind.SPAWN: _spawn,
}
