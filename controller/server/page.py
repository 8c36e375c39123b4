"""The read-only web status page served at ``/`` (DESIGN §11): one HTML string, no script.

Drawn from the object ``controller status --output json`` prints, like every other view, with
what needs attention (``core.attention``) on top. Pure: a view in, a page out. Every value is
HTML-escaped; only named fields are shown (never env values or message text), and the page
loads nothing else (inline CSS; the route sends a CSP that forbids everything but it).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from controller.core import attention

CSP = "default-src 'none'; style-src 'unsafe-inline'"
"""The Content-Security-Policy the page is served with: nothing may load, no script runs."""

REFRESH = 5  # seconds between the page's own reloads

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border-bottom:1px solid #ddd;padding:.25em .75em;text-align:left;vertical-align:top}
th{background:#f4f4f4}
.sev0{color:#a00;font-weight:bold}.sev1{color:#b50}.sev2{color:#850}.sev3{color:#555}
.muted{color:#777}
"""


def render(view: Mapping[str, Any], *, refresh: int = REFRESH) -> str:
    """The page for ``view`` (a ``status --output json`` object); reloads every ``refresh`` s."""
    head = [
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>lanes: {_e(view.get('workspace', ''))}</title>",
        f"<style>{_STYLE}</style>",
    ]
    if refresh:
        head.insert(1, f'<meta http-equiv="refresh" content="{int(refresh)}">')
    body = [*_header(view), *_attention(view), *_lanes(view), *_agents(view)]
    body += [*_participants(view), *_queue(view), *_runs(view), *_notes(view)]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head>'
        + "".join(head)
        + "</head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _table(name: str, columns: Sequence[str], rows: Iterable[Sequence[object]], *, cls: str) -> str:
    """A table whose rows carry ``cls`` (tests and people find the lanes and agents by it)."""
    header = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        f'<tr class="{cls}">' + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows
    )
    return f'<table id="{name}"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'


def _header(view: Mapping[str, Any]) -> list[str]:
    lines = [f"<h1>workspace {_e(view.get('workspace'))}</h1>"]
    lines.append(f'<p class="muted">repo {_e(view.get("repo"))}</p>')
    desired = view.get("desired") or {}
    if desired.get("ref"):
        at = f"{desired['ref']} ({str(desired.get('commit'))[:12]})"
        lines.append(f"<p>desired {_e(desired.get('folder'))} as committed at {_e(at)}</p>")
    if not view.get("desiredValid", True):
        lines.append('<p class="sev0">desired state is invalid; showing the inventory only</p>')
    return lines


def _attention(view: Mapping[str, Any]) -> list[str]:
    found = attention.concerns(view)
    if not found:
        return ['<h2>Attention</h2><p id="attention">nothing needs attention</p>']
    items = "".join(_concern(c) for c in found)
    return [f'<h2>Attention</h2><ul id="attention">{items}</ul>']


def _concern(c: attention.Concern) -> str:
    what = f"<strong>{_e(c.kind)}</strong> {_e(c.subject)}: {_e(c.message)}"
    return f'<li class="sev{int(c.severity)}">{what}</li>'


def _lanes(view: Mapping[str, Any]) -> list[str]:
    lanes = view.get("lanes", ())
    if not lanes:
        return ["<h2>Lanes</h2><p>no lanes</p>"]
    rows = [_lane_row(lane) for lane in lanes]
    columns = ("lane", "phase", "branch", "worktree", "sync", "conditions")
    return ["<h2>Lanes</h2>", _table("lanes", columns, rows, cls="lane")]


def _lane_row(lane: Mapping[str, Any]) -> tuple[object, ...]:
    pending = "; ".join(lane.get("pendingActions", ()))
    sync = "in sync" if lane.get("inSync") else pending or "see conditions"
    conditions = "; ".join(
        f"{c['type']} ({c['reason']}): {c['message']}" for c in lane.get("conditions", ())
    )
    branch = lane.get("branch") or "-"
    return (lane["name"], lane.get("phase"), branch, lane.get("worktree"), sync, conditions or "-")


def _agents(view: Mapping[str, Any]) -> list[str]:
    rows = [_agent_row(lane["name"], a) for lane in view.get("lanes", ()) for a in lane["agents"]]
    if not rows:
        return ["<h2>Agents</h2><p>no agents</p>"]
    columns = ("lane", "participant", "runtime", "state", "pid", "restarts", "last exit")
    return [
        "<h2>Agents</h2>",
        _table("agents", (*columns, "heartbeat", "blocked"), rows, cls="agent"),
    ]


def _agent_row(lane: str, a: Mapping[str, Any]) -> tuple[object, ...]:
    age = a.get("heartbeatAge")
    beat = "-" if age is None else f"{int(age)}s ago"
    last = "-" if a.get("lastExit") is None else a["lastExit"]
    return (
        lane,
        a.get("participant"),
        a.get("runtime"),
        a.get("state"),
        a.get("pid") or "-",
        a.get("restarts", 0),
        last,
        beat,
        a.get("blocked") or "-",
    )


def _participants(view: Mapping[str, Any]) -> list[str]:
    people = view.get("participants", ())
    if not people:
        return []
    rows = [
        (
            p["name"],
            "yes" if p.get("managed") else "no",
            ", ".join(f"{t} {n}" for t, n in sorted(p.get("unread", {}).items())) or "-",
            (p.get("reason") or "yes") if p.get("blocked") else "-",
        )
        for p in people
    ]
    columns = ("participant", "managed", "unread", "blocked")
    return ["<h2>Participants</h2>", _table("participants", columns, rows, cls="participant")]


def _queue(view: Mapping[str, Any]) -> list[str]:
    counts = view.get("triggers") or {}
    if not counts:
        return []
    text = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return [f'<h2>Trigger jobs</h2><p id="queue">{_e(text)}</p>']


def _runs(view: Mapping[str, Any]) -> list[str]:
    runs = view.get("runs", ())
    if not runs:
        return []
    rows = [
        (
            r["name"],
            r.get("workflow"),
            r.get("phase"),
            ", ".join(f"{n} {phase}" for phase, n in r.get("tasks", {}).items() if n),
        )
        for r in runs
    ]
    return ["<h2>Runs</h2>", _table("runs", ("run", "workflow", "phase", "tasks"), rows, cls="run")]


def _notes(view: Mapping[str, Any]) -> list[str]:
    notes = [*view.get("notices", ()), *view.get("problems", ())]
    if not notes:
        return []
    items = "".join(f"<li>{_e(n)}</li>" for n in notes)
    return [f'<h2>Notes</h2><ul id="notes">{items}</ul>']
