"""The server as the daemon runs it: uvicorn on the unix socket (and TCP), in its event loop.

uvicorn's ``Server.serve(sockets=...)`` serves sockets bound here (so the unix socket's mode
and stale-socket handling are ours), as one more task of the daemon's task group. uvicorn's
own signal handlers are left out: the daemon's handle SIGINT and SIGTERM, and stop the
server (``should_exit``) before they exit.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import uvicorn
from starlette.types import ASGIApp

from controller import errors
from controller.runtime import reconcile, status
from controller.runtime.daemon import Level, PassEnd
from controller.server import app, sockets, views
from controller.server.metrics import Metrics

if TYPE_CHECKING:
    from controller.executors import triggers as deliver
    from controller.runtime.daemon import Daemon

STOP_TIMEOUT = 5  # seconds open connections get to finish when the daemon stops


@dataclass(frozen=True, slots=True)
class Address:
    """``--metrics-addr HOST:PORT``."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        """``HOST:PORT`` (``[::1]:9108`` for IPv6)."""
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise errors.ControllerError(f"--metrics-addr {text!r}: expected HOST:PORT")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers (the daemon owns the signals)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpService:
    """A ``runtime.daemon.Service``: the unix socket always, TCP with ``metrics_addr``."""

    def __init__(
        self,
        *,
        metrics_addr: Address | None = None,
        texts: views.Texts | None = None,
        token: str | None = None,
    ) -> None:
        self.metrics_addr = metrics_addr
        self.texts = texts  # how the command line draws views (the unix socket's format=text)
        self.token = token  # --api-token-file's: the TCP listener's writing routes (never logged)
        self.metrics = Metrics()
        self.bound: sockets.Bound | None = None
        self.tcp: socket.socket | None = None
        self.servers: list[tuple[_Server, socket.socket, anyio.Event]] = []
        self.daemon: Daemon | None = None

    @property
    def path(self) -> Path | None:
        """The unix socket's path, once bound."""
        return self.bound.path if self.bound is not None else None

    async def open(self, daemon: Daemon) -> None:
        """Bind the unix socket in the workspace's ``.lanes/`` and the TCP listener, if any."""
        self.daemon = daemon
        paths = await anyio.to_thread.run_sync(daemon.locate)
        self.bound = sockets.bind(paths.state_dir / sockets.SOCKET_NAME)
        if self.bound.replaced_stale:
            daemon.log("replaced a stale socket", level=Level.WARNING, socket=str(self.bound.path))
        self._add(app.build(daemon, self.metrics, private=True, texts=self.texts), self.bound.sock)
        if self.metrics_addr is not None:
            self.tcp = _listen(self.metrics_addr)
            public = app.build(daemon, self.metrics, private=False, token=self.token)
            self._add(public, self.tcp)

    def listeners(self) -> dict[str, str]:
        """Where it serves, for the daemon's start-up line."""
        shown = {"socket": str(self.path), "metrics": _shown(self.metrics_addr)}
        if self.metrics_addr is not None:
            shown["tcpWrites"] = "bearer-token" if self.token is not None else "off"
        return shown

    def _add(self, application: ASGIApp, sock: socket.socket) -> None:
        config = uvicorn.Config(
            application,
            lifespan="off",
            log_config=None,
            access_log=False,
            http="h11",
            ws="none",
            timeout_graceful_shutdown=STOP_TIMEOUT,
        )
        self.servers.append((_Server(config), sock, anyio.Event()))

    def start(self, group: anyio.abc.TaskGroup) -> None:
        """Serve every listener in the daemon's task group."""
        for server, sock, done in self.servers:
            group.start_soon(_serve, server, sock, done)

    async def passed(self, daemon: Daemon, result: reconcile.PassResult, seconds: float) -> None:
        """Count the pass; keep the status it leaves for the gauges (the pass's own look at
        the world when it changed nothing, else one fresh look)."""
        self.metrics.passed(result, seconds)
        rec, desired = daemon.reconciler, daemon.desired
        if rec is None or desired is None:
            return
        try:
            if result.outcomes:
                view = await status.build(rec, desired, daemon.problems)
            else:
                now = result.started or daemon.clock.now()
                seen = (result.plan, result.observed, now)
                view = await status.compose(rec, desired, problems=daemon.problems, seen=seen)
        except Exception as exc:  # metrics must never end a pass
            daemon.log("status for metrics failed", level=Level.WARNING, error=repr(exc))
            return
        self.metrics.snapshot.status = view

    def failed(self, result: PassEnd, seconds: float) -> None:
        """Count a pass that raised."""
        self.metrics.failed(result, seconds)

    def woke(self, envelopes: list[deliver.Envelope]) -> None:
        """Count the quick wake step's results."""
        self.metrics.woke(envelopes)

    async def stop(self) -> None:
        """Stop serving (open requests get ``STOP_TIMEOUT``) and remove the socket file."""
        for server, _, _ in self.servers:
            server.should_exit = True
        with anyio.move_on_after(STOP_TIMEOUT * 2):
            for server, _, done in self.servers:
                if server.started:
                    await done.wait()
        if self.bound is not None:
            sockets.remove(self.bound)
        if self.tcp is not None:
            self.tcp.close()


async def _serve(server: _Server, sock: socket.socket, done: anyio.Event) -> None:
    try:
        await server.serve(sockets=[sock])
    finally:
        done.set()


def _listen(address: Address) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    try:
        return socket.create_server((address.host, address.port), family=family, backlog=128)
    except OSError as exc:
        raise errors.ControllerError(f"--metrics-addr {address}: cannot listen ({exc})") from exc


def _shown(address: Address | None) -> str:
    return str(address) if address is not None else "off"
