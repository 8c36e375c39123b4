"""The notification payload of a post: names and a number, read back by the listener."""

from __future__ import annotations

import json

import pytest

from controller.runtime import listening
from controller.store import notifications


def test_the_payload_names_the_workspace_thread_and_seq_only() -> None:
    payload = notifications.encode("shop", "review", 7)
    assert json.loads(payload) == {"workspace": "shop", "thread": "review", "seq": 7}
    assert notifications.workspace_of(payload) == "shop"
    assert len(notifications.encode("w" * 63, "t" * 63, 2**63).encode()) < 8000


@pytest.mark.parametrize(
    "payload", ["", "shop", "[1]", '{"workspace": 3}', '{"thread": "t"}', "{not json"]
)
def test_a_payload_it_did_not_write_names_no_workspace(payload: str) -> None:
    assert notifications.workspace_of(payload) is None


@pytest.mark.parametrize(
    ("url", "postgres"),
    [
        ("postgresql://u@db/lanes", True),
        ("postgresql+psycopg://u@db/lanes", True),
        ("postgres://u@db/lanes", True),
        ("sqlite:////tmp/state.db", False),
        ("sqlite:///.lanes/state.db", False),
    ],
)
def test_is_postgres(url: str, postgres: bool) -> None:
    assert notifications.is_postgres(url) is postgres


@pytest.mark.parametrize(
    ("failures", "seconds"), [(0, 0.5), (1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (60, 30.0)]
)
def test_reconnecting_backs_off_doubling_to_a_cap(failures: int, seconds: float) -> None:
    assert listening.backoff(failures) == seconds
