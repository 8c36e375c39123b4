from __future__ import annotations

import pytest

from controller.spec import loading
from controller.spec.loading import Problem
from controller.spec.state import DesiredState, Location
from tests.unit.spec.factories import PATH, doc, docs, problems, state

LANE_A = doc("Lane", "a")
ALLOWED = "only strings, numbers, booleans, null, lists and mappings are allowed"
KINDS = (
    "valid kinds: Binding, Lane, ModelCatalog, Thread, TriggerPolicy, Workflow, WorkflowRun, "
    "Workspace"
)


def test_problem_reads_as_path_line_message() -> None:
    assert str(Problem("desired/a.yaml", 3, "boom")) == "desired/a.yaml:3: boom"
    assert sorted([Problem("b", 1, "x"), Problem("a", 9, "x"), Problem("a", 2, "y")]) == [
        Problem("a", 2, "y"),
        Problem("a", 9, "x"),
        Problem("b", 1, "x"),
    ]


@pytest.mark.parametrize(
    "text", ["", "\n", "# only a comment\n", "---\n", "---\n---\n...\n", "~\n"]
)
def test_empty_texts_give_an_empty_state(text: str) -> None:
    assert loading.load({PATH: text}) == DesiredState.empty()


def test_no_texts_give_an_empty_state() -> None:
    assert loading.load({}) == DesiredState.empty()


def test_many_documents_per_file_and_empty_ones_skipped() -> None:
    text = "---\n" + LANE_A + "---\n---\n# nothing\n---\n" + doc("Lane", "b")
    desired = loading.load({PATH: text})
    assert isinstance(desired, DesiredState)
    assert list(desired.lanes) == ["a", "b"]
    assert desired.locations == {
        ("Lane", "a"): Location(PATH, 2),
        ("Lane", "b"): Location(PATH, 9),
    }


def test_documents_are_sorted_by_name_whatever_the_file_order() -> None:
    texts = {"z.yaml": doc("Lane", "a"), "a.yaml": docs(doc("Lane", "c"), doc("Lane", "b"))}
    desired = loading.load(texts)
    assert isinstance(desired, DesiredState)
    assert list(desired.lanes) == ["a", "b", "c"]
    assert desired.locations[("Lane", "a")] == Location("z.yaml", 1)
    assert str(desired.locations[("Lane", "b")]) == "a.yaml:5"


