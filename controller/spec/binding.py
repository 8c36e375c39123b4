"""The Binding kind: one participant (an agent process) bound to one lane.

Commands are argv lists, never shell strings. The environment the controller itself sets
(`LANE_*`, `CONTROLLER_STATE`) is reserved. Pure: no I/O, never starts anything.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from controller.spec import meta

RESERVED_ENV = frozenset({"CONTROLLER_STATE", "CONTROLLER_WORKSPACE", "CONTROLLER_DESIRED"})
RESERVED_ENV_PREFIX = "LANE_"
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_env(env: dict[str, str]) -> dict[str, str]:
    """Return `env` if every name is valid and not reserved and no value has a NUL byte."""
    for key, value in env.items():
        _check_env_key(key)
        if "\x00" in value:
            raise ValueError(f"env value of {key!r} contains a NUL byte")
    return env


class CrashLoop(meta.SpecModel):
    """When repeated deaths mean the binding is crash-looping (blocked until unblocked)."""

    deaths: int = Field(default=5, ge=2)
    """Deaths that count as a crash loop."""
    within: meta.PositiveDuration = 600.0
    """Window the deaths must fall within."""


class Heartbeat(meta.SpecModel):
    """Stale-agent detection; off unless set, since an idle agent at its prompt is not hung."""

    source: Literal["activity", "explicit"] = "activity"
    """`activity`: window activity counts; `explicit`: only `controller heartbeat` counts."""
    stale_after: meta.PositiveDuration
    """Without a heartbeat for this long, the agent is stale."""


def _check_env_key(key: str) -> None:
    if not _ENV_KEY_RE.fullmatch(key):
        raise ValueError(f"env name {key!r} must match [A-Za-z_][A-Za-z0-9_]*")
    if key in RESERVED_ENV or key.startswith(RESERVED_ENV_PREFIX):
        raise ValueError(
            f"env name {key!r} is reserved: the controller sets LANE_*, CONTROLLER_STATE, "
            "CONTROLLER_WORKSPACE and CONTROLLER_DESIRED"
        )


class BindingSpec(meta.SpecModel):
    """How one participant runs in one lane."""

    lane: meta.Name
    """The lane the participant runs in."""
    participant: meta.Name
    """The participant's name, as used in threads; bound by at most one Binding."""
    command: meta.Argv
    """Program and arguments, e.g. `[claude]`; started in the lane's worktree."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment. Values are redacted in logs and events."""
    runtime: Literal["tmux", "process"] = "tmux"
    """`tmux`: a window in the workspace's tmux server; `process`: detached, logs to a file."""
    restart: Literal["always", "on-failure", "never"] = "on-failure"
    """When to restart after the command exits; the first restart is immediate."""
    crash_loop: CrashLoop = CrashLoop()
    """Crash-loop threshold."""
    resume: meta.Argv | None = None
    """Command that resumes the agent's last session; first hop of the fallback chain."""
    spawn: meta.Argv | None = None
    """Command that starts a fresh agent; the text `{summary}` becomes the thread summary."""
    heartbeat: Heartbeat | None = None
    """Stale detection; none unless set."""
    stop_grace_seconds: meta.Duration = 10.0
    """Time between SIGTERM and SIGKILL when stopping."""

    @field_validator("env")
    @classmethod
    def _check_env(cls, env: dict[str, str]) -> dict[str, str]:
        return check_env(env)


class Binding(meta.Document):
    """Binds one participant (an agent process) to a lane."""

    kind: Literal["Binding"] = "Binding"
    """Always `Binding`."""
    spec: BindingSpec
    """Lane, participant, command and run policy."""
