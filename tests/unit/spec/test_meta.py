from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from controller.spec import meta

NAMES = TypeAdapter(meta.Name)
DURATIONS = TypeAdapter(meta.Duration)
POSITIVE = TypeAdapter(meta.PositiveDuration)
ARGV = TypeAdapter(meta.Argv)
LABELS = TypeAdapter(meta.Labels)


def error_of(adapter: TypeAdapter[Any], value: object) -> str:
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python(value)
    return caught.value.errors()[0]["msg"].removeprefix("Value error, ")


@pytest.mark.parametrize("name", ["a", "0", "auth", "a-b", "a--b", "9lives", "a" * 63])
def test_valid_names(name: str) -> None:
    assert NAMES.validate_python(name) == name


@pytest.mark.parametrize(
    "name", ["", "A", "a_b", "-a", "a-", "a.b", "a b", "ä", "a" * 64, "lane/x", "a\n"]
)
def test_invalid_names(name: str) -> None:
    assert error_of(NAMES, name).startswith("must be a lowercase DNS label: ")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (30, 30.0),
        (1.5, 1.5),
        ("30", 30.0),
        ("2.5", 2.5),
        ("500ms", 0.5),
        ("20s", 20.0),
        ("10m", 600.0),
        ("12h", 43200.0),
        ("1d", 86400.0),
        ("1.5h", 5400.0),
        ("0s", 0.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert DURATIONS.validate_python(value) == seconds
    assert isinstance(DURATIONS.validate_python(value), float)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10x", "must be a duration such as 30, 500ms, 20s, 10m, 12h or 1d (got '10x')"),
        ("-5s", "must be a duration such as 30, 500ms, 20s, 10m, 12h or 1d (got '-5s')"),
        (" 5s", "must be a duration such as 30, 500ms, 20s, 10m, 12h or 1d (got ' 5s')"),
        ("5 s", "must be a duration such as 30, 500ms, 20s, 10m, 12h or 1d (got '5 s')"),
        ("", "must be a duration such as 30, 500ms, 20s, 10m, 12h or 1d (got '')"),
        (True, "must be a duration such as 30, 500ms, 20s, 10m, 12h or 1d (got True)"),
        (None, "must be a duration such as 30, 500ms, 20s, 10m, 12h or 1d (got None)"),
        ([5], "must be a duration such as 30, 500ms, 20s, 10m, 12h or 1d (got [5])"),
        (-1, "must be a finite, non-negative duration (got -1)"),
        (float("inf"), "must be a finite, non-negative duration (got inf)"),
        (float("nan"), "must be a finite, non-negative duration (got nan)"),
    ],
)
def test_invalid_durations(value: object, message: str) -> None:
    assert error_of(DURATIONS, value) == message


@pytest.mark.parametrize("value", [0, "0s", "0ms", 0.0])
def test_positive_durations_refuse_zero(value: object) -> None:
    assert error_of(POSITIVE, value) == f"must be longer than zero (got {value!r})"


def test_positive_durations_accept_more_than_zero() -> None:
    assert POSITIVE.validate_python("1ms") == 0.001


@pytest.mark.parametrize(
    "argv", [("claude",), ("claude", "--continue"), ("claude", ""), ("x", "{summary}")]
)
def test_valid_argv(argv: tuple[str, ...]) -> None:
    assert ARGV.validate_python(argv) == argv


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "claude --continue",
            "must be an argv list such as [claude, --continue], never a shell string",
        ),
        ("claude", "must be an argv list such as [claude, --continue], never a shell string"),
        ((), "must name a program: an argv list such as [claude, --continue]"),
        (("",), "must name a program: an argv list such as [claude, --continue]"),
        (("claude", "a\x00b"), "argv item 1 contains a NUL byte"),
        (("cl\x00aude",), "argv item 0 contains a NUL byte"),
        ((1,), "Input should be a valid string"),
    ],
)
def test_invalid_argv(value: object, message: str) -> None:
    assert error_of(ARGV, value) == message


@pytest.mark.parametrize(
    "labels",
    [{}, {"team": "auth"}, {"example.com/tier": "a.b_c-d"}, {"x": ""}, {"A_b.c": "V1"}],
)
def test_valid_labels(labels: dict[str, str]) -> None:
    assert LABELS.validate_python(labels) == labels


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"": "x"}, "label key '' must look like 'name' or 'prefix.example/name'"),
        ({"a b": "x"}, "label key 'a b' must look like 'name' or 'prefix.example/name'"),
        ({"/a": "x"}, "label key '/a' must look like 'name' or 'prefix.example/name'"),
        ({"k" * 64: "x"}, f"label key {'k' * 64!r} must look like 'name' or 'prefix.example/name'"),
        (
            {"k": "-x"},
            "label 'k' has value '-x': at most 63 characters of letters, digits, "
            "'-', '_' and '.', starting and ending with a letter or digit",
        ),
        (
            {"k": "v" * 64},
            f"label 'k' has value {'v' * 64!r}: at most 63 characters of "
            "letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        ),
    ],
)
def test_invalid_labels(labels: dict[str, str], message: str) -> None:
    assert error_of(LABELS, labels) == message


@pytest.mark.parametrize("path", ["a", "a/b", ".lanes/worktrees", "out/x.md", "./x"])
def test_relative_paths(path: str) -> None:
    assert meta.check_relative_path(path, what="p") == path


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "p must be a relative path (got '')"),
        ("/etc", "p must be a relative path (got '/etc')"),
        ("~/x", "p must be a relative path (got '~/x')"),
        ("C:/x", "p must be a relative path (got 'C:/x')"),
        ("..", "p must not contain '..' (got '..')"),
        ("a/../../b", "p must not contain '..' (got 'a/../../b')"),
        ("a\\..\\b", "p must not contain '..' (got 'a\\\\..\\\\b')"),
        ("a\x00", "p contains a NUL byte"),
    ],
)
def test_invalid_relative_paths(path: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        meta.check_relative_path(path, what="p")


def test_unique_names_refuse_repeats() -> None:
    adapter = TypeAdapter(meta.UniqueNames)
    assert adapter.validate_python(("a", "b")) == ("a", "b")
    assert error_of(adapter, ("a", "b", "a")) == "name 'a' is listed more than once"


def test_document_name_is_the_metadata_name() -> None:
    document = meta.Document(kind="X", metadata=meta.Metadata(name="x"))
    assert document.name == "x"
    assert document.api_version == "lanes/v1"
    assert document.metadata.labels == {}


def test_models_are_frozen() -> None:
    metadata = meta.Metadata(name="x")
    with pytest.raises(ValidationError):
        metadata.name = "y"
