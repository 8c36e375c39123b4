"""This controller's host lease: taken before a pass applies anything, renewed by the daemon,
given back when it stops (DESIGN §9, decision 111).

Only a workspace that declares `hosts` has leases (they live in its shared PostgreSQL store); a
single host takes none, so its passes write nothing more than before.
"""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio

from controller import __version__, errors
from controller.runtime import wiring
from controller.store import leases, queries
from controller.system import clock as clocks


class HostTaken(errors.ControllerError):
    """Another live controller holds this host name."""


def holder(paths: wiring.Paths) -> leases.Holder:
    """Who this process is, for its lease: host name, a random instance id, pid, machine."""
    import socket

    mine = [h for h in paths.spec.hosts if h.name.lower() == paths.host.lower()]
    labels = dict(mine[0].match_labels) if mine else {}
    return leases.Holder(
        name=paths.host,
        instance=uuid.uuid4().hex,
        pid=os.getpid(),
        machine=socket.gethostname(),
        repo=str(paths.repo),
        version=__version__,
        labels=labels,
    )


@dataclass(slots=True)
class HostLease:
    """The lease of one controller process; ``held()`` says whether it may apply now.

    Validity is counted on this process's monotonic clock from *before* each renewal's
    statement, so it ends no later than the database's expiry: a daemon paused past its lease
    (a suspended laptop, a stopped process) stops applying until it has renewed.
    """

    holder: leases.Holder
    seconds: float = wiring.LEASE_SECONDS
    clock: clocks.Clock = field(default_factory=clocks.SystemClock)
    valid_until: float = 0.0

    @classmethod
    def of(cls, paths: wiring.Paths) -> HostLease:
        """The lease this process would hold for ``paths``' host."""
        return cls(holder(paths), seconds=wiring.lease_seconds())

    @property
    def renew_every(self) -> float:
        """How often the daemon renews: three times per lease."""
        return self.seconds / 3

    def held(self) -> bool:
        """Whether the lease is ours and not yet expired (by our own, cautious count)."""
        return self.clock.monotonic() < self.valid_until

    async def take(self, store: queries.Store, *, share: bool = False) -> bool:
        """Acquire or renew; raise ``HostTaken`` (naming the holder) when another has it.

        With ``share`` (a command's pass, not a daemon), a live holder in this very clone on
        this machine (the daemon of this checkout) is no refusal: the pass runs under its
        lease, serialised with it by the workspace lock. Returns whether the lease is ours.
        """
        started = self.clock.monotonic()
        take = functools.partial(leases.acquire, store, self.holder, seconds=self.seconds)
        lease, now = await anyio.to_thread.run_sync(take)
        if lease.instance == self.holder.instance:
            self.valid_until = started + self.seconds
            return True
        self.valid_until = 0.0
        mine = (lease.machine, lease.repo) == (self.holder.machine, self.holder.repo)
        if share and mine:
            return False
        raise HostTaken(leases.refusal(lease, now))

    async def give_back(self, store: queries.Store) -> None:
        """Release the lease (if ours): the next controller of this host starts at once."""
        self.valid_until = 0.0
        await anyio.to_thread.run_sync(leases.release, store, self.holder)


@contextlib.asynccontextmanager
async def held(paths: wiring.Paths, store: queries.Store) -> AsyncIterator[HostLease | None]:
    """Hold this host's lease for a block (a ``--once`` pass), and give it back after it, so
    that the next ``--once`` is never refused; run under it when this clone's own daemon holds
    it (call it inside the workspace lock). Nothing without `hosts`."""
    if not paths.hosted:
        yield None
        return
    lease = HostLease.of(paths)
    if not await lease.take(store, share=True):
        yield None  # this clone's daemon holds it: the workspace lock keeps us apart
        return
    try:
        yield lease
    finally:
        with anyio.CancelScope(shield=True):
            await lease.give_back(store)
