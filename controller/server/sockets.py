"""The daemon's unix socket: born 0600 in ``.lanes/``, a stale one replaced, removed on exit.

The socket's file mode is its access control (only the owner may connect), so it is never
reachable under its name with a wider mode: it is bound under a temporary name with a umask
that leaves 0600, then renamed into place. A socket left by a killed daemon refuses
connections and is replaced; one that answers belongs to a running daemon and is kept.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from controller import errors

SOCKET_NAME = "controller.sock"
_SUN_PATH = 100  # sun_path holds 108 bytes; longer paths go through the folder's descriptor
_PROBE_TIMEOUT = 2.0


class SocketInUse(errors.ControllerError):
    """The socket's path is taken: another daemon answers there, or it is not a socket."""


@dataclass(frozen=True, slots=True)
class Bound:
    """A listening unix socket and the file it was bound to."""

    sock: socket.socket
    path: Path
    inode: int
    replaced_stale: bool


def bind(path: Path) -> Bound:
    """Listen on ``path`` (mode 0600), replacing a stale socket; refuse a live or foreign one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    stale = _stale(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _bind_private(sock, temporary)
        temporary.replace(path)
        sock.listen(128)
    except BaseException:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    return Bound(sock, path, path.lstat().st_ino, stale)


def remove(bound: Bound) -> None:
    """Close the socket and remove its file, unless another daemon's socket took its place."""
    bound.sock.close()
    with contextlib.suppress(FileNotFoundError):
        if bound.path.lstat().st_ino == bound.inode:
            bound.path.unlink()


def answers(path: Path) -> bool:
    """Whether a daemon accepts connections on ``path`` (False for a stale or missing one)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(_PROBE_TIMEOUT)
    try:
        with address(path) as where:
            probe.connect(where)
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        raise
    finally:
        probe.close()
    return True


@contextlib.contextmanager
def address(path: Path) -> Iterator[str]:
    """An address for ``path`` that fits ``sun_path``: the path itself, or, when it is too
    long, the same file reached through ``/proc/self/fd`` and a descriptor of its folder."""
    if len(os.fsencode(path)) <= _SUN_PATH:
        yield str(path)
        return
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


def _stale(path: Path) -> bool:
    """Whether ``path`` holds a killed daemon's socket (to replace); refuse anything else."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(mode):
        raise SocketInUse(f"{path} exists and is not a socket; move it away and start again")
    if answers(path):
        raise SocketInUse(
            f"another controller daemon serves {path}; stop it first (one daemon per workspace)"
        )
    return True


def _bind_private(sock: socket.socket, path: Path) -> None:
    # The umask is the process's: this runs once at start-up, before any pass spawns a child.
    previous = os.umask(0o177)
    try:
        with address(path) as where:
            sock.bind(where)
    finally:
        os.umask(previous)
    path.chmod(0o600)
