"""Processing one claimed trigger job: observe, decide (pure), act, record, settle.

Delivery types the wake prompt with ``send-keys -l --`` (text only, never key names), waits a
moment, presses Enter separately, and checks the prompt left the input line (Enter is retried at
most twice, else ``submit_unconfirmed``). The pane is probed just before: a dead pane is never
typed into. Every attempt is recorded with its reason code; the job is settled only while this
worker still holds its lease.
"""

from __future__ import annotations

import hashlib
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
REFUSALS = {Reason.NOT_MEMBER, Reason.THREAD_CLOSED, Reason.THREAD_UNKNOWN,
            Reason.PARTICIPANT_BLOCKED, Reason.LOOP_NO_PROGRESS,
            Reason.LOOP_IDENTICAL_FINDINGS}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Envelope:
    """The result of one trigger, as ``controller trigger`` prints it."""

    result: str  # delivered | queued | deferred | fallback_required | refused | dead | done
    reason: str
    participant: str
    thread: str
    job: int | None = None
    detail: str = ""
    until: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """Stable JSON."""
        return {
            "result": self.result, "reason": self.reason, "participant": self.participant,
            "thread": self.thread, "job": self.job, "detail": self.detail,
            "until": self.until.isoformat() if self.until else None,
        }  # fmt: skip


async def process(job: jobs.Job, ctx: Context, desired: DesiredState, owner: str) -> Envelope:
    """Take one claimed job one step further."""
    now = ctx.clock.now()
    if job.prev_owner and job.prev_owner != owner:
        expired = f"lease of {job.prev_owner} expired"
        await ctx.db(jobs.record, ctx.store, job, now, verdict="reclaimed",
                     reason=str(Reason.LEASE_EXPIRED), detail=expired)  # fmt: skip
    binding = desired.binding_of(job.participant)
    facts, screen_hash, loop_now = await _facts(ctx, desired, job, binding, now)
    step = triggers.decide(desired, facts, now)
    act = _ACTS[step.kind]
    return await act(ctx, desired, job, owner, step, binding=binding, screen_hash=screen_hash,
                     loop_now=loop_now, facts=facts)  # fmt: skip


async def _facts(
    ctx: Context, desired: DesiredState, job: jobs.Job, binding: Binding | None, now: datetime
) -> tuple[triggers.Facts, str | None, loops.LoopState]:
    unread = await _unread(ctx, job)
    record = await ctx.db(ctx.store.agent_record, binding.name) if binding else None
    pane, screen, screen_hash = await _screen(ctx, record)
    state = await ctx.db(participants.get, ctx.store, job.participant)
    loop_now = await _loop_now(ctx, job.participant, record, state)
    policy = triggers.policy_for(desired, job.participant, job.thread)
    rates = triggerpolicy.settings(policy).rate_limits
    per_p = rates.per_participant.per
    per_t = rates.per_thread.per
    mine = await ctx.db(jobs.deliveries, ctx.store, since=now - timedelta(seconds=per_p),
                        participant=job.participant)  # fmt: skip
    thread = await ctx.db(jobs.deliveries, ctx.store, since=now - timedelta(seconds=per_t),
                          thread=job.thread)  # fmt: skip
    facts = triggers.Facts(
        participant=job.participant, thread=job.thread, forced=job.forced, unread=unread,
        agent=record, pane=pane, screen=screen, first_check=job.first_check_at,
        previous_hash=job.screen_hash, own_delivery=max(mine, default=None),
        resumes=job.resumes, participant_deliveries=mine, thread_deliveries=thread,
        loop=loop_now, blocked=state.blocked, running=await _running(record),
    )  # fmt: skip
    return facts, screen_hash, loop_now


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
    pane = world.Pane(probe.session_id, record.window_id or "", record.pane_id, probe.pid,
                      dead=probe.dead, in_mode=probe.in_mode)  # fmt: skip
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


