"""What ``post`` checks and changes, for the command line and the daemon's API alike: the
thread is declared and open, the sender is a member, the body is neither empty nor too long.
"""

from __future__ import annotations

from datetime import datetime

from controller import errors
from controller.spec.state import DesiredState
from controller.store import messaging, queries

MAX_BODY = 64 * 1024


class Refused(errors.ControllerError):
    """A post or a read refused: an unknown or closed thread, a non-member, a bad body."""


def check_member(desired: DesiredState, thread: str, who: str) -> None:
    """Refuse an undeclared thread, or ``who`` when not one of its members."""
    found = desired.threads.get(thread)
    if found is None:
        known = ", ".join(desired.threads) or "none"
        raise Refused(f"thread {thread} is not declared (declared: {known})")
    if who not in found.spec.participants:
        members = ", ".join(found.spec.participants)
        raise Refused(f"{who} is not a member of thread {thread} (members: {members})")


def check_body(body: str) -> None:
    """Refuse a body longer than ``MAX_BODY`` bytes, or one of white space only."""
    if len(body.encode()) > MAX_BODY:
        raise Refused(f"message longer than {MAX_BODY} bytes")
    if not body.strip():
        raise Refused("empty message")


def post(
    store: queries.Store,
    desired: DesiredState,
    *,
    thread: str,
    sender: str,
    body: str,
    now: datetime,
) -> int:
    """Append ``body`` to ``thread`` as ``sender``; its sequence number."""
    check_body(body)
    check_member(desired, thread, sender)
    if desired.threads[thread].spec.closed:
        raise Refused(f"thread {thread} is closed")
    return messaging.post(store, thread, sender, body, now)
