"""The TriggerPolicy kind: who is woken for unread messages, and the safeguards around it.

The wake template may only use `{participant}`, `{thread}`, `{unread}` and `{sender}`: message
bodies are never typed into a terminal. Pure: no I/O, never delivers anything.
"""

from __future__ import annotations

import string
from typing import Literal

from pydantic import Field, field_validator, model_validator

from controller.spec import meta

PLACEHOLDERS = ("participant", "thread", "unread", "sender")
DEFAULT_TEMPLATE = (
    "You have {unread} unread message(s) in {thread} from {sender}. "
    "Run: controller read {thread} --as {participant}"
)


def check_template(template: str) -> str:
    """Return `template` if its only placeholders are the four allowed ones, else raise."""
    if not template.strip():
        raise ValueError("template must not be empty")
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template)]
    except ValueError as error:
        raise ValueError(f"template is not a valid format string: {error}") from None
    for field in fields:
        if field is not None and field not in PLACEHOLDERS:
            raise ValueError(
                f"template placeholder {{{field}}} is not allowed; use {{participant}}, "
                "{thread}, {unread} or {sender} (write {{ and }} for literal braces)"
            )
    return template


class Collision(meta.SpecModel):
    """Never type while someone else is typing."""

    quiet_seconds: meta.Duration = 20.0
    """The window must have been quiet this long."""
    recheck_seconds: meta.PositiveDuration = 5.0
    """Re-check interval while deferred."""
    max_defer_seconds: meta.Duration = 60.0
    """Longest deferral before the attempt ends as `collision_timeout`."""


class ParticipantRate(meta.SpecModel):
    """At most `count` wakes of one participant per `per`."""

    count: int = Field(default=6, ge=1)
    """Wakes allowed in the window."""
    per: meta.PositiveDuration = 3600.0
    """The sliding window."""


class ThreadRate(meta.SpecModel):
    """At most `count` wakes for one thread per `per`."""

    count: int = Field(default=20, ge=1)
    """Wakes allowed in the window."""
    per: meta.PositiveDuration = 3600.0
    """The sliding window."""


class RateLimits(meta.SpecModel):
    """Rate limits per participant and per thread."""

    per_participant: ParticipantRate = ParticipantRate()
    """Limit per participant."""
    per_thread: ThreadRate = ThreadRate()
    """Limit per thread."""


class LoopLimits(meta.SpecModel):
    """Auto-block a participant that is going in circles."""

    max_no_progress_turns: int = Field(default=20, ge=1)
    """Consecutive wakes with no message, commit or worktree change."""
    max_identical_findings: int = Field(default=3, ge=1)
    """Cycles producing the same finding (after normalising white space)."""


class Fallback(meta.SpecModel):
    """The chain when the participant's window is gone: resume, spawn, dead letter."""

    resume_attempts: int = Field(default=2, ge=0)
    """Resume attempts before spawning fresh."""
    stale_session_hours: float = Field(default=12.0, ge=0)
    """A session idle longer than this is not resumed."""


class Payload(meta.SpecModel):
    """What may be typed into a terminal."""

    max_bytes: int = Field(default=2048, ge=64, le=65536)
    """Longest prompt, in UTF-8 bytes."""
    control_chars: Literal["strip", "reject"] = "strip"
    """Control characters and escape sequences are stripped, or the delivery is refused."""


class Retry(meta.SpecModel):
    """Retries of a failed delivery: exponential backoff, jittered."""

    max_attempts: int = Field(default=5, ge=1)
    """Attempts before the job is dead."""
    backoff: meta.PositiveDuration = 10.0
    """First delay; it doubles."""
    max_backoff: meta.PositiveDuration = 300.0
    """Longest delay."""

    @model_validator(mode="after")
    def _ordered(self) -> Retry:
        if self.max_backoff < self.backoff:
            raise ValueError("maxBackoff must not be shorter than backoff")
        return self


class TriggerPolicySpec(meta.SpecModel):
    """Selection, template and safeguards."""

    participants: meta.UniqueNames | None = None
    """Participants woken by this policy; default every managed (bound) participant."""
    threads: meta.UniqueNames | None = None
    """Threads whose messages wake; default every thread."""
    template: str = DEFAULT_TEMPLATE
    """Wake prompt; placeholders `{participant}`, `{thread}`, `{unread}`, `{sender}`."""
    collision: Collision = Collision()
    """Collision window."""
    rate_limits: RateLimits = RateLimits()
    """Rate limits."""
    loop: LoopLimits = LoopLimits()
    """Loop safeguards."""
    fallback: Fallback = Fallback()
    """Fallback chain."""
    payload: Payload = Payload()
    """Payload limits."""
    retry: Retry = Retry()
    """Retry backoff."""

    @field_validator("template")
    @classmethod
    def _check_template(cls, template: str) -> str:
        return check_template(template)


class TriggerPolicy(meta.Document):
    """Which participants and threads wake, and how carefully."""

    kind: Literal["TriggerPolicy"] = "TriggerPolicy"
    """Always `TriggerPolicy`."""
    spec: TriggerPolicySpec = TriggerPolicySpec()
    """Selection and safeguards; every field has a default."""


DEFAULTS = TriggerPolicySpec()


def settings(policy: TriggerPolicy | None) -> TriggerPolicySpec:
    """The values a wake works with: its policy's, or the defaults when no policy selects it
    (a forced wake)."""
    return policy.spec if policy is not None else DEFAULTS
