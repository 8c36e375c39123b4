"""JSON Schema for every kind, generated from the models, for editors and CI.

`render()` returns file name to text; `controller schema` writes them to `schemas/` and a test
checks the checked-in files are current. Pure: never writes anything itself.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from controller.spec.state import KINDS

DIALECT = "https://json-schema.org/draft/2020-12/schema"
COMBINED = "lanes-v1.json"


def file_name(kind: str) -> str:
    """The schema file of one kind: `lane.json`, `triggerpolicy.json`."""
    return f"{kind.lower()}.json"


def render() -> dict[str, str]:
    """File name to JSON text: one file per kind, plus `lanes-v1.json` accepting any kind."""
    files = {file_name(kind): _text(_kind_schema(kind)) for kind in sorted(KINDS)}
    files[COMBINED] = _text(_combined_schema())
    return dict(sorted(files.items()))


def _kind_schema(kind: str) -> dict[str, Any]:
    schema = KINDS[kind].model_json_schema(by_alias=True)
    return {"$schema": DIALECT, **schema, "title": f"lanes/v1 {kind}"}


def _combined_schema() -> dict[str, Any]:
    mode: Literal["validation"] = "validation"
    models: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (KINDS[kind], mode) for kind in sorted(KINDS)
    ]
    refs, schema = models_json_schema(models, by_alias=True)
    one_of = [refs[model] for model in models]
    title = "lanes/v1 desired state document (any kind)"
    return {"$schema": DIALECT, "title": title, "oneOf": one_of, **schema}


def _text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