HOSTILE = [
    ("a: [\n", "1: invalid YAML: did not find expected node content (while parsing a flow node)"),
    ("a: b\n  c: d\n", "2: invalid YAML: mapping values are not allowed in this context"),
    ("a: *nowhere\n", "1: invalid YAML: found undefined alias"),
    ("ok: 1\nbad: \x01\n", "2: invalid YAML: character #x0001 is not allowed"),
    ("a: \x00\n", "1: invalid YAML: character #x0000 is not allowed"),
    ("a: b\nc: \ud800\n", "2: invalid text: surrogates not allowed"),
    ("x: 1\nx: 2\n", "2: duplicate key 'x' (first at line 1)"),
    ("a: {x: 1,\n  x: 2}\n", "2: duplicate key 'x' (first at line 1)"),
    ("1: x\n", "1: mapping key '1' is not a string (YAML reads it as an integer); quote it"),
    ("yes: x\n", "1: mapping key 'yes' is not a string (YAML reads it as a boolean); quote it"),
    ("1.5: x\n", "1: mapping key '1.5' is not a string (YAML reads it as a number); quote it"),
    ("~: x\n", "1: mapping key '~' is not a string (YAML reads it as null); quote it"),
    (
        "!!binary aGk=: x\n",
        "1: mapping key 'aGk=' is not a string (YAML reads it as !!binary); quote it",
    ),
    ("? [a]\n: b\n", "1: mapping keys must be plain strings, not lists or mappings"),
    (
        "a: !!python/object:os.system x\n",
        f"1: unsupported YAML tag '!!python/object:os.system': {ALLOWED}",
    ),
    (
        "a: !!python/object/apply:os.system [ls]\n",
        f"1: unsupported YAML tag '!!python/object/apply:os.system': {ALLOWED}",
    ),
    (
        "a: !!python/name:os.system ''\n",
        f"1: unsupported YAML tag '!!python/name:os.system': {ALLOWED}",
    ),
    ("a: !!binary aGVsbG8=\n", f"1: unsupported YAML tag '!!binary': {ALLOWED}"),
    ("a: !!set {b}\n", f"1: unsupported YAML tag '!!set': {ALLOWED}"),
    ("a: !!omap [{b: 1}]\n", f"1: unsupported YAML tag '!!omap': {ALLOWED}"),
    ("a: !env HOME\n", f"1: unsupported YAML tag '!env': {ALLOWED}"),
    ("!custom {a: 1}\n", f"1: unsupported YAML tag '!custom': {ALLOWED}"),
    ("a: &a [1]\nb: {<<: *a}\n", "1: a merge key '<<' takes a mapping or a list of them"),
    ("a: &a [*a]\n", "1: recursive alias: an anchor is used inside itself"),
    ("a: &a {b: *a}\n", "1: recursive alias: an anchor is used inside itself"),
    ("a: &a [*a, *a, *a, *a]\n", "1: recursive alias: an anchor is used inside itself"),
    (
        "".join(f"a{i}: &a{i} [*a{i - 1}]\n" if i else "a0: &a0 [x]\n" for i in range(3000)),
        "63: nesting deeper than 64 levels",  # inside a63, the anchor a62 is one level too deep
    ),
    ("[" * 65 + "]" * 65, "1: nesting deeper than 64 levels"),
    ("x: 1\ny: " + "[" * 100_000 + "]" * 100_000, "2: nesting deeper than 64 levels"),
    ("- " * 70 + "x\n", "1: nesting deeper than 64 levels"),
    # Deeper than PyYAML's own bound (1000 levels since 6.0.4): still the product's message.
    ("a: 1\nb: " + "{c: " * 2000 + "d" + "}" * 2000 + "\n", "2: nesting deeper than 64 levels"),
    ("a: 1\n" + "- " * 3000 + "x\n", "2: nesting deeper than 64 levels"),
    ("a: [\n" + "[" * 1500 + "]" * 1500 + "]\n", "2: nesting deeper than 64 levels"),
    ("".join(" " * i + "- \n" for i in range(2000)), "65: nesting deeper than 64 levels"),
]


@pytest.mark.parametrize(("text", "expected"), HOSTILE)
def test_hostile_or_broken_yaml_is_a_problem(text: str, expected: str) -> None:
    assert problems(text) == [f"{PATH}:{expected}"]


TABBED = [
    ("a:\n\tb: c\n", 2),  # PyYAML: "found character that cannot start any token"
    ("a:\n  b: c\n\td: e\n", 3),  # "found a tab character that violates indentation"
    ("a:\n \t b: c\n", 2),  # spaces then a tab
    ("\ta: b\n", 1),
    ("a:\n\t- b\n", 2),
    ("a:\n  - b\n  -\tc\n", 3),  # a tab after a list's dash
    ("a:\n  b: |\n    x\n\ty\n", 4),  # inside a block scalar, at the indentation
    ("a:\n  b: c\n\t\n", 3),  # a line of only a tab
]


@pytest.mark.parametrize(("text", "line"), TABBED)
def test_a_tab_in_the_indentation_says_so(text: str, line: int) -> None:
    assert problems(text) == [f"{PATH}:{line}: tabs are not allowed for indentation; use spaces"]


@pytest.mark.parametrize("text", ["a:\tb\n", "a: 'x\ty'\n", "a: b\t# note\n"])
def test_tabs_elsewhere_are_yaml_white_space(text: str) -> None:
    assert not any("tabs" in p for p in problems(text))


@pytest.mark.parametrize(
    "value",
    [
        '"' + "[" * 100 + '"',  # brackets in quoted text are text
        "'" + "{" * 100 + "'",
        "x # " + "[" * 100,  # and in a comment
        "[" + "[], " * 100 + "[]]",  # many collections, shallow
    ],
)
def test_brackets_that_do_not_nest_are_not_depth(value: str) -> None:
    text = docs(doc("Lane", "l"), f"x: {value}\n")
    assert all("nesting" not in p for p in problems(text))


