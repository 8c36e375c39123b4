"""The whole desired state: every document by kind and name, and where each was declared.

A `DesiredState` is only ever built from a complete, valid set of documents (loading is
all-or-nothing), so the loop can keep the last good one. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from controller.spec.binding import Binding
from controller.spec.lane import Lane
from controller.spec.meta import Document, Metadata
from controller.spec.modelcatalog import ModelCatalog, ModelPrice
from controller.spec.thread import Thread
from controller.spec.triggerpolicy import TriggerPolicy
from controller.spec.workflow import Workflow, WorkflowRun
from controller.spec.workspace import Workspace

AnyDocument = (
    Workspace | Lane | Binding | Thread | TriggerPolicy | Workflow | WorkflowRun | ModelCatalog
)
KINDS: Mapping[str, type[AnyDocument]] = {
    model.model_fields["kind"].default: model
    for model in (
        Workspace,
        Lane,
        Binding,
        Thread,
        TriggerPolicy,
        Workflow,
        WorkflowRun,
        ModelCatalog,
    )
}
DEFAULT_WORKSPACE = "default"

_D = TypeVar("_D", bound=Document)


@dataclass(frozen=True, slots=True)
class Location:
    """Where a document was declared: display path and 1-based line."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


def _by_name(documents: Iterable[AnyDocument], kind: type[_D]) -> dict[str, _D]:
    found = sorted((d for d in documents if isinstance(d, kind)), key=lambda d: d.name)
    return {document.name: document for document in found}


@dataclass(frozen=True, slots=True)
class DesiredState:
    """Every declared document, by kind and then by name (sorted), plus their locations."""

    workspace: Workspace
    lanes: Mapping[str, Lane]
    bindings: Mapping[str, Binding]
    threads: Mapping[str, Thread]
    policies: Mapping[str, TriggerPolicy]
    workflows: Mapping[str, Workflow]
    catalogs: Mapping[str, ModelCatalog]
    locations: Mapping[tuple[str, str], Location] = field(default_factory=dict)
    runs: Mapping[str, WorkflowRun] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> DesiredState:
        """No documents at all: a default Workspace named `default` and nothing else."""
        return cls.build(())

    @classmethod
    def build(
        cls,
        documents: Iterable[AnyDocument],
        locations: Mapping[tuple[str, str], Location] | None = None,
    ) -> DesiredState:
        """Group already-validated documents; raises `ValueError` on a repeated (kind, name)."""
        documents = tuple(documents)
        keys = [(document.kind, document.name) for document in documents]
        if len(set(keys)) != len(keys):
            raise ValueError("documents repeat a (kind, name); loading reports this as a problem")
        workspaces = _by_name(documents, Workspace)
        if len(workspaces) > 1:
            raise ValueError("more than one Workspace; loading reports this as a problem")
        default = Workspace(metadata=Metadata(name=DEFAULT_WORKSPACE))
        return cls(
            workspace=next(iter(workspaces.values()), default),
            lanes=_by_name(documents, Lane),
            bindings=_by_name(documents, Binding),
            threads=_by_name(documents, Thread),
            policies=_by_name(documents, TriggerPolicy),
            workflows=_by_name(documents, Workflow),
            catalogs=_by_name(documents, ModelCatalog),
            locations=dict(locations or {}),
            runs=_by_name(documents, WorkflowRun),
        )

    def binding_of(self, participant: str) -> Binding | None:
        """The participant's Binding: the first that names it, if any (one wins for wakes,
        restarts and status alike)."""
        return next((b for b in self.bindings.values() if b.spec.participant == participant), None)

    def managed_participants(self) -> Mapping[str, Binding]:
        """Participant name to its Binding (``binding_of``), sorted by participant."""
        names = sorted({b.spec.participant for b in self.bindings.values()})
        return {name: binding for name in names if (binding := self.binding_of(name)) is not None}

    def bindings_of(self, lane: str) -> tuple[Binding, ...]:
        """The bindings on one lane, sorted by name; two or more make the lane shared."""
        return tuple(b for b in self.bindings.values() if b.spec.lane == lane)

    def models(self) -> Mapping[str, ModelPrice]:
        """Model name to its price and context window, across every catalog, sorted by name."""
        found = {m.name: m for c in self.catalogs.values() for m in c.spec.models}
        return dict(sorted(found.items()))

    def model_named(self, name: str) -> ModelPrice | None:
        """The model called ``name``, by its name or one of its aliases."""
        for model in self.models().values():
            if name == model.name or name in model.aliases:
                return model
        return None
