"""The wake prompt: rendered from the policy's template, text only, one line, bounded.

Message bodies are never typed into a terminal; only the four placeholders are filled, each
sanitised. Escape sequences (CSI, OSC, DCS, ...) and control characters are removed (or, with
``controlChars: reject``, the payload is refused), bidirectional overrides too, and the result
is cut to ``maxBytes`` on a character boundary. Newlines become spaces: Enter is sent
separately, so a payload can never submit early or inject keystrokes.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

from controller.core.safeguards import decisions
from controller.core.safeguards.decisions import Decision, Reason

_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL or ST
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC ... ST
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_WHITE = re.compile(r"[\t\n\r\v\f]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def sanitize(text: str) -> str:
    """Text without escape sequences or control characters, on one line."""
    return _CONTROL.sub("", _WHITE.sub(" ", _ESCAPES.sub("", text)))


def truncate(text: str, max_bytes: int) -> str:
    """At most ``max_bytes`` of UTF-8, never splitting a character."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", errors="ignore")


def fill(template: str, values: Mapping[str, str]) -> str:
    """Substitute ``{name}`` fields by value only (format specs and conversions are ignored)."""
    out = []
    for literal, field, _spec, _conversion in string.Formatter().parse(template):
        out.append(literal)
        if field is not None:
            out.append(values.get(field, ""))
    return "".join(out)


def render(
    template: str,
    *,
    participant: str,
    thread: str,
    unread: int,
    sender: str,
    max_bytes: int,
    control_chars: str = "strip",
) -> str | Decision:
    """The prompt to type, or a block decision when it must not be sent."""
    values = {
        "participant": participant,
        "thread": thread,
        "unread": str(unread),
        "sender": sender,
    }
    raw = fill(template, values)
    clean = sanitize(raw)
    if control_chars == "reject" and clean != raw:
        return decisions.block(Reason.PAYLOAD_REJECTED, "the prompt contains control characters")
    clean = truncate(clean.strip(), max_bytes)
    if not clean:
        return decisions.block(Reason.PAYLOAD_REJECTED, "the prompt is empty after sanitising")
    return clean