def test_billion_laughs_stops_at_the_node_limit() -> None:
    rows = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    assert problems("\n".join(rows) + "\n") == [
        f"{PATH}:1: document too large or too deeply aliased"
    ]


def test_aliases_within_the_limits_are_expanded() -> None:
    text = docs(
        doc("Lane", "l"),
        "x-common: &common {lane: l, command: [claude]}\n"
        + doc("Binding", "b")
        + "spec:\n  <<: *common\n  participant: p\n",
    )
    assert problems(text) == [
        f"{PATH}:5: unknown field 'x-common' in Binding; valid fields: apiVersion, kind, "
        "metadata, spec"
    ]


def test_merge_keys_explicit_keys_win_and_earlier_sources_win() -> None:
    text = docs(
        doc("Lane", "l"),
        doc("Lane", "m"),
        doc("Thread", "t", "participants: [p]"),
        doc(
            "Binding",
            "b",
            "<<: [{lane: l, command: [one]}, {lane: m, command: [two], runtime: process}]\n"
            "lane: m\nparticipant: p",
        ),
    )
    binding = state(text).bindings["b"]
    assert (binding.spec.lane, binding.spec.command, binding.spec.runtime) == (
        "m",
        ("one",),
        "process",
    )


def test_anchored_spec_reused_by_two_documents() -> None:
    # Anchors do not cross documents in YAML; within one document they may be reused freely.
    text = doc("Lane", "l", "branch: &b feature/x\nbase: *b")
    lane = state(text).lanes["l"]
    assert (lane.spec.branch, lane.spec.base) == ("feature/x", "feature/x")


def test_file_size_limit() -> None:
    assert problems("#" * (loading.MAX_TEXT_CHARS + 1)) == [
        f"{PATH}:1: file too large: over {loading.MAX_TEXT_CHARS} characters"
    ]


