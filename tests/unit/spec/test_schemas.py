from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.spec import schemas
from controller.spec.binding import BindingSpec
from controller.spec.state import KINDS

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
RENDERED = schemas.render()


def test_checked_in_schemas_are_current() -> None:
    # The one file read of the unit suite: regenerate with `controller schema` when this fails.
    on_disk = {path.name: path.read_text(encoding="utf-8") for path in SCHEMAS.glob("*.json")}
    assert on_disk == RENDERED


def test_one_file_per_kind_plus_the_combined_one() -> None:
    expected = {f"{kind.lower()}.json" for kind in KINDS} | {"lanes-v1.json"}
    assert set(RENDERED) == expected


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_kind_schema_shape(kind: str) -> None:
    schema = json.loads(RENDERED[schemas.file_name(kind)])
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == f"lanes/v1 {kind}"
    assert schema["additionalProperties"] is False
    assert {"apiVersion", "kind", "metadata"} <= set(schema["required"])
    assert schema["properties"]["kind"]["const"] == kind
    assert schema["properties"]["apiVersion"]["const"] == "lanes/v1"


def test_combined_schema_accepts_any_kind() -> None:
    combined = json.loads(RENDERED["lanes-v1.json"])
    assert sorted(ref["$ref"] for ref in combined["oneOf"]) == sorted(
        f"#/$defs/{kind}" for kind in KINDS
    )
    assert all(kind in combined["$defs"] for kind in KINDS)


def test_schema_fields_are_camel_case_with_shared_shapes() -> None:
    binding = json.loads(RENDERED["binding.json"])["$defs"]["BindingSpec"]["properties"]
    assert {"crashLoop", "stopGraceSeconds"} <= set(binding)
    assert binding["command"] == {
        "description": "Program and arguments, e.g. `[claude]`; started in the lane's worktree.",
        "items": {"type": "string"},
        "minItems": 1,
        "title": "command",
        "type": "array",
    }
    grace = binding["stopGraceSeconds"]
    assert grace["oneOf"][1]["pattern"] == r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d)?$"
    assert grace["default"] == 10.0


def test_text_is_stable_json() -> None:
    for text in RENDERED.values():
        assert text.endswith("}\n")
        assert (
            json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            == text
        )


def test_field_docstrings_are_read_for_schemas_only() -> None:
    # Not at import (it cost every command about 30 ms), yet every schema describes its fields.
    assert BindingSpec.model_fields["command"].description is None
    binding = json.loads(RENDERED["binding.json"])["$defs"]["BindingSpec"]["properties"]
    assert binding["command"]["description"].startswith("Program and arguments")
