"""The bearer token that opens the TCP listener's writing routes (``--api-token-file``).

The token is read once at start-up from a file only its owner may read; it is compared in
constant time and never logged. Without a token the TCP listener is read-only; with one, a
request for any route but the read-only ones (``READ_ONLY``) needs ``Authorization: Bearer
<token>`` and gets 401 otherwise.
"""

from __future__ import annotations

import hmac
import os
import stat
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from controller import errors

READ_ONLY = frozenset({"/", "/healthz", "/readyz", "/metrics", "/v1/status"})
"""Routes the TCP listener serves to anyone (they show no message text and change nothing)."""
MIN_LENGTH = 16


def read(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace stripped); refuse a file that others may
    read, that is not a regular file, or whose token is shorter than ``MIN_LENGTH``."""
    where = f"--api-token-file {path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise errors.ControllerError(f"{where}: cannot open it ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise errors.ControllerError(f"{where}: not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise errors.ControllerError(
                f"{where}: mode {mode:04o} lets other users read the token; "
                f"run `chmod 600 {path}` and start again"
            )
        raw = f.read(4096)
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise errors.ControllerError(f"{where}: the token must be ASCII text") from None
    if len(token) < MIN_LENGTH or any(c.isspace() for c in token):
        raise errors.ControllerError(
            f"{where}: the token must be one word of at least {MIN_LENGTH} characters "
            "(e.g. the output of `openssl rand -hex 32`)"
        )
    return token


class Bearer:
    """ASGI middleware: routes outside ``READ_ONLY`` need ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in READ_ONLY or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        refused = JSONResponse(
            {"error": "this route needs Authorization: Bearer <token> (--api-token-file)"},
            401,
            headers={"WWW-Authenticate": 'Bearer realm="controller"'},
        )
        await refused(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = bytes(value).partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    given.strip(), self._token
                )
        return False
