from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.spec import loading
from controller.spec.lane import Lane, LaneSpec
from controller.spec.loading import Problem
from controller.spec.meta import Metadata
from controller.spec.state import DesiredState

FAST = settings(max_examples=60, database=None, deadline=None)

ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


def dns_label(middle: str) -> st.SearchStrategy[str]:
    ends = st.sampled_from(ALNUM)
    inner = st.text(alphabet=middle, max_size=8)
    return st.one_of(ends, st.tuples(ends, inner, ends).map("".join))


names = dns_label(ALNUM + "-")
label_values = dns_label(ALNUM + "-_.")
yaml_tokens = st.sampled_from(
    [
        "\n",
        " ",
        "  ",
        "- ",
        ": ",
        "---\n",
        "[",
        "]",
        "{",
        "}",
        ",",
        "&a ",
        "*a",
        "!!python/object ",
        "!x ",
        "<<: ",
        "'",
        '"',
        "#",
        "|",
        ">",
        "? ",
        "apiVersion: lanes/v1\n",
        "kind: Lane\n",
        "kind: Binding\n",
        "metadata:\n  name: a\n",
        "spec:\n",
        "  branch: ",
        "  lane: ",
        "x",
        "1",
        "~",
        "yes",
        "\t",
        "\x00",
        "\ufeff",
        "%YAML 1.1\n",
    ]
)


@st.composite
def lanes(draw: st.DrawFn) -> list[Lane]:
    chosen = draw(st.lists(names, unique=True, max_size=8))
    return [
        Lane(
            metadata=Metadata(
                name=name, labels=draw(st.dictionaries(names, label_values, max_size=2))
            ),
            spec=LaneSpec(
                branch=draw(st.sampled_from([None, f"feature/{name}", f"x/{name}.v2"])),
                base=draw(st.sampled_from([None, "main", "origin/main", "HEAD~2"])),
                on_dirty_cleanup=draw(st.sampled_from(["preserve", "refuse"])),
                suspend=draw(st.booleans()),
            ),
        )
        for name in chosen
    ]


def render(documents: list[Lane]) -> str:
    dumped = [d.model_dump(mode="json", by_alias=True) for d in documents]
    return yaml.dump_all(dumped, Dumper=yaml.CSafeDumper, sort_keys=False)


@FAST
@given(lanes())
def test_valid_lanes_round_trip_through_yaml(documents: list[Lane]) -> None:
    desired = loading.load({"desired/lanes.yaml": render(documents)})
    assert isinstance(desired, DesiredState)
    assert desired.lanes == {lane.name: lane for lane in sorted(documents, key=lambda d: d.name)}


def check_never_raises(text: str) -> None:
    result = loading.load({"desired/x.yaml": text})
    if isinstance(result, tuple):
        assert result, "a failed load reports at least one problem"
        assert all(isinstance(p, Problem) and p.line >= 1 for p in result)
        assert list(result) == sorted(result)
    else:
        assert isinstance(result, DesiredState)


@FAST
@given(st.text(max_size=200))
def test_any_text_gives_a_state_or_problems(text: str) -> None:
    check_never_raises(text)


@FAST
@given(st.lists(yaml_tokens, max_size=40).map("".join))
def test_any_yaml_like_text_gives_a_state_or_problems(text: str) -> None:
    check_never_raises(text)
