"""The ModelCatalog kind: context windows and prices of the models workflows may use.

The budget enforcer prices every dispatch from these numbers. Pure: no I/O.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from controller.spec import meta

_MODEL = r"^[^\s\x00]+$"
DEFAULT_OUTPUT_TOKENS = 8192


class ModelPrice(meta.SpecModel):
    """One model's context window and prices per million tokens."""

    name: str = Field(min_length=1, max_length=200, pattern=_MODEL)
    """Model name as tasks refer to it, e.g. `sonnet`."""
    context_window: int = Field(gt=0)
    """Tokens the model accepts; larger contexts are compacted."""
    input_per_m_tok: float = Field(ge=0)
    """Price in USD per million input tokens."""
    output_per_m_tok: float = Field(ge=0)
    """Price in USD per million output tokens."""
    max_output_tokens: int | None = Field(default=None, gt=0)
    """Tokens one task's answer may take, reserved from the budget and from the window;
    default 8192, or half the window when that is smaller."""
    cache_read_per_m_tok: float | None = Field(default=None, ge=0)
    """Price per million cache-read tokens; default a tenth of the input price."""
    cache_write_per_m_tok: float | None = Field(default=None, ge=0)
    """Price per million cache-write tokens; default 1.25 times the input price."""
    aliases: tuple[Annotated[str, Field(min_length=1, max_length=200, pattern=_MODEL)], ...] = ()
    """Other names of the model, as agents report them (e.g. `claude-sonnet-4-5`)."""

    @model_validator(mode="after")
    def _window_holds_the_answer(self) -> ModelPrice:
        if self.max_output_tokens is not None and self.max_output_tokens >= self.context_window:
            raise ValueError(
                f"model {self.name!r}: maxOutputTokens ({self.max_output_tokens}) must be "
                f"smaller than contextWindow ({self.context_window})"
            )
        meta.check_unique((self.name, *self.aliases), what="model name or alias")
        return self

    @property
    def output_tokens(self) -> int:
        """The effective `maxOutputTokens`."""
        if self.max_output_tokens is not None:
            return self.max_output_tokens
        return max(1, min(DEFAULT_OUTPUT_TOKENS, self.context_window // 2))


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
