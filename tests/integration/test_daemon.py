"""The daemon between edits: a resync reuses the desired state and paths it has.

Parsing and validating desired/ was most of an idle daemon's work, and resolving the paths ran
git in the event loop before every pass; both now happen when desired state changes only.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from controller.runtime import daemon, sources
from controller.spec.state import DesiredState
from tests.conftest import Repo


@pytest.mark.anyio
async def test_resyncs_parse_desired_state_and_resolve_paths_once(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.lanes("a", "b")
    monkeypatch.chdir(repo.path)
    settings = daemon.Settings(desired=repo.desired, resync=0.01, debounce=0.01, max_passes=4)
    seen: list[tuple[object, object]] = []

    def log(event: str, **_: Any) -> None:
        if event == "pass" and d.reconciler is not None:
            seen.append((d.desired, d.reconciler.wiring.paths))

    d = daemon.Daemon(settings, log)
    assert await d.run() == 0
    assert len(seen) == 4
    assert all(desired is seen[0][0] for desired, _ in seen)  # not parsed again
    assert all(paths is seen[0][1] for _, paths in seen)  # not resolved again
    assert d.cache.parsed == 1
    assert repo.worktrees() == [str(repo.root / "a"), str(repo.root / "b")]


def test_the_cache_reads_again_what_changed_or_was_reported(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo.path)
    repo.lanes("a")
    cache = sources.Cache()
    first = sources.load(repo.desired, cache=cache)
    assert sources.load(repo.desired, cache=cache) is first
    assert cache.parsed == 1
    # The same size, and the old modification time put back: the change time still moves.
    lanes = repo.desired / "lanes.yaml"
    before = lanes.stat()
    lanes.write_text(lanes.read_text().replace("name: a", "name: b"))
    os.utime(lanes, ns=(before.st_atime_ns, before.st_mtime_ns))
    second = sources.load(repo.desired, cache=cache)
    assert second is not first
    assert isinstance(second.result, DesiredState)
    assert list(second.result.lanes) == ["b"]
    repo.write("more.yaml", "")  # a new file, even an empty one
    assert sources.load(repo.desired, cache=cache) is not second
    assert cache.parsed == 3
    # A file event reads every file again, whatever their times say.
    third = sources.load(repo.desired, cache=cache)
    assert sources.load(repo.desired, cache=cache, fresh=True) is not third
    assert cache.parsed == 4


def test_a_desired_ref_is_parsed_again_only_when_it_moves(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo.path)
    repo.lanes("a")
    repo.git("add", "desired")
    repo.git("commit", "-q", "-m", "one lane")
    cache = sources.Cache()
    first = sources.load(repo.desired, ref="HEAD", cache=cache)
    assert sources.load(repo.desired, ref="HEAD", cache=cache) is first
    repo.lanes("a", "b")
    repo.git("commit", "-q", "-am", "two lanes")
    moved = sources.load(repo.desired, ref="HEAD", cache=cache)
    assert isinstance(moved.result, DesiredState)
    assert list(moved.result.lanes) == ["a", "b"]
    assert cache.parsed == 2
