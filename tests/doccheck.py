"""Run the commands the docs show, and compare what they print with what the docs say.

Blocks take part when an HTML comment (invisible once rendered) names a *scenario* on the line
before them; a scenario's steps run in document order, in a scratch folder, one shell command
at a time (the working folder and the last exit status carry over, as at a prompt):

- ``<!-- check: NAME -->`` before a ```console block: every ``$ command`` line runs (with its
  heredoc or ``\\`` continuation lines) and its output must match the lines below it, up to
  the next ``$``. A line ``...`` matches any number of lines. Option ``unordered``: the
  lines of each command's output may come in any order (parallel lanes).
- ``<!-- check: NAME -->`` before a ```sh block: every line runs; the output is not compared,
  but each command must exit 0.
- ``<!-- check: NAME file=PATH -->`` before any block: the block is written to PATH (relative
  to the working folder); ``append=PATH`` appends it as one more YAML document.
- A comment whose first line is ``<!-- check: NAME`` and whose next lines are ``$ command``:
  hidden steps (set-up the prose describes, such as deleting a document), run like a ```sh
  block. With the option ``shows-next``, their output must match the next block instead
  (prompt lines such as ``bash-5.2# ...`` in it are skipped).

The docs are written as if in ``/tmp/docs`` with this project at ``/work/main``; both are
replaced by the real folders in commands and files, and back in outputs. Hidden steps may use
``$PROJECT_VENV_BIN``, the folder of the Python running the tests (with ``controller`` in
it). Outputs are compared after normalising what differs from run to run: times, hashes,
process ids, tmux ids, ages, durations and runs of spaces (table columns widen with the
numbers in them).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DOC_BASE = "/tmp/docs"
DOC_PROJECT = "/work/main"
DOC_TMUX = "/tmp/docs-tmux"

_MARK = re.compile(r"^<!-- check: (?P<name>[a-z0-9-]+)(?P<options>[^>]*?)(?P<end> -->)?$")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(?P<word>[A-Za-z_]+)\1\s*$")
_PROMPT = re.compile(r"^(\$|[\w.@:~/-]+[#$]) ")  # `$ ...`, `bash-5.2# ...`


@dataclass(frozen=True, slots=True)
class Command:
    """One command of a console block and the output the docs show for it."""

    text: str
    expected: tuple[str, ...]
    line: int  # of the ``$`` line, in the Markdown file
    output_line: int = 0  # of the first output line


@dataclass(frozen=True, slots=True)
class Step:
    """One checked block or hidden comment, in document order."""

    path: str
    line: int
    kind: str  # console | run | write | append | hidden
    indent: str = ""  # of the block (a block in a list item is indented)
    commands: tuple[Command, ...] = ()
    target: str = ""  # the file a write or append goes to
    text: str = ""  # what it writes
    unordered: bool = False
    shows: tuple[str, ...] | None = None  # hidden steps whose output the next block shows


@dataclass(slots=True)
class Scenario:
    """The steps of one scenario, from one Markdown file."""

    name: str
    path: str
    steps: list[Step] = field(default_factory=list)


# -- reading the docs -----------------------------------------------------------------------


def scenarios(files: Sequence[Path], *, base: Path) -> dict[str, Scenario]:
    """Every scenario of these Markdown files, by name (a name belongs to one file)."""
    found: dict[str, Scenario] = {}
    for path in files:
        relative = path.relative_to(base).as_posix()
        for name, step in _steps(path.read_text(encoding="utf-8").splitlines(), relative):
            scenario = found.setdefault(name, Scenario(name, relative))
            if scenario.path != relative:
                raise ValueError(f"{relative}:{step.line}: scenario {name} is in {scenario.path}")
            scenario.steps.append(step)
    return found


def _steps(lines: list[str], path: str) -> Iterator[tuple[str, Step]]:
    index = 0
    while index < len(lines):
        mark = _MARK.match(lines[index].strip())
        index += 1
        if mark is None:
            continue
        name, options = mark["name"], mark["options"].split()
        if mark["end"] is None:
            indent = lines[index - 1][: len(lines[index - 1]) - len(lines[index - 1].lstrip())]
            hidden, index = _hidden(lines, index, indent)
            shows = None
            if "shows-next" in options:
                _, block, index = _next_block(lines, index, path)
                shows = tuple(line for line in block[2:] if not _PROMPT.match(line))
            yield name, Step(path, index, "hidden", commands=hidden, shows=shows)
            continue
        opening, block, index = _next_block(lines, index, path)
        yield name, _block_step(path, opening, block, options)


def _hidden(lines: list[str], index: int, indent: str) -> tuple[tuple[Command, ...], int]:
    body: list[str] = []
    start = index
    while lines[index].strip() != "-->":
        body.append(lines[index].removeprefix(indent))
        index += 1
    commands = tuple(c for c in _console(body, start + 1))
    return commands, index + 1


def _next_block(lines: list[str], index: int, path: str) -> tuple[int, list[str], int]:
    """The fenced block right after a marker (blank lines may come between)."""
    while index < len(lines) and not lines[index].strip():
        index += 1
    opening = _FENCE.match(lines[index]) if index < len(lines) else None
    if opening is None:
        raise ValueError(f"{path}:{index + 1}: a check marker must come right before a block")
    fence, indent = opening["fence"], opening["indent"]
    body: list[str] = []
    start = index
    index += 1
    while not (lines[index].strip().startswith(fence) and set(lines[index].strip()) == {fence[0]}):
        body.append(lines[index].removeprefix(indent))
        index += 1
    return start, [opening["info"].strip(), indent, *body], index + 1


def _block_step(path: str, opening: int, block: list[str], options: list[str]) -> Step:
    info, indent, body = block[0].split(" ")[0], block[1], block[2:]
    settings = dict(o.split("=", 1) for o in options if "=" in o)
    line = opening + 1
    if "file" in settings:
        return Step(path, line, "write", target=settings["file"], text="\n".join(body) + "\n")
    if "append" in settings:
        return Step(path, line, "append", target=settings["append"], text="\n".join(body) + "\n")
    if info == "console":
        commands = tuple(_console(body, line + 1))
        unordered = "unordered" in options
        return Step(path, line, "console", indent, commands=commands, unordered=unordered)
    if info in ("sh", "bash"):
        commands = tuple(_script(body, line + 1))
        return Step(path, line, "run", commands=commands)
    raise ValueError(f"{path}:{line}: cannot check a ```{info} block without file=")


def _console(body: list[str], first: int) -> Iterator[Command]:
    """``$ command`` lines (with continuations) and the output lines under each."""
    index = 0
    while index < len(body):
        if not body[index].startswith("$ "):
            index += 1  # text before the first prompt is not output of anything
            continue
        start = index
        text, index = _command(body, index, body[index][2:])
        output = index
        out: list[str] = []
        while index < len(body) and not body[index].startswith("$ "):
            out.append(body[index])
            index += 1
        while out and not out[-1].strip():
            out.pop()
        yield Command(text, tuple(out), first + start, first + output)


def _script(body: list[str], first: int) -> Iterator[Command]:
    index = 0
    while index < len(body):
        line = body[index]
        if not line.strip() or line.lstrip().startswith("#"):
            index += 1
            continue
        start = index
        text, index = _command(body, index, line)
        yield Command(text, (), first + start)


def _command(body: list[str], index: int, text: str) -> tuple[str, int]:
    """A command starting at ``body[index]``; the index after it."""
    index += 1
    while text.endswith("\\") and index < len(body):
        text = text[:-1] + "\n" + body[index]
        index += 1
    heredoc = _HEREDOC.search(text)
    if heredoc is not None:
        while index < len(body):
            text += "\n" + body[index]
            index += 1
            if body[index - 1].strip() == heredoc["word"]:
                break
    return text, index


# -- comparing ------------------------------------------------------------------------------

_NORMAL = [
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (
        re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}| UTC)?"),
        "<time>",
    ),
    (re.compile(r"\b\d{8}T\d{6}Z\b"), "<time>"),
    (re.compile(r"\b\d{2}:\d{2}:\d{2}(\.\d+)?Z?"), "<time>"),
    (re.compile(r"\b(?=[0-9a-f]*[0-9])[0-9a-f]{7,64}\b|\b[a-f]{8,64}\b"), "<hex>"),
    (re.compile(r"(?<![\w/])([%@$])\d+\b(?!\.)"), r"\1N"),
    (re.compile(r"\bpid([ =])\d+"), r"pid\1N"),
    (re.compile(r"\b\d+s ago\b"), "Ns ago"),
    (re.compile(r"\b\d+m\d{2}s\b|\b\d+(\.\d+)?m?s\b"), "<duration>"),
    (re.compile(r"\b\d{3,}\b"), "N"),
    (re.compile(r"[ \t]+"), " "),
]


# What a reader copies from one output into a later command: a rescue ref's time stamp, a
# commit, a process id. Learned from lines that match, then put into the commands that follow.
_LEARNABLE = re.compile(
    r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"
    r"|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})?"
    r"|\b\d{8}T\d{6}Z\b"
    r"|\b(?=[0-9a-f]*[0-9])[0-9a-f]{7,64}\b"
    r"|(?<![\w/])[%@]\d+\b"
    r"|\b\d{3,}\b"
)


def learn(expected: Sequence[str], actual: Sequence[str]) -> dict[str, str]:
    """Values the docs show and what this run printed in their place, from the lines that
    match (the outputs must have as many lines: no ``...``)."""
    want, got = by_lane(expected), by_lane(actual)
    if "..." in want or len(want) != len(got):
        return {}
    found: dict[str, str] = {}
    for shown, seen in zip(want, got, strict=True):
        if normalise(shown) != normalise(seen):
            continue
        pairs = zip(_LEARNABLE.findall(shown), _LEARNABLE.findall(seen), strict=False)
        found.update((a, b) for a, b in pairs if a != b)
    return found


def normalise(text: str) -> str:
    """One line as compared: what differs from run to run replaced, spaces collapsed."""
    for pattern, replacement in _NORMAL:
        text = pattern.sub(replacement, text)
    return text.strip()


_OUTCOME = re.compile(r"^\s+[-+~] (?P<lane>[a-z0-9-]+): (ok|refused|FAILED): ")


def matches(expected: Sequence[str], actual: Sequence[str], *, unordered: bool = False) -> bool:
    """Whether the output matches the docs (``...`` lines match any number of lines).

    Lanes are applied in parallel: a pass's progress lines are compared lane by lane (each
    lane's lines in their order, the lanes in name order).
    """
    want = [normalise(line) for line in by_lane(expected)]
    got = [normalise(line) for line in by_lane(actual)]
    while got and not got[-1]:
        got.pop()
    if unordered:
        return sorted(want) == sorted(got)
    return _match(want, got)


def by_lane(lines: Sequence[str]) -> list[str]:
    """Each run of progress lines (``  + auth: ok: ...``) stably sorted by lane."""
    out: list[str] = []
    run: list[str] = []
    for line in [*lines, ""]:
        found = _OUTCOME.match(line)
        if found is not None:
            run.append(line)
            continue
        out += sorted(run, key=lambda item: _lane(item))
        run = []
        out.append(line)
    return out[:-1]


def _lane(line: str) -> str:
    found = _OUTCOME.match(line)
    return found["lane"] if found else ""


def _match(want: list[str], got: list[str]) -> bool:
    if not want:
        return not got
    if want[0] == "...":
        return any(_match(want[1:], got[skip:]) for skip in range(len(got) + 1))
    return bool(got) and want[0] == got[0] and _match(want[1:], got[1:])


# -- running --------------------------------------------------------------------------------


@dataclass(slots=True)
class Shell:
    """A prompt: commands run one at a time, keeping the folder and the last exit status."""

    cwd: Path
    env: Mapping[str, str]
    to_real: Mapping[str, str]  # documented path -> real path, longest first
    state: Path  # where each command leaves its exit status and folder
    status: int = 0
    learned: dict[str, str] = field(default_factory=dict)  # documented value -> this run's

    def run(self, command: str, *, timeout: float = 180) -> str:
        """Run one command as the docs show it; its output (stdout and stderr, as shown)."""
        script = (
            f"cd {shlex.quote(str(self.cwd))} || exit 97\n"
            f"(exit {self.status})\n"
            f"{self.real(command)}\n"
            f'printf "%s\\n%s\\n" "$?" "$PWD" > {shlex.quote(str(self.state))}\n'
        )
        done = subprocess.run(
            ("bash", "--noprofile", "--norc", "-c", script),
            env=dict(self.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
            timeout=timeout,
        )
        status, folder = self.state.read_text().splitlines()
        self.status, self.cwd = int(status), Path(folder)
        return self.documented(done.stdout)

    def real(self, text: str) -> str:
        """Documented paths, and values learned from earlier outputs, replaced by this run's."""
        for documented, real in self.to_real.items():
            text = text.replace(documented, real)
        return _swap(text, self.learned)

    def documented(self, text: str) -> str:
        """Real paths replaced by the documented ones."""
        for documented, real in sorted(self.to_real.items(), key=lambda kv: -len(kv[1])):
            text = text.replace(real, documented)
        return text

    def as_documented(self, text: str) -> str:
        """This run's values replaced by the documented ones they stand for, where as wide
        (so that table columns stay aligned): an output written back into the docs keeps the
        values later commands use."""
        same = {real: shown for shown, real in self.learned.items() if len(real) == len(shown)}
        return _swap(text, same)

    def write(self, target: str, text: str, *, append: bool = False) -> None:
        """Write (or append a YAML document to) a file, relative to the working folder."""
        path = self.cwd / self.real(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = self.real(text)
        if append and path.exists() and path.read_text().strip():
            body = path.read_text().rstrip("\n") + "\n---\n" + body
        path.write_text(body)


def _swap(text: str, values: Mapping[str, str]) -> str:
    if not values:
        return text
    pattern = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    return re.sub(rf"(?<![\w.])(?:{pattern})(?![\w])", lambda m: values[m.group()], text)