async def _deliver(ctx: Context, desired: DesiredState, job: jobs.Job, owner: str,
                   step: triggers.Step, **kw: Any) -> Envelope:  # fmt: skip
    facts: triggers.Facts = kw["facts"]
    assert ctx.tmux is not None
    assert facts.pane is not None
    pane = facts.pane.pane_id
    now = ctx.clock.now()
    if not await ctx.tmux.send_text(pane, step.text):
        failed = replace(step, reason=Reason.SEND_FAILED, detail="send-keys failed")
        return await fail(ctx, desired, job, owner, failed)
    confirmed = await _submit(ctx, pane, step.text)
    reason = step.reason if confirmed else Reason.SUBMIT_UNCONFIRMED
    verdict = "delivered" if confirmed else "unconfirmed"
    await ctx.db(jobs.record, ctx.store, job, now, verdict=verdict, reason=str(reason),
                 detail=step.text)  # fmt: skip
    await _after_delivery(ctx, job, kw["loop_now"], facts)
    await ctx.db(jobs.settle, ctx.store, job, owner, now, state="done")
    await ctx.emit("TriggerDelivered", str(reason), participant=job.participant,
                   thread=job.thread, job=job.id, forced=job.forced)  # fmt: skip
    result = "delivered" if confirmed else "submit_unconfirmed"
    return Envelope(result, str(reason), job.participant, job.thread, job.id, step.text)


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


async def _after_delivery(
    ctx: Context, job: jobs.Job, loop_now: loops.LoopState, facts: triggers.Facts
) -> None:
    """Remember what this turn starts from, and that these messages were announced."""
    seq = facts.unread.last_seq if facts.unread else job.unread_seq
    await ctx.db(messaging.mark_woken, ctx.store, job.thread, job.participant, seq)
    state = await ctx.db(participants.get, ctx.store, job.participant)
    turn = {
        "seqs": await ctx.db(messaging.last_seqs, ctx.store),
        "worktree": await _worktree_digest(ctx, facts.agent),
    }
    await ctx.db(participants.put, ctx.store, job.participant,
                 replace(state, loop=loop_now, turn=turn), ctx.clock.now())  # fmt: skip


async def _defer(ctx: Context, desired: DesiredState, job: jobs.Job, owner: str,
                 step: triggers.Step, **kw: Any) -> Envelope:  # fmt: skip
    now = ctx.clock.now()
    await ctx.db(jobs.record, ctx.store, job, now, verdict="deferred", reason=str(step.reason),
                 detail=step.detail)  # fmt: skip
    await ctx.db(
        jobs.settle, ctx.store, job, owner, now, state="queued", due_at=step.until,
        first_check_at=job.first_check_at or now, screen_hash=kw["screen_hash"],
    )  # fmt: skip
    return Envelope("deferred", str(step.reason), job.participant, job.thread, job.id,
                    step.detail, step.until)  # fmt: skip


async def fail(ctx: Context, desired: DesiredState, job: jobs.Job, owner: str,
                step: triggers.Step, **kw: Any) -> Envelope:  # fmt: skip
    now = ctx.clock.now()
    policy = triggers.policy_for(desired, job.participant, job.thread)
    retry = triggerpolicy.settings(policy).retry
    failures = job.failures + 1
    await ctx.db(jobs.record, ctx.store, job, now, verdict="failed", reason=str(step.reason),
                 detail=step.detail)  # fmt: skip
    if failures >= retry.max_attempts:
        await ctx.db(jobs.settle, ctx.store, job, owner, now, state="dead", failures=failures)
        await _settled_messages(ctx, job)  # only `triggers retry` brings these back
        await ctx.emit("TriggerDead", str(step.reason), participant=job.participant,
                       thread=job.thread, job=job.id, failures=failures)  # fmt: skip
        return Envelope("dead", str(step.reason), job.participant, job.thread, job.id,
                        step.detail)  # fmt: skip
    delay = triggers.retry_delay(job.id, failures, backoff=retry.backoff,
                                 max_backoff=retry.max_backoff)  # fmt: skip
    await ctx.db(jobs.settle, ctx.store, job, owner, now, state="queued", due_at=now + delay,
                 failures=failures, first_check_at=None, screen_hash=None)  # fmt: skip
    return Envelope("queued", str(step.reason), job.participant, job.thread, job.id,
                    step.detail, now + delay)  # fmt: skip


async def _done(ctx: Context, desired: DesiredState, job: jobs.Job, owner: str,
                step: triggers.Step, **kw: Any) -> Envelope:  # fmt: skip
    now = ctx.clock.now()
    result = _result_of(step.reason)
    await ctx.db(jobs.record, ctx.store, job, now, verdict=result, reason=str(step.reason),
                 detail=step.detail)  # fmt: skip
    await ctx.db(jobs.settle, ctx.store, job, owner, now, state="done")
    await _settled_messages(ctx, job)
    if step.block_participant:
        state = await ctx.db(participants.get, ctx.store, job.participant)
        blocked = replace(state, blocked=f"{step.reason}: {step.detail}", loop=kw["loop_now"])
        await ctx.db(participants.put, ctx.store, job.participant, blocked, now)
        await ctx.emit("ParticipantBlocked", step.detail, participant=job.participant,
                       thread=job.thread, code=str(step.reason))  # fmt: skip
    if result == "fallback_required":
        await ctx.emit("FallbackRequired", step.detail, participant=job.participant,
                       thread=job.thread, code=str(step.reason))  # fmt: skip
    return Envelope(result, str(step.reason), job.participant, job.thread, job.id, step.detail)


