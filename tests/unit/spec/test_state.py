from __future__ import annotations

import pytest

from controller.spec.lane import Lane
from controller.spec.meta import Metadata
from controller.spec.state import KINDS, DesiredState
from controller.spec.workspace import Workspace, owned_lane_names
from tests.unit.spec.factories import doc, state

LANES = (
    "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: api, labels: {team: core}}\n",
    "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: web, labels: {team: front}}\n",
    "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: docs}\n",
)
HOSTS = doc(
    "Workspace",
    "ws",
    "hosts:\n- {name: build-1, lanes: [docs], matchLabels: {team: core}}\n"
    "- {name: build-2, matchLabels: {team: front}}\n- {name: idle}",
)


def test_empty_state() -> None:
    empty = DesiredState.empty()
    assert empty.workspace.name == "default"
    assert empty.workspace.spec.worktree_root == ".lanes/worktrees"
    assert (empty.lanes, empty.bindings, empty.threads, empty.policies) == ({}, {}, {}, {})
    assert (empty.workflows, empty.catalogs, empty.locations) == ({}, {}, {})
    assert empty.managed_participants() == {}


def test_kinds_table_names_every_kind() -> None:
    assert sorted(KINDS) == [
        "Binding",
        "Lane",
        "ModelCatalog",
        "Thread",
        "TriggerPolicy",
        "Workflow",
        "WorkflowRun",
        "Workspace",
    ]
    assert all(model.model_fields["kind"].default == kind for kind, model in KINDS.items())


def test_build_refuses_repeats_because_loading_reports_them() -> None:
    lane = Lane(metadata=Metadata(name="a"))
    with pytest.raises(ValueError, match="repeat"):
        DesiredState.build([lane, lane])
    workspaces = [Workspace(metadata=Metadata(name=n)) for n in ("a", "b")]
    with pytest.raises(ValueError, match="more than one Workspace"):
        DesiredState.build(workspaces)


def test_managed_participants_and_shared_lanes() -> None:
    desired = state(
        doc("Lane", "l"),
        doc("Lane", "m"),
        doc("Binding", "z", "lane: l\nparticipant: claude-1\ncommand: [claude]"),
        doc("Binding", "y", "lane: l\nparticipant: codex-1\ncommand: [codex]"),
        doc("Binding", "x", "lane: m\nparticipant: aider\ncommand: [aider]"),
    )
    managed = desired.managed_participants()
    assert list(managed) == ["aider", "claude-1", "codex-1"]
    assert managed["claude-1"].name == "z"
    assert [b.name for b in desired.bindings_of("l")] == ["y", "z"]
    assert desired.bindings_of("nope") == ()


def test_a_participant_s_binding_is_the_same_wherever_it_is_looked_up() -> None:
    desired = state(
        doc("Lane", "l"),
        doc("Binding", "b", "lane: l\nparticipant: claude-1\ncommand: [claude]"),
        doc("Binding", "a", "lane: l\nparticipant: codex-1\ncommand: [codex]"),
    )
    for name, binding in desired.managed_participants().items():
        assert desired.binding_of(name) is binding
    assert desired.binding_of("nobody") is None


def test_models_across_catalogs() -> None:
    desired = state(
        doc(
            "ModelCatalog",
            "b",
            "models: [{name: opus, contextWindow: 200000, inputPerMTok: 15, outputPerMTok: 75}]",
        ),
        doc(
            "ModelCatalog",
            "a",
            "models: [{name: sonnet, contextWindow: 200000, inputPerMTok: 3, outputPerMTok: 15}]",
        ),
    )
    models = desired.models()
    assert list(models) == ["opus", "sonnet"]
    assert (models["sonnet"].input_per_m_tok, models["opus"].output_per_m_tok) == (3.0, 75.0)


@pytest.mark.parametrize(
    ("hostname", "owned"),
    [
        ("build-1", {"api", "docs"}),
        ("BUILD-1", {"api", "docs"}),
        ("build-2", {"web"}),
        ("idle", set()),
        ("elsewhere", set()),
    ],
)
def test_owned_lane_names_with_hosts(hostname: str, owned: set[str]) -> None:
    assert owned_lane_names(state(*LANES, HOSTS), hostname) == owned


def test_without_hosts_this_host_owns_every_lane() -> None:
    assert owned_lane_names(state(*LANES), "anything") == {"api", "web", "docs"}
    assert owned_lane_names(DesiredState.empty(), "anything") == frozenset()


def test_states_compare_by_value() -> None:
    assert state(*LANES) == state(*LANES)
    assert state(*LANES) != state(*LANES[:2])
