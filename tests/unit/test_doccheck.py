"""The docs' output checker (tests/doccheck.py): markers, commands, normalising, matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import doccheck

GUIDE = """\
# Guide

<!-- check: demo
$ mkdir -p /tmp/docs/x && cd /tmp/docs/x
-->
<!-- check: demo file=desired/a.yaml -->
```yaml
a: 1
```

<!-- check: demo -->
```console
$ controller plan
The controller will perform the following actions:

  + a: create worktree

$ controller post t --as human - <<'EOF'
two
lines
EOF
posted #1 to t as human
$ echo $?
0
```

```console
$ not checked
```

- a list item:

  <!-- check: demo unordered -->
  ```console
  $ controller --once
    + a: ok: created
  ```

<!-- check: demo shows-next
$ env | sort
-->
```console
bash-5.2# env | sort
A=1
```
"""


@pytest.fixture
def scenario(tmp_path: Path) -> doccheck.Scenario:
    (tmp_path / "guide.md").write_text(GUIDE)
    found = doccheck.scenarios([tmp_path / "guide.md"], base=tmp_path)
    assert list(found) == ["demo"]
    return found["demo"]


def test_markers_make_steps_in_document_order(scenario: doccheck.Scenario) -> None:
    kinds = [s.kind for s in scenario.steps]
    assert kinds == ["hidden", "write", "console", "console", "hidden"]
    hidden, write, console, listed, shows = scenario.steps
    assert hidden.commands[0].text == "mkdir -p /tmp/docs/x && cd /tmp/docs/x"
    assert (write.target, write.text) == ("desired/a.yaml", "a: 1\n")
    assert [c.text.split()[:2] for c in console.commands] == [
        ["controller", "plan"],
        ["controller", "post"],
        ["echo", "$?"],
    ]
    assert listed.unordered and listed.indent == "  "
    assert listed.commands[0].expected == ("  + a: ok: created",)
    assert shows.shows == ("A=1",)  # the prompt line is not output


def test_a_heredoc_belongs_to_its_command(scenario: doccheck.Scenario) -> None:
    post = scenario.steps[2].commands[1]
    assert post.text.endswith("two\nlines\nEOF")
    assert post.expected == ("posted #1 to t as human",)
    plan = scenario.steps[2].commands[0]
    assert plan.expected[-1] == "  + a: create worktree"  # trailing blank lines dropped
    assert GUIDE.splitlines()[plan.line - 1] == "$ controller plan"
    assert GUIDE.splitlines()[plan.output_line - 1].startswith("The controller will")


def test_a_marker_needs_a_block(tmp_path: Path) -> None:
    (tmp_path / "bad.md").write_text("<!-- check: x -->\n\ntext\n")
    with pytest.raises(ValueError, match="right before a block"):
        doccheck.scenarios([tmp_path / "bad.md"], base=tmp_path)


@pytest.mark.parametrize(
    ("docs", "now"),
    [
        (
            "  + docs: ok: started writer (pid 5290, %0)",
            "  + docs: ok: started writer (pid 22691, %3)",
        ),
        (
            "2026-11-21T14:50:44Z a33bc31b auth  PhaseChanged",
            "2026-12-02T14:03:12Z 47c2e280 auth PhaseChanged",
        ),
        ("refs/lanes/rescue/auth/20261121T144947Z", "refs/lanes/rescue/auth/20261202T101010Z"),
        ("HEAD is now at 0546182 lanes rescue", "HEAD is now at 9a1b2c3 lanes rescue"),
        (
            "search  idler  tmux  running  13632  %5  0  -  9s ago",
            "search idler tmux running 401 %1 0 - 12s ago",
        ),
        ("Started:   2026-12-02 13:22:39 UTC", "Started:   2026-12-03 09:00:00 UTC"),
    ],
)
def test_what_differs_from_run_to_run_is_normalised(docs: str, now: str) -> None:
    assert doccheck.normalise(docs) == doccheck.normalise(now)


@pytest.mark.parametrize(
    ("docs", "now"),
    [
        (
            "Plan: 1 to add, 0 to change, 0 to destroy.",
            "Plan: 2 to add, 0 to change, 0 to destroy.",
        ),
        (
            "  ~ auth: restart agent-1: env (API_URL) changed",
            "  ~ auth: restart agent-1: command changed",
        ),
        ("cost $0.04", "cost $0.05"),
        ("exit 0", "exit 2"),
    ],
)
def test_what_the_docs_promise_is_not(docs: str, now: str) -> None:
    assert doccheck.normalise(docs) != doccheck.normalise(now)


def test_ellipsis_lines_match_any_lines_and_lanes_may_finish_in_any_order() -> None:
    assert doccheck.matches(["{", "...", "}"], ["{", '  "a": 1', '  "b": 2', "}"])
    assert doccheck.matches(["{", "...", "}"], ["{", "}"])
    assert not doccheck.matches(["{", "...", "}"], ["{", "]"])
    docs = [
        "  + a: ok: created x",
        "  + a: ok: started p",
        "  + b: ok: created y",
        "Apply complete.",
    ]
    now = [
        "  + b: ok: created y",
        "  + a: ok: created x",
        "  + a: ok: started p",
        "Apply complete.",
    ]
    assert doccheck.matches(docs, now)
    swapped = [
        "  + a: ok: started p",
        "  + a: ok: created x",
        "  + b: ok: created y",
        "Apply complete.",
    ]
    assert not doccheck.matches(docs, swapped)  # one lane's lines keep their order


def test_values_shown_earlier_are_learned_for_later_commands() -> None:
    learned = doccheck.learn(
        ["0546182fc73 commit\trefs/lanes/rescue/auth/20261121T144947Z", "other line"],
        ["9f8e7d6c5b4 commit\trefs/lanes/rescue/auth/20261202T101010Z", "changed line"],
    )
    assert learned == {
        "0546182fc73": "9f8e7d6c5b4",
        "20261121T144947Z": "20261202T101010Z",
    }
    assert doccheck.learn(["a", "..."], ["a", "b"]) == {}  # no alignment to learn from