async def _settled_messages(ctx: Context, job: jobs.Job) -> None:
    """These messages were dealt with (refused, handed to a person, given up): newer ones
    create a new job, these do not, pass after pass."""
    await ctx.db(messaging.mark_woken, ctx.store, job.thread, job.participant, job.unread_seq)


def _result_of(reason: Reason) -> str:
    if reason.value.startswith("fallback_required"):
        return "fallback_required"
    return "refused" if reason in REFUSALS else "done"


async def _resume(ctx: Context, desired: DesiredState, job: jobs.Job, owner: str,
                  step: triggers.Step, **kw: Any) -> Envelope:  # fmt: skip
    binding: Binding = kw["binding"]
    assert binding.spec.resume is not None
    started = await _start(ctx, desired, binding, binding.spec.resume, step.reason)
    if not started:
        return await fail(ctx, desired, job, owner, replace(step, detail="resume did not start"))
    now = ctx.clock.now()
    await ctx.db(jobs.record, ctx.store, job, now, verdict="fallback", reason=str(step.reason),
                 detail=step.detail)  # fmt: skip
    await ctx.db(jobs.settle, ctx.store, job, owner, now, state="queued",
                 due_at=now + RESUME_GRACE, resumes=job.resumes + 1)  # fmt: skip
    return Envelope("queued", str(step.reason), job.participant, job.thread, job.id,
                    "resumed; the wake follows once it is up", now + RESUME_GRACE)  # fmt: skip


async def _spawn(ctx: Context, desired: DesiredState, job: jobs.Job, owner: str,
                 step: triggers.Step, **kw: Any) -> Envelope:  # fmt: skip
    binding: Binding = kw["binding"]
    assert binding.spec.spawn is not None
    summary = await _summary(ctx, job.thread)
    argv = tuple(arg.replace("{summary}", summary) for arg in binding.spec.spawn)
    if not await _start(ctx, desired, binding, argv, step.reason):
        return await fail(ctx, desired, job, owner, replace(step, detail="spawn did not start"))
    now = ctx.clock.now()
    await ctx.db(jobs.record, ctx.store, job, now, verdict="delivered", reason=str(step.reason),
                 detail=step.detail)  # fmt: skip
    facts: triggers.Facts = kw["facts"]
    await _after_delivery(ctx, job, kw["loop_now"], facts)
    await ctx.db(jobs.settle, ctx.store, job, owner, now, state="done")
    await ctx.emit("TriggerDelivered", str(step.reason), participant=job.participant,
                   thread=job.thread, job=job.id, spawned=True)  # fmt: skip
    return Envelope("delivered", str(step.reason), job.participant, job.thread, job.id,
                    "spawned a fresh session with a summary of the thread")  # fmt: skip


async def _summary(ctx: Context, thread: str) -> str:
    """A bounded, sanitised summary of the thread's latest messages."""
    recent = await ctx.db(messaging.history, ctx.store, thread, limit=20)
    lines = [f"{m.sender}: {payload.sanitize(m.body)}" for m in recent]
    return payload.truncate(" | ".join(lines), SUMMARY_BYTES)


async def _start(
    ctx: Context, desired: DesiredState, binding: Binding, argv: tuple[str, ...], why: Reason
) -> bool:
    """Start the binding's agent with another command (resume or spawn)."""
    lane = await ctx.db(ctx.store.lane_record, binding.spec.lane)
    if lane is None:
        return False
    action = planned.start(binding, None, path=lane.path, reason=f"fallback: {why}", command=argv)
    outcome = await agents.start_agent(action, ctx)
    return outcome.status == "applied"


_ACTS = {
    Kind.DELIVER: _deliver,
    Kind.DEFER: _defer,
    Kind.FAIL: fail,
    Kind.DONE: _done,
    Kind.RESUME: _resume,
    Kind.SPAWN: _spawn,
}
