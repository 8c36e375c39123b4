from __future__ import annotations

import pytest

from controller.spec import references
from controller.spec.lane import Lane, LaneSpec
from controller.spec.loading import Problem
from controller.spec.meta import Metadata
from controller.spec.state import DesiredState
from tests.unit.spec.factories import PATH, doc, docs, problems, state

LANE = doc("Lane", "l")  # lines 1-3
CATALOG = doc(
    "ModelCatalog", "c", "models: [{name: m, contextWindow: 9, inputPerMTok: 1, outputPerMTok: 2}]"
)


def binding(name: str, lane: str = "l", participant: str = "p") -> str:
    return doc("Binding", name, f"lane: {lane}\nparticipant: {participant}\ncommand: [x]")


def at(line: int, message: str) -> str:
    return f"{PATH}:{line}: {message}"


REFERENCES = [
    (
        [LANE, binding("b", lane="nope")],
        [at(9, "binding 'b' names lane 'nope', which is not declared; declared lanes: l")],
    ),
    (
        [binding("b", lane="l")],
        [at(5, "binding 'b' names lane 'l', which is not declared; no lanes are declared")],
    ),
    (
        [LANE, binding("b1"), binding("b2")],
        [
            at(
                18,
                "participant 'p' is bound by bindings 'b1' and 'b2'; a participant runs in "
                "exactly one binding",
            )
        ],
    ),
    (
        [doc("Lane", "a", "branch: main"), doc("Lane", "b", "branch: main")],
        [at(11, "lane 'b' uses branch 'main', already used by lane 'a'")],
    ),
    (
        [doc("Lane", "a", "branch: lane/b"), doc("Lane", "b")],
        [at(7, "lane 'b' uses branch 'lane/b', already used by lane 'a'")],
    ),
    (
        [doc("Lane", "a", "branch: feature"), doc("Lane", "b", "branch: feature/b/c")],
        [
            at(
                11,
                "lane 'b' uses branch 'feature/b/c', which git cannot create next to branch "
                "'feature' of lane 'a'",
            )
        ],
    ),
    (
        [LANE, binding("b"), doc("TriggerPolicy", "tp", "threads: [review]")],
        [
            at(
                17,
                "trigger policy 'tp' names thread 'review', which is not declared; no threads are "
                "declared",
            )
        ],
    ),
    (
        [
            doc("Thread", "t", "participants: [human]"),
            doc("TriggerPolicy", "tp", "participants:\n- human\n- ghost"),
        ],
        [
            at(
                13,
                "trigger policy 'tp' names participant 'ghost', which is neither bound by a "
                "Binding nor a member of any Thread",
            )
        ],
    ),
    (
        [
            CATALOG,
            doc(
                "Workflow",
                "w",
                "tasks:\n- name: a\n  model: m\n  command: [x]\n  dependsOn: [a, zz]",
            ),
        ],
        [
            at(15, "workflow 'w' has a dependency cycle: a -> a"),
            at(
                15,
                "workflow 'w': task 'a' depends on 'zz', which is not a task of this workflow; "
                "declared tasks: a",
            ),
        ],
    ),
    (
        [
            CATALOG,
            doc(
                "Workflow",
                "w",
                "tasks:\n- {name: c, model: m, command: [x], dependsOn: [a]}\n"
                "- {name: b, model: m, command: [x], dependsOn: [c]}\n"
                "- {name: a, model: m, command: [x], dependsOn: [b]}\n"
                "- {name: d, model: m, command: [x], dependsOn: [a]}",
            ),
        ],
        [at(14, "workflow 'w' has a dependency cycle: a -> b -> c -> a")],
    ),
    (
        [doc("Workflow", "w", "tasks:\n- name: a\n  model: opus\n  command: [x]")],
        [
            at(
                7,
                "workflow 'w': task 'a' uses model 'opus', which no ModelCatalog declares; no "
                "models are declared",
            )
        ],
    ),
    (
        [CATALOG, doc("Workflow", "w", "tasks:\n- name: a\n  model: opus\n  command: [x]")],
        [
            at(
                13,
                "workflow 'w': task 'a' uses model 'opus', which no ModelCatalog declares; "
                "declared models: m",
            )
        ],
    ),
    (
        [
            CATALOG,
            doc(
                "ModelCatalog",
                "d",
                "models:\n- {name: m, contextWindow: 9, inputPerMTok: 1, outputPerMTok: 2}",
            ),
        ],
        [at(12, "model 'm' is declared by catalogs 'c' and 'd'; declare it once")],
    ),
    (
        [
            CATALOG,
            doc("Workspace", "ws", "hosts:\n- name: h1"),
            doc(
                "Workflow",
                "w",
                "hosts: [H1, h9]\ntasks:\n- name: a\n  model: m\n  command: [x]",
            ),
        ],
        [
            at(
                18,
                "workflow 'w' allows host 'h9', which the Workspace does not declare; "
                "declared hosts: h1",
            )
        ],
    ),
    (
        [LANE, doc("Workspace", "w", "hosts:\n- name: h1\n  lanes: [l, gone]")],
        [at(11, "workspace host 'h1' names lane 'gone', which is not declared; declared lanes: l")],
    ),
    (
        [
            "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: l, labels: {team: a}}\n",
            doc(
                "Workspace",
                "w",
                "hosts:\n- {name: h1, lanes: [l]}\n- {name: h2, matchLabels: {team: a}}",
            ),
        ],
        [at(9, "lane 'l' is owned by hosts 'h1', 'h2'; a lane needs exactly one owner")],
    ),
    (
        [doc("WorkflowRun", "r", "workflow: nope")],
        [
            at(
                5,
                "workflow run 'r' names workflow 'nope', which is not declared; no workflows are "
                "declared",
            )
        ],
    ),
    (
        [
            doc(
                "ModelCatalog",
                "c1",
                "models: [{name: m, contextWindow: 9, inputPerMTok: 1, "
                "outputPerMTok: 2, aliases: [big]}]",
            ),
            doc(
                "ModelCatalog",
                "c2",
                "models: [{name: big, contextWindow: 9, inputPerMTok: 1, "
                "outputPerMTok: 2}, {name: n, contextWindow: 9, inputPerMTok: 1, outputPerMTok: 2, "
                "aliases: [big]}]",
            ),
        ],
        [
            at(
                5,
                "alias 'big' of model 'm' already names model 'big'; a name or alias means one "
                "model",
            ),
            at(
                11,
                "alias 'big' of model 'n' already names model 'm'; a name or alias means one model",
            ),
        ],
    ),
]


