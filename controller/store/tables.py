"""Table definitions (SQLAlchemy Core). Every row carries its workspace, so one PostgreSQL
database can serve many workspaces and hosts.

The ``lanes`` table *is* the worktree and branch inventory: a lane row exists from the moment the
controller decides to create its worktree (written before ``git worktree add``) until the
worktree is gone, so a crash at any point leaves a record to reconcile from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

HEAD_REVISION = "0007"
"""The newest migration; opening a store at this revision skips Alembic entirely."""


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores no time zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

lanes = sa.Table(
    "lanes",
    metadata,
    sa.Column("workspace", sa.String(253), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("branch", sa.Text, nullable=False),
    sa.Column("on_dirty", sa.String(16), nullable=False, server_default="preserve"),
    sa.Column("created_branch", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("adopted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("conditions", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("host", sa.String(253), nullable=True),  # revision 0006; NULL: single host
)

lane_memory = sa.Table(
    "lane_memory",
    metadata,
    sa.Column("workspace", sa.String(253), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_applied", sa.JSON, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("workspace", sa.String(253), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("correlation_id", sa.String(64), nullable=False),
    sa.Column("lane", sa.String(63), nullable=True),
    sa.Column("participant", sa.String(63), nullable=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Index("ix_events_workspace_id", "workspace", "id"),
    sa.Index("ix_events_workspace_lane_id", "workspace", "lane", "id"),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("workspace", sa.String(253), primary_key=True),
    sa.Column("binding", sa.String(63), primary_key=True),
    sa.Column("lane", sa.String(63), nullable=False),
    sa.Column("participant", sa.String(63), nullable=False),
    sa.Column("runtime", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("spec_hash", sa.String(64), nullable=False),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("pid_created", sa.Float, nullable=True),
    sa.Column("session_id", sa.String(32), nullable=True),
    sa.Column("window_id", sa.String(32), nullable=True),
    sa.Column("pane_id", sa.String(32), nullable=True),
    sa.Column("log_path", sa.Text, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("restarts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("consecutive", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deaths", sa.JSON, nullable=False),
    sa.Column("last_exit", sa.Integer, nullable=True),
    sa.Column("next_start_at", UTCDateTime, nullable=True),
    sa.Column("blocked", sa.Text, nullable=True),
    sa.Column("heartbeat_at", UTCDateTime, nullable=True),
    sa.Column("stop_grace", sa.Float, nullable=False, server_default="10"),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("spec_fields", sa.JSON, nullable=False, server_default="{}"),  # revision 0005
    sa.Column("host", sa.String(253), nullable=True),  # revision 0006; NULL: single host
)
"""The agent inventory: every process and pane the controller started, with its identity
(PID *and* process create time, since PIDs are reused) and its restart bookkeeping."""

thread_heads = sa.Table(
    "thread_heads",
    metadata,
    sa.Column("workspace", sa.String(253), primary_key=True),
    sa.Column("thread", sa.String(63), primary_key=True),
    sa.Column("last_seq", sa.Integer, nullable=False),
)
"""The newest sequence number of each thread (incremented in the same statement as a post)."""

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("workspace", sa.String(253), primary_key=True),
    sa.Column("thread", sa.String(63), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("sender", sa.String(63), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)

cursors = sa.Table(
    "cursors",
    metadata,
    sa.Column("workspace", sa.String(253), primary_key=True),
    sa.Column("thread", sa.String(63), primary_key=True),
    sa.Column("participant", sa.String(63), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("woken", sa.Integer, nullable=False, server_default="0"),
)
"""Up to which sequence number a participant has read a thread (``seq``), and up to which one a
delivered wake already told it about (``woken``): only newer messages wake it again."""

JOB_STATES = ("queued", "running", "done", "dead")

trigger_jobs = sa.Table(
    "trigger_jobs",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("workspace", sa.String(253), nullable=False),
    sa.Column("participant", sa.String(63), nullable=False),
    sa.Column("thread", sa.String(63), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("due_at", UTCDateTime, nullable=False),
    sa.Column("first_check_at", UTCDateTime, nullable=True),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("resumes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("unread_seq", sa.Integer, nullable=False),
    sa.Column("screen_hash", sa.String(64), nullable=True),
    sa.Column("forced", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", UTCDateTime, nullable=True),
    sa.Column("prev_owner", sa.String(64), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_jobs_due", "workspace", "state", "due_at"),
    sa.Index("ix_jobs_participant", "workspace", "participant", "state", "due_at"),
    # At most one queued and one running job per participant and thread; later messages
    # coalesce into the queued one. PostgreSQL gets the same partial indexes from migration
    # 0003: `postgresql_where=` here would load its dialect on every command, for SQLite stores too.
    sa.Index(
        "ux_jobs_queued",
        "workspace",
        "participant",
        "thread",
        unique=True,
        sqlite_where=sa.text("state = 'queued'"),
    ),
    sa.Index(
        "ux_jobs_running",
        "workspace",
        "participant",
        "thread",
        unique=True,
        sqlite_where=sa.text("state = 'running'"),
    ),
)

trigger_attempts = sa.Table(
    "trigger_attempts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("workspace", sa.String(253), nullable=False),
    sa.Column("job_id", sa.BigInteger, nullable=False),
    sa.Column("participant", sa.String(63), nullable=False),
    sa.Column("thread", sa.String(63), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(48), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_attempts_job", "job_id"),
    sa.Index("ix_attempts_participant_at", "workspace", "participant", "at"),
    sa.Index("ix_attempts_thread_at", "workspace", "thread", "at"),
)
"""Every attempt, append-only, with a reason code from ``core.safeguards.decisions.Reason``."""

participants = sa.Table(
    "participants",
    metadata,
    sa.Column("workspace", sa.String(253), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("blocked", sa.Text, nullable=True),
    sa.Column("no_progress", sa.Integer, nullable=False, server_default="0"),
    sa.Column("finding", sa.String(64), nullable=True),
    sa.Column("identical", sa.Integer, nullable=False, server_default="0"),
    sa.Column("turn", sa.JSON, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)
"""Per participant: auto-block and loop-safeguard counters, and what its last turn started from."""

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("workspace", sa.String(253), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("workflow", sa.String(63), nullable=False),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False, server_default=""),
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    sa.Column("snapshot", sa.JSON, nullable=False),
    sa.Column("template_hash", sa.String(64), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("max_cost_usd", sa.Float, nullable=True),
    sa.Column("max_tokens", sa.BigInteger, nullable=True),
    sa.Column("spent_usd", sa.Float, nullable=False, server_default="0"),
    sa.Column("reserved_usd", sa.Float, nullable=False, server_default="0"),
    sa.Column("spent_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("reserved_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("abort_reason", sa.Text, nullable=True),
    sa.Column("refused", sa.Text, nullable=True),
    sa.Column("cleaned", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)
"""Workflow runs: the snapshot of resolved tasks and prices taken at creation (immutable), the
phase, and the budget's running totals. The limits are copied out of the snapshot so that one
guarded ``UPDATE`` can reserve against them (PostgreSQL re-checks the row after a concurrent
update, SQLite serialises writers): concurrent dispatches never overshoot together."""

run_tasks = sa.Table(
    "run_tasks",
    metadata,
    sa.Column("workspace", sa.String(253), primary_key=True),
    sa.Column("run", sa.String(63), primary_key=True),
    sa.Column("task", sa.String(63), primary_key=True),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False, server_default=""),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("due_at", UTCDateTime, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("lane", sa.String(63), nullable=False),
    sa.Column("branch", sa.Text, nullable=False),
    sa.Column("base_commit", sa.String(64), nullable=True),
    sa.Column("head_commit", sa.String(64), nullable=True),
    sa.Column("session_id", sa.String(64), nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("final_message", sa.Text, nullable=True),
    sa.Column("command", sa.JSON, nullable=True),
    sa.Column("outputs", sa.JSON, nullable=False),
    sa.Column("usage", sa.JSON, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
    sa.Column("reserved_usd", sa.Float, nullable=False, server_default="0"),
    sa.Column("reserved_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("estimate_usd", sa.Float, nullable=False, server_default="0"),
    sa.Column("estimate_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("log_offset", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("progress", sa.JSON, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("host", sa.String(253), nullable=True),  # revision 0007; NULL: single host
    sa.Index("ix_run_tasks_lane", "workspace", "lane", unique=True),
)
"""One row per task of a run: its phase across attempts, its lane and branch, its base and final
commits, its final message and output digests (what routing reads), its usage so far and the
log offset its usage parser has consumed (so parsing resumes after a crash, never twice)."""

task_attempts = sa.Table(
    "task_attempts",
    metadata,
    sa.Column("workspace", sa.String(253), primary_key=True),
    sa.Column("run", sa.String(63), primary_key=True),
    sa.Column("task", sa.String(63), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False, server_default=""),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("session_id", sa.String(64), nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("estimate_usd", sa.Float, nullable=False, server_default="0"),
    sa.Column("estimate_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("reservation", sa.String(16), nullable=False),
    sa.Column("usage", sa.JSON, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
)
"""Every dispatch of a task, with its budget reservation (``held`` until settled or released)."""

usage_records = sa.Table(
    "usage_records",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("workspace", sa.String(253), nullable=False),
    sa.Column("run", sa.String(63), nullable=False),
    sa.Column("task", sa.String(63), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_read_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("catalog_cost_usd", sa.Float, nullable=False),
    sa.Column("reported_cost_usd", sa.Float, nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_usage_run", "workspace", "run", "task"),
)
"""Append-only usage increments (parsed from a task's stdout, or `controller usage add`), each
with the cost charged (reported when given, else catalog) and both costs kept."""

hosts = sa.Table(
    "hosts",
    metadata,
    sa.Column("workspace", sa.String(253), primary_key=True),
    sa.Column("name", sa.String(253), primary_key=True),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("machine", sa.String(253), nullable=False),
    sa.Column("repo", sa.Text, nullable=False, server_default=""),
    sa.Column("instance", sa.String(64), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("renewed_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("released_at", UTCDateTime, nullable=True),
)
"""Host leases (revision 0006): one row per host name, held by one controller (``instance``, a
random id per process) and renewed by it; times come from the database's clock, never a host's.
A row whose ``expires_at`` is past is a lost host; a released one expires at once."""