HEADERS = [
    (
        "- a\n- b\n",
        "1: a document must be a mapping with apiVersion, kind, metadata and spec; got a list",
    ),
    (
        "hello\n",
        "1: a document must be a mapping with apiVersion, kind, metadata and spec; got str 'hello'",
    ),
    ("5\n", "1: a document must be a mapping with apiVersion, kind, metadata and spec; got int 5"),
    ("kind: Lane\nmetadata: {name: a}\n", "1: missing apiVersion; use apiVersion: lanes/v1"),
    (
        "apiVersion: lanes/v2\nkind: Lane\nmetadata: {name: a}\n",
        "1: apiVersion 'lanes/v2' is not supported; use apiVersion: lanes/v1",
    ),
    (
        "apiVersion: v1\nkind: Lane\n",
        "1: apiVersion 'v1' is not supported; use apiVersion: lanes/v1",
    ),
    ("apiVersion: lanes/v1\nmetadata: {name: a}\n", f"1: missing kind; {KINDS}"),
    (
        "apiVersion: lanes/v1\nkind: Lnae\nmetadata: {name: a}\n",
        f"2: unknown kind 'Lnae' (did you mean 'Lane'?); {KINDS}",
    ),
    (
        "apiVersion: lanes/v1\nkind: lane\n",
        f"2: unknown kind 'lane' (did you mean 'Lane'?); {KINDS}",
    ),
    (
        "apiVersion: lanes/v1\nkind: TriggerPolcy\n",
        f"2: unknown kind 'TriggerPolcy' (did you mean 'TriggerPolicy'?); {KINDS}",
    ),
    ("apiVersion: lanes/v1\nkind: Deployment\n", f"2: unknown kind 'Deployment'; {KINDS}"),
    ("apiVersion: lanes/v1\nkind: 5\n", f"2: unknown kind 5; {KINDS}"),
    ("apiVersion: lanes/v1\nkind: Lane\n", "1: Lane metadata: required field is missing"),
    (
        "apiVersion: lanes/v1\nkind: Lane\nmetadata: {}\n",
        "3: Lane metadata.name: required field is missing",
    ),
    (
        "apiVersion: lanes/v1\nkind: Lane\nmetadata: x\n",
        "3: Lane metadata: must be a mapping (got 'x')",
    ),
    (
        "apiVersion: lanes/v1\nkind: Lane\nmetadata:\n  name: Auth\n",
        "4: Lane metadata.name: must be a lowercase DNS label: at most 63 characters of a-z, "
        "0-9 and '-', starting and ending with a letter or digit (got 'Auth')",
    ),
    (
        "apiVersion: lanes/v1\nkind: Lane\nmetadata:\n  name: a\n  labels: {team: 5}\n",
        "5: Lane metadata.labels.team: must be a valid string (got 5)",
    ),
    (
        "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: a}\nspce: {}\n",
        "4: unknown field 'spce' in Lane (did you mean 'spec'?)",
    ),
    (
        "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: a, label: {}}\n",
        "3: unknown field 'label' in Lane metadata (did you mean 'labels'?)",
    ),
    (
        "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: a}\nspec:\n  brnach: x\n",
        "5: unknown field 'brnach' in Lane spec (did you mean 'branch'?)",
    ),
    (
        "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: a}\nspec:\n"
        "  on_dirty_cleanup: refuse\n",
        "5: unknown field 'on_dirty_cleanup' in Lane spec (did you mean 'onDirtyCleanup'?)",
    ),
    (
        "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: a}\nspec:\n  qqq: 1\n",
        "5: unknown field 'qqq' in Lane spec; valid fields: base, branch, onDirtyCleanup, suspend",
    ),
    (
        doc("Binding", "b", "lane: l\nparticipant: p\ncommand: [x]\ncrashLoop: {deats: 3}"),
        "8: unknown field 'deats' in Binding spec.crashLoop (did you mean 'deaths'?)",
    ),
    (
        doc("Workflow", "w", "tasks:\n- name: a\n  model: m\n  command: [x]\n  depends_on: [b]"),
        "9: unknown field 'depends_on' in Workflow spec.tasks[0] (did you mean 'dependsOn'?)",
    ),
    (
        doc("TriggerPolicy", "p", "rateLimits:\n  perThread:\n    cnt: 3"),
        "7: unknown field 'cnt' in TriggerPolicy spec.rateLimits.perThread (did you mean 'count'?)",
    ),
    (
        doc("Workspace", "w", "hosts:\n- name: a\n  matchLabel: {a: b}"),
        "7: unknown field 'matchLabel' in Workspace spec.hosts[0] (did you mean 'matchLabels'?)",
    ),
]


@pytest.mark.parametrize(("text", "expected"), HEADERS)
def test_header_and_field_problems(text: str, expected: str) -> None:
    assert problems(text) == [f"{PATH}:{expected}"]


def test_every_problem_is_reported_at_once_sorted_by_path_and_line() -> None:
    texts = {
        "desired/b.yaml": docs(
            doc("Lane", "x", "branch: a..b\nsuspend: maybe"),
            "kind: Lane\n",
            doc("Thread", "t", "participants: []"),
        ),
        "desired/a.yaml": "a: [\n",
        "desired/c.yaml": docs(doc("Lane", "ok"), "- not a mapping\n"),
    }
    result = loading.load(texts)
    assert isinstance(result, tuple)
    assert [str(p) for p in result] == [
        "desired/a.yaml:1: invalid YAML: did not find expected node content (while parsing a flow "
        "node)",
        "desired/b.yaml:5: Lane spec.branch: branch must not contain '..' (got 'a..b')",
        "desired/b.yaml:6: Lane spec.suspend: must be a valid boolean (got 'maybe')",
        "desired/b.yaml:8: missing apiVersion; use apiVersion: lanes/v1",
        "desired/b.yaml:14: Thread spec.participants: must have at least 1 item(s)",
        "desired/c.yaml:5: a document must be a mapping with apiVersion, kind, metadata and spec; "
        "got a list",
    ]


