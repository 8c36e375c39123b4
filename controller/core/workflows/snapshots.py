"""A Workflow and the catalogs, frozen into a run's snapshot; and the template's hash.

A run keeps the resolved tasks and prices it was created with: editing the Workflow (or a
price) later never changes a run in progress, and `runs show` reports the drift by comparing
hashes. Pure.
"""

from __future__ import annotations

import hashlib
import json

from controller.core.workflows import model
from controller.spec.modelcatalog import ModelPrice
from controller.spec.state import DesiredState
from controller.spec.workflow import Task, Workflow


def template_hash(workflow: Workflow, desired: DesiredState) -> str:
    """A digest of the workflow's spec and the prices of the models its tasks use."""
    used = sorted({_model(desired, task.model).name for task in workflow.spec.tasks})
    spec = workflow.spec.model_dump(mode="json", by_alias=True)
    if not spec.get("hosts"):
        spec.pop("hosts", None)  # unset: hashes as before the field existed (no false drift)
    material = {
        "spec": spec,
        "models": [_model(desired, name).model_dump(mode="json", by_alias=True) for name in used],
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def snapshot(workflow: Workflow, desired: DesiredState) -> model.RunSnapshot:
    """Freeze ``workflow`` (validated: every model exists) with the prices it uses now."""
    spec = workflow.spec
    used = {_model(desired, task.model) for task in spec.tasks}
    prices = {price.name: _price(price) for price in used}
    budget = spec.budget
    return model.RunSnapshot(
        workflow=workflow.name,
        template_hash=template_hash(workflow, desired),
        tasks=tuple(_task(task, desired) for task in spec.tasks),
        models=dict(sorted(prices.items())),
        max_parallel=spec.max_parallel,
        fail_fast=spec.fail_fast,
        active_deadline=spec.active_deadline,
        budget=model.BudgetSpec(
            max_tokens=budget.max_tokens if budget else None,
            max_cost_usd=budget.max_cost_usd if budget else None,
        ),
        hosts=tuple(spec.hosts),
    )


def _model(desired: DesiredState, name: str) -> ModelPrice:
    found = desired.model_named(name)
    if found is None:  # references were checked when desired state was loaded
        raise KeyError(f"model {name!r} is not declared")
    return found


def _price(price: ModelPrice) -> model.ModelSpec:
    return model.ModelSpec(
        name=price.name,
        context_window=price.context_window,
        max_output_tokens=price.output_tokens,
        input_per_mtok=price.input_per_m_tok,
        output_per_mtok=price.output_per_m_tok,
        aliases=price.aliases,
        cache_read_per_mtok=price.cache_read_per_m_tok,
        cache_write_per_mtok=price.cache_write_per_m_tok,
    )


def _task(task: Task, desired: DesiredState) -> model.TaskSpec:
    return model.TaskSpec(
        name=task.name,
        model=_model(desired, task.model).name,
        command=tuple(task.command),
        prompt=task.prompt,
        depends_on=tuple(task.depends_on),
        outputs=tuple(task.outputs),
        usage=model.UsageFormat(task.usage),
        timeout=task.timeout,
        retry_limit=task.retries.limit,
        retry_backoff=task.retries.backoff,
        priority=task.priority,
        base=task.base,
        runtime=task.runtime,
        env=tuple(sorted(task.env.items())),
    )
