"""Texts of YAML files to a `DesiredState`, or every problem found, as `path:line: message`.

All-or-nothing: one problem anywhere and no state is returned, so a typo can never delete a
lane. YAML is composed to nodes (never constructed by PyYAML: no tags beyond plain data), then
converted here with the line of every key and list item. Pure: takes texts, never reads files.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from controller.spec import references
from controller.spec.meta import API_VERSION
from controller.spec.problems import FieldPath, Problem, nearest_line
from controller.spec.state import KINDS, AnyDocument, DesiredState, Location

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_TEXT_CHARS", "Problem", "load"]

MAX_NODES = 200_000
MAX_DEPTH = 64
MAX_TEXT_CHARS = 4_000_000
_TAG = "tag:yaml.org,2002:"
_SCALARS = {_TAG + name for name in ("str", "int", "float", "bool", "null")}
_TIMESTAMP = _TAG + "timestamp"  # an unquoted date stays the text the user wrote
_MERGE = _TAG + "merge"
_TOKEN_START = frozenset(" \t[{,:")  # where a quoted scalar may begin
# A line's indentation: white space and the block indicators (`- `, `? `, `: `) among it.
_INDENTATION = re.compile(r"(?:[ \t]|[-?:](?=[ \t]))*")
TABS = "tabs are not allowed for indentation; use spaces"
_READS_AS = {"int": "an integer", "float": "a number", "bool": "a boolean", "null": "null"}


@dataclass(frozen=True, slots=True)
class _Parsed:
    """One document as plain Python, with the 1-based line of every key and list item."""

    path: str
    line: int
    data: object
    lines: Mapping[FieldPath, int]


class _Abort(Exception):
    """A document too large or too deep to convert any further."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def load(texts: Mapping[str, str]) -> DesiredState | tuple[Problem, ...]:
    """Validate every document of every text as a whole; a state, or all problems sorted.

    `texts` maps a display path (such as `desired/lanes.yaml`) to its text. Files may hold many
    documents separated by `---`; empty documents are skipped. Problems cover YAML syntax,
    unsupported tags, duplicate keys, hostile sizes, headers, fields, duplicates across files
    and cross-references (checked only once every document is valid on its own).
    """
    problems: list[Problem] = []
    parsed: list[_Parsed] = []
    for path in sorted(texts):
        documents, found = _parse_file(path, texts[path])
        parsed.extend(documents)
        problems.extend(found)
    validated = [(doc, _validate(doc)) for doc in parsed]
    problems.extend(p for _, result in validated if isinstance(result, list) for p in result)
    good = [(doc, result) for doc, result in validated if not isinstance(result, list)]
    problems.extend(_duplicates(good))
    if problems:
        return tuple(sorted(set(problems)))
    return _assemble(good)


def _assemble(good: list[tuple[_Parsed, AnyDocument]]) -> DesiredState | tuple[Problem, ...]:
    locations: dict[tuple[str, str], Location] = {
        (d.kind, d.name): Location(p.path, p.line) for p, d in good
    }
    state = DesiredState.build((d for _, d in good), locations)
    fields: references.FieldLines = {(d.kind, d.name): p.lines for p, d in good}
    return references.check(state, fields=fields) or state


# --- YAML text to plain Python, with lines ---------------------------------------------------


def _parse_file(path: str, text: str) -> tuple[list[_Parsed], list[Problem]]:
    if len(text) > MAX_TEXT_CHARS:
        return [], [Problem(path, 1, f"file too large: over {MAX_TEXT_CHARS} characters")]
    problem = _scan(path, text)
    if problem is not None:
        return [], [problem]
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except (yaml.YAMLError, UnicodeError) as error:
        return [], [_yaml_problem(error, path=path, text=text)]
    documents: list[_Parsed] = []
    problems: list[Problem] = []
    for node in nodes:
        if isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "null":
            continue  # an empty document
        converted = _convert(node, path=path)
        if isinstance(converted, _Parsed):
            documents.append(converted)
        else:
            problems.extend(converted)
    return documents, problems


def _scan(path: str, text: str) -> Problem | None:
    # libyaml's composer recurses in C: deep enough nesting crashes the interpreter, so the
    # depth is checked on the (iterative) event stream before anything is composed. The
    # scanner reads a whole line ahead of the events, though (a simple key cannot span lines),
    # and PyYAML 6.0.4 stops at 1000 levels of its own: one line is measured first, so our
    # bound acts before PyYAML's whatever its version.
    line = _deepest_line(text)
    if line is not None:
        return Problem(path, line, f"nesting deeper than {MAX_DEPTH} levels")
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line = 1 if event.start_mark is None else int(event.start_mark.line) + 1
                    return Problem(path, line, f"nesting deeper than {MAX_DEPTH} levels")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except (yaml.YAMLError, UnicodeError) as error:
        return _yaml_problem(error, path=path, text=text)
    return None