@pytest.mark.parametrize(("documents", "expected"), REFERENCES)
def test_reference_problems(documents: list[str], expected: list[str]) -> None:
    assert problems(docs(*documents)) == expected


def test_listing_of_many_names_is_shortened() -> None:
    lanes = [doc("Lane", f"l{i:02}") for i in range(12)]
    found = problems(docs(*lanes, binding("b", lane="x")))
    assert found == [
        at(
            53,
            "binding 'b' names lane 'x', which is not declared; declared lanes: l00, l01, l02, "
            "l03, l04, l05, l06, l07, l08, l09 and 2 more",
        )
    ]


def test_references_that_hold() -> None:
    desired = state(
        LANE,
        doc("Lane", "m", "branch: feature/m"),
        binding("b1", participant="claude-1"),
        binding("b2", participant="codex-1"),  # two bindings on one lane: a shared lane
        doc("Thread", "t", "participants: [claude-1, human]"),  # human: unmanaged, fine
        doc("TriggerPolicy", "tp", "participants: [claude-1, human]\nthreads: [t]"),
        CATALOG,
        doc(
            "Workflow",
            "w",
            "tasks:\n- {name: a, model: m, command: [x]}\n"
            "- {name: b, model: m, command: [x], dependsOn: [a]}\n"
            "- {name: c, model: mm, command: [x], dependsOn: [a]}",
        ),
        doc(
            "ModelCatalog",
            "c2",
            "models: [{name: n, contextWindow: 9, inputPerMTok: 1, "
            "outputPerMTok: 2, aliases: [mm]}]",
        ),
        doc("WorkflowRun", "r", "workflow: w"),
        doc("Workspace", "ws", "hosts:\n- {name: h1, lanes: [l]}\n- {name: h2, lanes: [m]}"),
    )
    assert [b.name for b in desired.bindings_of("l")] == ["b1", "b2"]
    model = desired.model_named("mm")
    assert model is not None and model.name == "n"  # an alias finds its model
    assert desired.runs["r"].spec.workflow == "w"


def test_without_locations_problems_point_nowhere() -> None:
    lanes = [Lane(metadata=Metadata(name=n), spec=LaneSpec(branch="main")) for n in ("a", "b")]
    found = references.check(DesiredState.build(lanes))
    assert found == (
        Problem("<unknown>", 0, "lane 'b' uses branch 'main', already used by lane 'a'"),
    )


CYCLES = [
    ({}, ()),
    ({"a": ()}, ()),
    ({"a": ("b",), "b": ()}, ()),
    ({"a": ("a",)}, (("a", "a"),)),
    ({"a": ("b",), "b": ("a",)}, (("a", "b", "a"),)),
    ({"b": ("c",), "c": ("a",), "a": ("b",)}, (("a", "b", "c", "a"),)),
    ({"a": ("b", "c"), "b": ("d",), "c": ("d",), "d": ()}, ()),  # a diamond is no cycle
    ({"a": ("x",)}, ()),  # unknown names are someone else's problem
    ({"a": ("b",), "b": ("a",), "c": ("d",), "d": ("c",)}, (("a", "b", "a"), ("c", "d", "c"))),
    ({"a": ("b", "c"), "b": ("a",), "c": ("a",)}, (("a", "b", "a"), ("a", "c", "a"))),
]


@pytest.mark.parametrize(("graph", "cycles"), CYCLES)
def test_find_cycles(
    graph: dict[str, tuple[str, ...]], cycles: tuple[tuple[str, ...], ...]
) -> None:
    assert references.find_cycles(graph) == cycles


def test_find_cycles_on_a_long_chain_does_not_recurse() -> None:
    chain = {f"t{i}": (f"t{i + 1}",) for i in range(50_000)}
    chain["t50000"] = ("t0",)
    (cycle,) = references.find_cycles(chain)
    assert len(cycle) == 50_002
