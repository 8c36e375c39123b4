"""The ModelCatalog kind: context windows and prices of the models workflows may use.

The budget enforcer prices every dispatch from these numbers. Pure: no I/O.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from controller.spec import meta


class ModelPrice(meta.SpecModel):
    """One model's context window and prices per million tokens."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\s\x00]+$")
    """Model name as tasks refer to it, e.g. `sonnet`."""
    context_window: int = Field(gt=0)
    """Tokens the model accepts; larger contexts are compacted."""
    input_per_m_tok: float = Field(ge=0)
    """Price in USD per million input tokens."""
    output_per_m_tok: float = Field(ge=0)
    """Price in USD per million output tokens."""


class ModelCatalogSpec(meta.SpecModel):
    """A list of models."""

    models: tuple[ModelPrice, ...] = Field(min_length=1)
    """The models; names are unique across every catalog."""

    @field_validator("models")
    @classmethod
    def _unique(cls, models: tuple[ModelPrice, ...]) -> tuple[ModelPrice, ...]:
        meta.check_unique(tuple(model.name for model in models), what="model")
        return models


class ModelCatalog(meta.Document):
    """Models with context windows and prices, for workflows."""

    kind: Literal["ModelCatalog"] = "ModelCatalog"
    """Always `ModelCatalog`."""
    spec: ModelCatalogSpec
    """The models."""