def _deepest_line(text: str) -> int | None:
    """The first line that alone opens more than ``MAX_DEPTH`` levels.

    Brackets outside quotes and comments count, plus the ``- `` and ``? `` indicators that
    start the line. Levels opened on earlier lines are the event stream's to count: the
    scanner never runs further ahead than one line, so PyYAML never sees more than twice our
    bound. (Should this lexer ever count too few, PyYAML's own limit is reported in our words.)
    """
    for number, row in enumerate(text.splitlines(), start=1):
        if row.count("[") + row.count("{") + row.count("- ") + row.count("? ") <= MAX_DEPTH:
            continue  # the common case, decided without a loop over the characters
        if _opens(row) > MAX_DEPTH:
            return number
    return None


def _opens(row: str) -> int:
    body = row.lstrip(" ")
    depth = 0
    while body[:2] in ("- ", "? "):
        depth += 1
        body = body[2:].lstrip(" ")
    deepest = current = 0
    quote, previous = "", " "
    for char in body:
        if quote:
            quote = "" if char == quote and previous != "\\" else quote
        elif char in "'\"" and previous in _TOKEN_START:
            quote = char
        elif char == "#" and previous in " \t":
            break  # a comment
        elif char in "[{":
            current += 1
            deepest = max(deepest, current)
        elif char in "]}":
            current = max(0, current - 1)
        previous = char
    return depth + deepest


def _yaml_problem(error: yaml.YAMLError | UnicodeError, *, path: str, text: str) -> Problem:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        context = f" ({error.context})" if error.context else ""
        # libyaml may point past the last line (at the end of the stream): clamp to the text.
        last = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
        line = 1 if mark is None else min(int(mark.line) + 1, last)
        if "nesting depth" in str(error.problem):  # PyYAML's own, lower-level bound
            return Problem(path, line, f"nesting deeper than {MAX_DEPTH} levels")
        if _tab_indented(text, line) or "tab character" in str(error.problem):
            return Problem(path, line, TABS)
        return Problem(path, line, f"invalid YAML: {error.problem}{context}")
    if isinstance(error, yaml.reader.ReaderError):
        line = text.count("\n", 0, error.position) + 1
        return Problem(
            path, line, f"invalid YAML: character #x{error.character:04x} is not allowed"
        )
    if isinstance(error, UnicodeEncodeError):
        line = text.count("\n", 0, error.start) + 1
        return Problem(path, line, f"invalid text: {error.reason}")
    # Loading only raises marked errors, reader errors and encode errors; never crash anyway.
    return Problem(path, 1, f"invalid YAML: {error}")  # pragma: no cover


def _tab_indented(text: str, line: int) -> bool:
    """Whether a tab is in the indentation of ``line`` (1-based). PyYAML words this several
    ways ("cannot start any token", "violates indentation"), all meaning the same mistake."""
    rows = text.splitlines()
    row = rows[line - 1] if 0 < line <= len(rows) else ""
    indentation = _INDENTATION.match(row)
    return indentation is not None and "\t" in indentation.group()


def _convert(node: yaml.Node, *, path: str) -> _Parsed | list[Problem]:
    try:
        _Measure(_line(node)).size(node, 0)
    except _Abort as abort:
        return [Problem(path, abort.line, abort.message)]
    converter = _Converter(path)
    data = converter.value(node, ())
    if converter.problems:
        return converter.problems
    return _Parsed(path, _line(node), data, converter.lines)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _unsupported(tag: str) -> str:
    plain = "strings, numbers, booleans, null, lists and mappings"
    return f"unsupported YAML tag {_short(tag)!r}: only {plain} are allowed"


