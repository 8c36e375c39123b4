"""Placement of a run's tasks on hosts: groups of the DAG, least loaded live host, waiting."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from controller.core.workflows import placement
from controller.core.workflows.model import TaskSpec
from controller.core.workflows.placement import Hosts, Placed


def task(name: str, *needs: str) -> TaskSpec:
    return TaskSpec(name=name, model="m", command=("true",), depends_on=needs)


def hosts(*allowed: str, live: tuple[str, ...] | None = None, **load: int) -> Hosts:
    up = allowed if live is None else live
    return Hosts(allowed, frozenset(h.lower() for h in up), load)


DIAMOND = (task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c"))
TWO_CHAINS = (task("x"), task("y", "x"), task("p"), task("q", "p"))


def test_tasks_linked_by_dependencies_either_way_form_one_group() -> None:
    grouping = placement.groups((*DIAMOND, *TWO_CHAINS, task("lone")))
    assert grouping["d"] == ("a", "b", "c", "d")
    assert grouping["b"] == grouping["c"] == grouping["a"]
    assert grouping["x"] == ("x", "y")
    assert grouping["q"] == ("p", "q")
    assert grouping["lone"] == ("lone",)


def test_two_roots_joined_later_are_one_group() -> None:
    grouping = placement.groups((task("r1"), task("r2"), task("join", "r1", "r2")))
    assert grouping["r1"] == grouping["r2"] == ("r1", "r2", "join")


def test_independent_groups_spread_over_the_hosts() -> None:
    grouping = placement.groups(TWO_CHAINS)
    found = placement.place(["x", "p"], grouping, {}, hosts("alpha", "beta"))
    assert found == {"x": Placed("alpha"), "p": Placed("beta")}


def test_a_new_group_goes_to_the_least_loaded_host_first_declared_on_a_tie() -> None:
    grouping = placement.groups(TWO_CHAINS)
    busy = hosts("alpha", "beta", "gamma", alpha=2, beta=1, gamma=1)
    assert placement.place(["x"], grouping, {}, busy)["x"] == Placed("beta")


def test_a_group_follows_the_host_its_first_task_ran_on() -> None:
    grouping = placement.groups(DIAMOND)
    recorded = {"a": "beta", "b": "beta"}
    found = placement.place(["c"], grouping, recorded, hosts("alpha", "beta", beta=5))
    assert found["c"] == Placed("beta")  # its merge needs a's commits, which beta has


def test_tasks_of_one_group_ready_together_share_a_host() -> None:
    grouping = placement.groups((task("r1"), task("r2"), task("join", "r1", "r2")))
    found = placement.place(["r1", "r2"], grouping, {}, hosts("alpha", "beta"))
    assert found["r1"] == found["r2"] == Placed("alpha")


def test_a_group_whose_host_is_lost_waits_for_it() -> None:
    grouping = placement.groups(DIAMOND)
    found = placement.place(["b"], grouping, {"a": "beta"}, hosts("alpha", "beta", live=("alpha",)))
    assert found["b"].host is None
    assert "waits for host beta" in found["b"].why


def test_only_live_allowed_hosts_are_chosen() -> None:
    grouping = placement.groups(TWO_CHAINS)
    found = placement.place(["x"], grouping, {}, hosts("alpha", "beta", live=("beta", "gamma")))
    assert found["x"] == Placed("beta")
    nowhere = placement.place(["x"], grouping, {}, hosts("alpha", live=("beta",)))
    assert nowhere["x"].host is None
    assert "no live host may run it (allowed: alpha)" in nowhere["x"].why


def test_host_names_compare_in_lower_case() -> None:
    grouping = placement.groups(DIAMOND)
    found = placement.place(["b"], grouping, {"a": "Beta"}, hosts("alpha", "beta"))
    assert found["b"] == Placed("Beta")


@given(
    st.lists(st.sampled_from(["x", "p", "lone1", "lone2"]), unique=True),
    st.dictionaries(st.sampled_from(["alpha", "beta", "gamma"]), st.integers(0, 5)),
)
def test_placement_is_deterministic_and_never_splits_a_group(
    ready: list[str], load: dict[str, int]
) -> None:
    specs = (*TWO_CHAINS, task("lone1"), task("lone2"))
    grouping = placement.groups(specs)
    pool = Hosts(("alpha", "beta", "gamma"), frozenset({"alpha", "beta", "gamma"}), load)
    first = placement.place(ready, grouping, {}, pool)
    assert first == placement.place(ready, grouping, {}, pool)
    for name, placed in first.items():
        assert placed.host in ("alpha", "beta", "gamma")
        for other in grouping[name]:
            if other in first:
                assert first[other].host == placed.host