def test_one_bad_document_means_no_state_at_all() -> None:
    result = loading.load(
        {"good.yaml": docs(*(doc("Lane", f"l{i}") for i in range(20))), "bad.yaml": "x: [\n"}
    )
    assert isinstance(result, tuple)
    assert len(result) == 1


def test_several_errors_in_one_document() -> None:
    text = doc("Binding", "b", "lane: L\nparticipant: p\ncommand: run it\nruntime: vm")
    assert problems(text) == [
        f"{PATH}:5: Binding spec.lane: must be a lowercase DNS label: at most 63 characters of "
        "a-z, 0-9 and '-', starting and ending with a letter or digit (got 'L')",
        f"{PATH}:7: Binding spec.command: must be an argv list such as [claude, --continue], "
        "never a shell string",
        f"{PATH}:8: Binding spec.runtime: must be 'tmux' or 'process' (got 'vm')",
    ]


def test_duplicate_kind_and_name_names_the_first_location() -> None:
    texts = {
        "desired/a.yaml": doc("Lane", "x"),
        "desired/b.yaml": docs(doc("Thread", "x", "participants: [p]"), doc("Lane", "x")),
    }
    result = loading.load(texts)
    assert isinstance(result, tuple)
    assert [str(p) for p in result] == [
        "desired/b.yaml:7: duplicate Lane 'x': already declared at desired/a.yaml:1"
    ]


def test_at_most_one_workspace() -> None:
    text = docs(doc("Workspace", "a"), doc("Workspace", "b"), doc("Workspace", "c"))
    assert problems(text) == [
        f"{PATH}:5: more than one Workspace: 'b' and 'a' ({PATH}:1); declare at most one",
        f"{PATH}:9: more than one Workspace: 'c' and 'a' ({PATH}:1); declare at most one",
    ]


def test_declared_workspace_replaces_the_default() -> None:
    desired = state(doc("Workspace", "main", "worktreeRoot: wt\nmaxParallelLanes: 2"))
    assert (desired.workspace.name, desired.workspace.spec.worktree_root) == ("main", "wt")
    assert DesiredState.empty().workspace.name == "default"


SCALARS = [
    ("base: 2024-01-01", "base", "2024-01-01"),  # an unquoted date stays text
    ("base: 'yes'", "base", "yes"),
    ("branch: !!str 123", "branch", "123"),
    ("base: v1.2", "base", "v1.2"),
]


@pytest.mark.parametrize(("spec", "field", "expected"), SCALARS)
def test_scalars_keep_what_was_written(spec: str, field: str, expected: str) -> None:
    lane = state(doc("Lane", "l", spec)).lanes["l"]
    assert getattr(lane.spec, field) == expected


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("20", 20.0),
        ("1.5", 1.5),
        ("'20'", 20.0),
        ("500ms", 0.5),
        ("10m", 600.0),
        ("12h", 43200.0),
        ("1d", 86400.0),
    ],
)
def test_durations_in_yaml(written: str, seconds: float) -> None:
    policy = state(doc("TriggerPolicy", "p", f"collision: {{quietSeconds: {written}}}")).policies[
        "p"
    ]
    assert policy.spec.collision.quiet_seconds == seconds


def test_byte_order_mark_and_crlf_are_fine() -> None:
    text = "\ufeff" + doc("Lane", "a", "suspend: true").replace("\n", "\r\n")
    assert state(text).lanes["a"].spec.suspend is True


def test_crlf_lines_are_counted_once() -> None:
    text = doc("Lane", "a", "suspend: 3").replace("\n", "\r\n")
    assert problems(text) == [f"{PATH}:5: Lane spec.suspend: must be a valid boolean (got 3)"]


def test_snake_case_names_are_not_accepted_in_yaml() -> None:
    text = doc("Workspace", "w", "max_parallel_lanes: 3")
    assert problems(text) == [
        f"{PATH}:5: unknown field 'max_parallel_lanes' in Workspace spec "
        "(did you mean 'maxParallelLanes'?)"
    ]