class _Measure:
    """Size and height of a document once its aliases are expanded, without expanding them.

    Composed nodes share aliased children, so each distinct node is measured once: a billion
    laughs costs as much as its text. An anchor used inside itself would expand forever.
    """

    def __init__(self, root_line: int) -> None:
        self.root_line = root_line
        self.known: dict[int, tuple[int, int]] = {}  # id(node) -> (size, height)
        self.open: set[int] = set()

    def size(self, node: yaml.Node, depth: int) -> tuple[int, int]:
        if isinstance(node, yaml.ScalarNode):
            return 1, 0
        if id(node) in self.open:
            raise _Abort(_line(node), "recursive alias: an anchor is used inside itself")
        if id(node) not in self.known:
            # An alias always points back at a node measured earlier, so this recursion only
            # follows the text's nesting, which `_scan` has already bounded.
            self.open.add(id(node))
            measured = [self.size(child, depth + 1) for child in _children(node)]
            self.open.discard(id(node))
            height = 1 + max((h for _, h in measured), default=0)
            self.known[id(node)] = (1 + sum(s for s, _ in measured), height)
        size, height = self.known[id(node)]
        if depth + height > MAX_DEPTH:
            raise _Abort(_line(node), f"nesting deeper than {MAX_DEPTH} levels")
        if size > MAX_NODES:
            raise _Abort(self.root_line, "document too large or too deeply aliased")
        return size, height


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return list(node.value)


class _Converter:
    """Turns one composed, measured document into dicts, tuples and scalars, with lines."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines: dict[FieldPath, int] = {}
        self.problems: list[Problem] = []
        self.constructor = yaml.constructor.SafeConstructor()

    def value(self, node: yaml.Node, at: FieldPath) -> object:
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, at)
        if isinstance(node, yaml.SequenceNode):
            return self.sequence(node, at)
        return self.scalar(node)

    def problem(self, node: yaml.Node, message: str) -> None:
        self.problems.append(Problem(self.path, _line(node), message))

    def expect_tag(self, node: yaml.Node, name: str) -> None:
        if node.tag != _TAG + name:
            self.problem(node, _unsupported(node.tag))

    def scalar(self, node: yaml.Node) -> object:
        if node.tag in _SCALARS:
            return self.constructor.construct_object(node)
        if node.tag == _TIMESTAMP:
            return str(node.value)
        self.problem(node, _unsupported(node.tag))
        return None

    def sequence(self, node: yaml.SequenceNode, at: FieldPath) -> tuple[object, ...]:
        self.expect_tag(node, "seq")
        items: list[object] = []
        for index, item in enumerate(node.value):
            self.lines[(*at, index)] = _line(item)
            items.append(self.value(item, (*at, index)))
        return tuple(items)

    def mapping(self, node: yaml.MappingNode, at: FieldPath) -> dict[str, object]:
        self.expect_tag(node, "map")
        result = self.merged(node, at)
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = None if key_node.tag == _MERGE else self.key(key_node)
            if key is not None and key in first:
                message = f"duplicate key {key!r} (first at line {first[key]})"
                self.problem(key_node, message)
            elif key is not None:
                first[key] = self.lines[(*at, key)] = _line(key_node)
                result[key] = self.value(value_node, (*at, key))
        return result

    def merged(self, node: yaml.MappingNode, at: FieldPath) -> dict[str, object]:
        # `<<: *base` (or a list of them): explicit keys win, earlier sources win over later.
        result: dict[str, object] = {}
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                continue
            many = isinstance(value_node, yaml.SequenceNode)
            for source in reversed(value_node.value) if many else [value_node]:
                value = self.value(source, at)
                if not isinstance(value, dict):
                    self.problem(source, "a merge key '<<' takes a mapping or a list of them")
                    continue
                result.update(value)
        return result

    def key(self, node: yaml.Node) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "str":
            return str(node.value)
        if isinstance(node, yaml.ScalarNode):
            reads_as = _READS_AS.get(node.tag.removeprefix(_TAG), _short(node.tag))
            message = f"mapping key {node.value!r} is not a string (YAML reads it as {reads_as})"
            self.problem(node, message + "; quote it")
        else:
            self.problem(node, "mapping keys must be plain strings, not lists or mappings")
        return None


# --- plain Python to models -------------------------------------------------------------------


def _validate(doc: _Parsed) -> AnyDocument | list[Problem]:
    data = doc.data
    if not isinstance(data, dict):
        what = "a list" if isinstance(data, tuple) else f"{type(data).__name__} {data!r:.40}"
        message = "a document must be a mapping with apiVersion, kind, metadata and spec"
        return [Problem(doc.path, doc.line, f"{message}; got {what}")]
    header = _header_problems(doc, data)
    if header:
        return header
    model = KINDS[data["kind"]]
    try:
        return model.model_validate(data, by_name=False)
    except ValidationError as error:
        details = _meaningful(error.errors(include_url=False))
        return [_field_problem(doc, detail, model=model) for detail in details]


def _meaningful(details: list[ErrorDetails]) -> list[ErrorDetails]:
    # A list whose items failed also reports "too short" (it counts the valid items): noise.
    def inside(outer: ErrorDetails) -> bool:
        loc = tuple(outer["loc"])
        return any(tuple(d["loc"])[: len(loc)] == loc and d is not outer for d in details)

    return [d for d in details if not (d["type"] == "too_short" and inside(d))]


def _header_problems(doc: _Parsed, data: Mapping[str, Any]) -> list[Problem]:
    found: list[Problem] = []
    version, kind = data.get("apiVersion"), data.get("kind")
    if version != API_VERSION:
        got = (
            "missing apiVersion" if version is None else f"apiVersion {version!r} is not supported"
        )
        found.append(_at(doc, f"{got}; use apiVersion: {API_VERSION}", field=("apiVersion",)))
    if not isinstance(kind, str) or kind not in KINDS:
        found.append(_at(doc, _kind_message(kind), field=("kind",)))
    return found


def _kind_message(kind: object) -> str:
    valid = ", ".join(sorted(KINDS))
    if kind is None:
        return f"missing kind; valid kinds: {valid}"
    return f"unknown kind {kind!r}{_did_you_mean(str(kind), sorted(KINDS))}; valid kinds: {valid}"


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    if to_camel(word) in choices and to_camel(word) != word:
        return f" (did you mean {to_camel(word)!r}?)"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _at(doc: _Parsed, message: str, *, field: FieldPath) -> Problem:
    return Problem(doc.path, nearest_line(doc.lines, field, default=doc.line), message)


def _field_problem(doc: _Parsed, detail: ErrorDetails, *, model: type[BaseModel]) -> Problem:
    kind = model.model_fields["kind"].default
    loc = tuple(detail["loc"])
    if detail["type"] == "extra_forbidden":
        return _at(doc, _unknown_field(model, loc), field=loc)
    return _at(doc, f"{kind} {dotted(loc)}: {_explain(detail)}", field=loc)


def _unknown_field(model: type[BaseModel], loc: FieldPath) -> str:
    parent, key = loc[:-1], str(loc[-1])
    where = f"{model.model_fields['kind'].default} {dotted(parent)}".rstrip()
    valid = _fields_at(model, parent)
    hint = _did_you_mean(key, valid) or f"; valid fields: {', '.join(valid)}"
    return f"unknown field {key!r} in {where}{hint}"


_REWORDED = {
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "tuple_type": "must be a list",
    "missing": "required field is missing",
}


def _explain(detail: ErrorDetails) -> str:
    kind, value = detail["type"], detail.get("input")
    message = _REWORDED.get(kind) or detail["msg"]
    if kind == "too_short":
        return f"must have at least {detail.get('ctx', {}).get('min_length')} item(s)"
    message = message.removeprefix("Value error, ")
    message = re.sub(r"^(Input|String|Tuple|Dictionary) should ", "must ", message)
    if kind in {"value_error", "missing"} or not isinstance(value, str | int | float | None):
        return message
    return f"{message} (got {_show(value)})"


def _show(value: str | int | float | None) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def dotted(loc: FieldPath) -> str:
    """A field path as users read it: `spec.tasks[0].dependsOn`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.removeprefix(".")


