"""The web status page at ``/`` of the TCP listener, loaded in a real headless Chromium."""

from __future__ import annotations

import contextlib
import html
import http.client
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from controller.server import page
from tests.conftest import Repo, need, reap, wait_until
from tests.integration.test_server import daemon, free_port, marker, status, worker

pytestmark = pytest.mark.integration

__all__ = ["marker"]  # a fixture of test_server, used here

CHROMIUM_TIMEOUT = 120  # seconds; a cold start on a busy 2-core machine is slow


def dump_dom(url: str, tmp_path: Path) -> tuple[str, Path]:
    """The DOM headless Chromium builds for ``url``, and its net log; every process reaped."""
    profile, net_log = tmp_path / "chromium-profile", tmp_path / "net-log.json"
    argv = [
        "chromium",
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--log-net-log={net_log}",
        "--dump-dom",
        url,
    ]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=CHROMIUM_TIMEOUT)
    finally:
        with_group_killed(proc)
        reap(str(profile))
    assert proc.returncode == 0
    return out.decode(), net_log


def with_group_killed(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def requested_by_page(net_log: Path, origin: str) -> list[str]:
    """The URLs of the requests the net log shows for the page: its navigation and anything
    the page itself started (initiated by its origin, or for its site).

    Chromium fetches things of its own (time, dictionaries, accounts) with no initiator and
    another site: those are the browser's, not the page's, and are left out.
    """
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    site = origin.rsplit(":", 1)[0]
    found = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] != start or "url" not in params:
            continue
        by_page = params.get("initiator") == origin
        if by_page or f"site={site};" in str(params.get("site_for_cookies")):
            found.append(params["url"])
    return found


def test_the_page_shows_every_lane_and_agent_and_loads_nothing_else(
    repo: Repo, marker: str, tmp_path: Path
) -> None:
    need("chromium")
    worker(repo, marker)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with daemon(repo, "--metrics-addr", f"127.0.0.1:{port}", log=tmp_path / "daemon.log"):
        wait_until(lambda: [a["state"] for a in status(repo)["lanes"][0]["agents"]] == ["running"])
        tcp = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        tcp.request("GET", "/?refresh=0")
        answer = tcp.getresponse()
        body = answer.read().decode()
        tcp.close()
        assert answer.status == 200
        assert answer.getheader("Content-Security-Policy") == page.CSP
        assert answer.getheader("Content-Type", "").startswith("text/html")
        assert not re.search(r"(src|href)\s*=\s*[\"']?https?://", body)
        assert not re.search(r"<(script|form|link|img|iframe)\b", body)

        dom, net_log = dump_dom(url, tmp_path)
        view = status(repo)
    lanes = re.findall(r'<tr class="lane"><td>([^<]*)</td><td>([^<]*)</td>', dom)
    assert sorted(lanes) == sorted((html.escape(x["name"]), x["phase"]) for x in view["lanes"])
    agents = re.findall(
        r'<tr class="agent"><td>([^<]*)</td><td>([^<]*)</td><td>[^<]*</td><td>([^<]*)</td>', dom
    )
    wanted = [(x["name"], a["participant"], a["state"]) for x in view["lanes"] for a in x["agents"]]
    assert sorted(agents) == sorted(wanted) and wanted
    assert requested_by_page(net_log, url.rstrip("/")) == [url]
