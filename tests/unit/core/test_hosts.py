"""Ownership across hosts (core.hosts): pure, so plain values in and out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.core import hosts, world
from controller.core.phases import Phase
from controller.spec.state import DesiredState
from tests import factories as f

NOW = datetime(2026, 12, 2, 20, 0, tzinfo=UTC)
HOSTS = ({"name": "alpha", "lanes": ("a",)}, {"name": "Beta", "matchLabels": {"team": "b"}})


def _state() -> DesiredState:
    b = f.lane("b")
    b = b.model_copy(update={"metadata": b.metadata.model_copy(update={"labels": {"team": "b"}})})
    return f.desired("a", b, "c", stateUrl="postgresql://x/y", hosts=HOSTS)


def _record(name: str, host: str | None) -> world.LaneRecord:
    return world.LaneRecord(name, Phase.READY, f"/r/{name}", f"lane/{name}", host=host)


def _lease(name: str, *, expires_in: float, released: bool = False) -> world.Lease:
    return world.Lease(
        name=name,
        pid=42,
        machine="m",
        instance="i",
        version="v",
        started_at=NOW - timedelta(hours=1),
        renewed_at=NOW - timedelta(seconds=5),
        expires_at=NOW + timedelta(seconds=expires_in),
        released=released,
    )


def test_without_hosts_this_host_owns_everything() -> None:
    desired = f.desired("a", "b")
    mine = hosts.hosting(desired, "anything")
    assert not mine.enabled and mine.owns("a") and mine.mine("b", "elsewhere")
    assert hosts.restrict(desired, mine) is desired
    assert hosts.conditions(mine, {}, None) == {}
    assert hosts.views(mine, None, {}) == []


def test_each_host_gets_its_lanes_by_name_or_label_case_insensitively() -> None:
    desired = _state()
    assert set(hosts.restrict(desired, hosts.hosting(desired, "ALPHA")).lanes) == {"a"}
    assert set(hosts.restrict(desired, hosts.hosting(desired, "beta")).lanes) == {"b"}
    assert hosts.restrict(desired, hosts.hosting(desired, "gamma")).lanes == {}


def test_records_split_by_host_and_legacy_rows_go_to_the_lanes_owner() -> None:
    mine = hosts.hosting(_state(), "alpha")
    records = {
        "a": _record("a", None),  # written before hosts: alpha owns a
        "b": _record("b", None),  # beta's lane
        "x": _record("x", "alpha"),  # ours, no longer declared: ours to remove
        "y": _record("y", "beta"),
    }
    ours, theirs = hosts.split(mine, records)
    assert set(ours) == {"a", "x"} and set(theirs) == {"b", "y"}


def test_unscheduled_and_lost_hosts_are_conditions_and_live_or_stopped_ones_are_not() -> None:
    mine = hosts.hosting(_state(), "alpha")
    foreign = {"b": _record("b", "beta")}
    lost = world.Leases(NOW, (_lease("beta", expires_in=-1),))
    found = hosts.conditions(mine, foreign, lost)
    assert [c.type for c in found["c"]] == ["Unscheduled"]
    assert [(c.type, c.reason) for c in found["b"]] == [("HostLost", "LeaseExpired")]
    assert "a" not in found
    live = world.Leases(NOW, (_lease("beta", expires_in=10),))
    assert "b" not in hosts.conditions(mine, foreign, live)
    stopped = world.Leases(NOW, (_lease("beta", expires_in=-1, released=True),))
    assert "b" not in hosts.conditions(mine, foreign, stopped)
    never = hosts.conditions(mine, foreign, world.Leases(NOW))
    assert [c.reason for c in never["b"]] == ["NeverSeen"]


def test_a_lane_moving_here_waits_for_the_old_host() -> None:
    mine = hosts.hosting(_state(), "alpha")
    foreign = {"a": _record("a", "beta")}  # a is alpha's now, beta still holds it
    desired = hosts.restrict(_state(), mine, foreign)
    assert desired.lanes == {}
    live = world.Leases(NOW, (_lease("beta", expires_in=10),))
    assert [c.type for c in hosts.conditions(mine, foreign, live)["a"]] == ["OnAnotherHost"]


def test_views_list_hosts_with_state_and_lanes() -> None:
    mine = hosts.hosting(_state(), "alpha")
    leases = world.Leases(NOW, (_lease("alpha", expires_in=10), _lease("beta", expires_in=-3)))
    views = hosts.views(mine, leases, {"b": _record("b", "beta")})
    assert [(v["name"], v["state"], v["lanes"]) for v in views] == [
        ("alpha", "live", ["a"]),
        ("Beta", "lost", ["b"]),
    ]
    assert views[0]["leaseExpiresAt"] == (NOW + timedelta(seconds=10)).isoformat()
    unseen = hosts.views(mine, world.Leases(NOW), {})
    assert [v["state"] for v in unseen] == ["unknown", "unknown"]