def _fields_at(model: type[BaseModel], loc: FieldPath) -> list[str]:
    # Follows field names through nested models; a list index stays on the item's model.
    for part in loc:
        if isinstance(part, str):
            fields = {field.alias or name: field for name, field in model.model_fields.items()}
            model = _model_in(fields[part].annotation)
    return sorted(field.alias or name for name, field in model.model_fields.items())


def _model_in(annotation: object) -> type[BaseModel]:
    # Only models forbid extra keys, and every field holding one is X, X | None or tuple[X, ...].
    options = (annotation, *get_args(annotation))
    return next(o for o in options if isinstance(o, type) and issubclass(o, BaseModel))


def _duplicates(good: list[tuple[_Parsed, AnyDocument]]) -> list[Problem]:
    first: dict[tuple[str, str], _Parsed] = {}
    workspace: tuple[_Parsed, str] | None = None
    found: list[Problem] = []
    for doc, document in good:
        key = (document.kind, document.name)
        if key in first:
            where = f"{first[key].path}:{first[key].line}"
            message = f"duplicate {document.kind} {document.name!r}: already declared at {where}"
            found.append(Problem(doc.path, doc.line, message))
            continue
        first[key] = doc
        if document.kind == "Workspace" and workspace is not None:
            where = f"{workspace[0].path}:{workspace[0].line}"
            message = f"more than one Workspace: {document.name!r} and {workspace[1]!r} ({where})"
            found.append(Problem(doc.path, doc.line, message + "; declare at most one"))
        elif document.kind == "Workspace":
            workspace = (doc, document.name)
    return found
