"""Every desired-state example in the docs is valid, so copying one never starts with an error.

Each fenced ```yaml block of README.md and docs/*.md that contains `apiVersion: lanes/v1` is
loaded on its own. A block meant to show a mistake either uses another fence (```yaml-invalid)
or starts with the line `# invalid`, in which case it must *fail* to load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.spec import loading
from controller.spec.state import DesiredState

ROOT = Path(__file__).resolve().parents[2]
MARKER = "apiVersion: lanes/v1"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced code block: where it starts (the line after the fence), its info and text."""

    path: str
    start: int
    info: str
    text: str

    @property
    def key(self) -> str:
        """The display path given to the loader: `<file>:<block-start-line>`."""
        return f"{self.path}:{self.start}"

    @property
    def expects_invalid(self) -> bool:
        """Whether the block is marked as a deliberate mistake."""
        return self.text.lstrip().startswith("# invalid")


def fenced_blocks(path: Path, *, base: Path = ROOT) -> list[Block]:
    """Every fenced code block of a Markdown file, with its info string's first word."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        index += 1
        if opening is None:
            continue
        indent, fence = opening["indent"], opening["fence"]
        body: list[str] = []
        start = index + 1
        while index < len(lines) and not _closes(lines[index], fence):
            body.append(lines[index].removeprefix(indent))
            index += 1
        index += 1
        words = opening["info"].split()
        info = words[0] if words else ""
        relative = path.relative_to(base).as_posix()
        blocks.append(Block(relative, start, info, "\n".join(body) + "\n"))
    return blocks


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence) and set(stripped) == {fence[0]}


def doc_files() -> list[Path]:
    """README.md and every Markdown file under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def yaml_examples() -> list[Block]:
    """The ```yaml blocks that hold desired state."""
    return [
        block
        for path in doc_files()
        if path.is_file()
        for block in fenced_blocks(path)
        if block.info == "yaml" and MARKER in block.text
    ]


EXAMPLES = yaml_examples()


def test_the_docs_have_examples() -> None:
    assert len(EXAMPLES) >= 5, "no desired-state examples found; did the docs move?"


@pytest.mark.parametrize("block", EXAMPLES, ids=[b.key for b in EXAMPLES])
def test_example_loads_as_documented(block: Block) -> None:
    # Blank lines in front keep the loader's line numbers equal to the Markdown file's.
    padded = "\n" * (block.start - 1) + block.text
    loaded = loading.load({block.key: padded})
    problems = "" if isinstance(loaded, DesiredState) else "\n".join(map(str, loaded))
    if block.expects_invalid:
        assert not isinstance(loaded, DesiredState), f"{block.key} is marked # invalid but loads"
    else:
        assert isinstance(loaded, DesiredState), f"{block.key} does not load:\n{problems}"


def test_the_example_desired_folder_is_valid() -> None:
    folder = ROOT / "desired"
    texts = {
        path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(folder.rglob("*"))
        if path.suffix in (".yaml", ".yml") and path.is_file()
    }
    assert texts, "desired/ holds no YAML files"
    loaded = loading.load(texts)
    problems = "" if isinstance(loaded, DesiredState) else "\n".join(map(str, loaded))
    assert isinstance(loaded, DesiredState), problems
    assert loaded.lanes, "the example declares no lane"


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("text\n```yaml\na: 1\n```\n", [("yaml", 3, "a: 1\n")]),
        ("````md\n```yaml\nx\n```\n````\n", [("md", 2, "```yaml\nx\n```\n")]),
        ("1. step\n\n   ```yaml\n   b: 2\n   ```\n", [("yaml", 4, "b: 2\n")]),
        ("```yaml-invalid\nc\n```\n```\nd\n```\n", [("yaml-invalid", 2, "c\n"), ("", 5, "d\n")]),
    ],
    ids=["plain", "nested-fence", "indented-in-a-list", "other-info-strings"],
)
def test_fenced_blocks_are_found(
    tmp_path: Path, markdown: str, expected: list[tuple[str, int, str]]
) -> None:
    source = tmp_path / "probe.md"
    source.write_text(markdown, encoding="utf-8")
    blocks = fenced_blocks(source, base=tmp_path)
    assert [(b.info, b.start, b.text) for b in blocks] == expected
    assert {b.path for b in blocks} <= {"probe.md"}
