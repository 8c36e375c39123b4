"""Builders of YAML texts and loaded states shared by the spec tests."""

from __future__ import annotations

import textwrap

from controller.spec import loading
from controller.spec.state import DesiredState

PATH = "desired/test.yaml"
SPEC_LINE = 5  # the first line under `spec:` in a text made by `doc`


def doc(kind: str, name: str, spec: str | None = None) -> str:
    """One document: header on lines 1-3, `spec:` on line 4, the spec from line 5."""
    head = f"apiVersion: lanes/v1\nkind: {kind}\nmetadata: {{name: {name}}}\n"
    if spec is None:
        return head
    return head + "spec:\n" + textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ") + "\n"


def docs(*texts: str) -> str:
    """Documents joined into one multi-document text."""
    return "---\n".join(texts)


def problems(text: str, path: str = PATH) -> list[str]:
    """The problems of one text, as `path:line: message` strings; fails if it loads."""
    result = loading.load({path: text})
    assert isinstance(result, tuple), "expected problems, got a valid state"
    return [str(problem) for problem in result]


def state(*texts: str) -> DesiredState:
    """The state of some documents in one file; fails with the problems if it does not load."""
    result = loading.load({PATH: docs(*texts)})
    assert isinstance(result, DesiredState), "\n".join(map(str, result))
    return result
