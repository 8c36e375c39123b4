"""The Thread kind: a message thread and its members.

Members need no Binding: an unbound participant is unmanaged (a human, say) and is never woken.
Messages themselves live in the store, not here. Pure: no I/O.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from controller.spec import meta


class ThreadSpec(meta.SpecModel):
    """Who may read and post in a thread, and whether it is open."""

    participants: meta.UniqueNames = Field(min_length=1)
    """Members; posting or reading as a non-member is refused."""
    closed: bool = False
    """A closed thread wakes nobody."""


class Thread(meta.Document):
    """A message thread between participants."""

    kind: Literal["Thread"] = "Thread"
    """Always `Thread`."""
    spec: ThreadSpec
    """Members and state."""
