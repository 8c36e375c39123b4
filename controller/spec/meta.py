"""The vocabulary every kind shares: names, labels, durations, argv and the document header.

Validators here raise `ValueError` with a message a user can act on; `loading` turns them into
`path:line: message` problems. Pure: no I/O, no clock, no environment.
"""

from __future__ import annotations

import inspect
import math
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic._internal._docs_extraction import extract_docstrings_from_cls
from pydantic.alias_generators import to_camel

API_VERSION = "lanes/v1"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NAME_MAX_LENGTH = 63
DURATION_PATTERN = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d)?$"
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "": 1.0}
_DURATION_RE = re.compile(r"^(?P<number>[0-9]+(\.[0-9]+)?)(?P<unit>ms|s|m|h|d)?$")
_LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def _title(field_name: str, _info: object) -> str:
    return to_camel(field_name)


def describe_fields(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Give each property of a model's JSON Schema its field's docstring, as a description.

    Only `controller schema` needs them, so they are read from the source here, when a schema
    is generated, rather than by pydantic's `use_attribute_docstrings` at every start (reading
    and parsing the source of every model cost a command about 30 ms).
    """
    properties = schema.get("properties", {})
    docs: dict[type, dict[str, str]] = {}
    for name, info in model.model_fields.items():
        key = info.alias if info.alias in properties else name
        owner = next(c for c in model.__mro__ if name in inspect.get_annotations(c))
        if owner not in docs:
            docs[owner] = extract_docstrings_from_cls(owner, use_inspect=True)
        if key in properties and info.description is None and name in docs[owner]:
            properties[key].setdefault("description", docs[owner][name])


MODEL_CONFIG = ConfigDict(
    frozen=True,
    extra="forbid",
    strict=True,  # YAML is typed: `deaths: "5"` or `suspend: yes-please` are mistakes, not ints
    allow_inf_nan=False,
    alias_generator=to_camel,
    validate_by_name=True,
    validate_by_alias=True,
    field_title_generator=_title,
    json_schema_extra=describe_fields,
    # Validators are built on first use: a pass builds those of the kinds it reads (most
    # passes never validate a Workflow or a TriggerPolicy), not all of them at import.
    defer_build=True,
)


class SpecModel(BaseModel):
    """Base of every model in desired state: frozen, strict, camelCase in YAML."""

    model_config = MODEL_CONFIG


def check_name(value: str) -> str:
    """Return `value` if it is a lowercase DNS label, else raise `ValueError` saying why."""
    if len(value) > NAME_MAX_LENGTH or not re.fullmatch(NAME_PATTERN, value):
        raise ValueError(
            "must be a lowercase DNS label: at most 63 characters of a-z, 0-9 and '-', "
            f"starting and ending with a letter or digit (got {value!r})"
        )
    return value


Name = Annotated[
    str,
    AfterValidator(check_name),
    WithJsonSchema(
        {"type": "string", "pattern": NAME_PATTERN, "minLength": 1, "maxLength": NAME_MAX_LENGTH}
    ),
]


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        name = key.rpartition("/")[2]
        if not _LABEL_KEY_RE.fullmatch(key) or len(name) > NAME_MAX_LENGTH:
            raise ValueError(f"label key {key!r} must look like 'name' or 'prefix.example/name'")
        if not _LABEL_VALUE_RE.fullmatch(value) or len(value) > NAME_MAX_LENGTH:
            raise ValueError(
                f"label {key!r} has value {value!r}: at most 63 characters of letters, digits, "
                "'-', '_' and '.', starting and ending with a letter or digit"
            )
    return labels


Labels = Annotated[dict[str, str], AfterValidator(_check_labels)]


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as `500ms`, `20s`, `10m`, `12h`, `1d` or `30`."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(
            f"must be a duration such as 30, 500ms, 20s, 10m, 12h or 1d (got {value!r})"
        )
    if isinstance(value, str):
        match = _DURATION_RE.fullmatch(value)
        if match is None:
            raise ValueError(
                f"must be a duration such as 30, 500ms, 20s, 10m, 12h or 1d (got {value!r})"
            )
        value = float(match["number"]) * _UNIT_SECONDS[match["unit"] or ""]
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"must be a finite, non-negative duration (got {value!r})")
    return float(value)


def _parse_positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds == 0:
        raise ValueError(f"must be longer than zero (got {value!r})")
    return seconds


def _duration_schema(*, positive: bool) -> dict[str, Any]:
    number: dict[str, Any] = {"type": "number"}
    number["exclusiveMinimum" if positive else "minimum"] = 0
    return {"oneOf": [number, {"type": "string", "pattern": DURATION_PATTERN}]}


Duration = Annotated[
    float, BeforeValidator(parse_duration), WithJsonSchema(_duration_schema(positive=False))
]
PositiveDuration = Annotated[
    float,
    BeforeValidator(_parse_positive_duration),
    WithJsonSchema(_duration_schema(positive=True)),
]


def _refuse_shell_string(value: object) -> object:
    if isinstance(value, str):
        raise ValueError("must be an argv list such as [claude, --continue], never a shell string")
    return value


def _check_argv(argv: tuple[str, ...]) -> tuple[str, ...]:
    if not argv or not argv[0]:
        raise ValueError("must name a program: an argv list such as [claude, --continue]")
    for index, item in enumerate(argv):
        if "\x00" in item:
            raise ValueError(f"argv item {index} contains a NUL byte")
    return argv


Argv = Annotated[
    tuple[str, ...],
    BeforeValidator(_refuse_shell_string),
    AfterValidator(_check_argv),
    WithJsonSchema({"type": "array", "items": {"type": "string"}, "minItems": 1}),
]


def check_unique(names: tuple[str, ...], *, what: str) -> tuple[str, ...]:
    """Return `names` if no name repeats, else raise `ValueError` naming the first repeat."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} {name!r} is listed more than once")
        seen.add(name)
    return names


def _unique_names(names: tuple[str, ...]) -> tuple[str, ...]:
    return check_unique(names, what="name")


UniqueNames = Annotated[tuple[Name, ...], AfterValidator(_unique_names)]


def check_relative_path(value: str, *, what: str) -> str:
    """Return `value` if it is a relative path that cannot climb out, else raise `ValueError`."""
    parts = value.replace("\\", "/").split("/")
    if not value or value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", value):
        raise ValueError(f"{what} must be a relative path (got {value!r})")
    if ".." in parts:
        raise ValueError(f"{what} must not contain '..' (got {value!r})")
    if "\x00" in value:
        raise ValueError(f"{what} contains a NUL byte")
    return value


class Metadata(SpecModel):
    """Identity of a document: its name within its kind, and free-form labels."""

    name: Name
    """Lowercase DNS label, unique within the kind."""
    labels: Labels = Field(default_factory=dict)
    """Free-form `key: value` pairs; Workspace hosts select lanes by them."""


def _require_header(schema: dict[str, Any], model: type[BaseModel]) -> None:
    # Python callers may omit apiVersion and kind (they default); YAML authors may not.
    describe_fields(schema, model)
    required = set(schema.get("required", ())) | {"apiVersion", "kind", "metadata"}
    schema["required"] = sorted(required)


class Document(SpecModel):
    """Header shared by every kind: `apiVersion`, `kind`, `metadata`; subclasses add `spec`."""

    model_config = ConfigDict(json_schema_extra=_require_header)

    api_version: Literal["lanes/v1"] = "lanes/v1"
    """Always `lanes/v1`."""
    kind: str
    """The kind of document."""
    metadata: Metadata
    """Name and labels."""

    @property
    def name(self) -> str:
        """The document's `metadata.name`."""
        return self.metadata.name
