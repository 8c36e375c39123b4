"""Cross-document checks: names that must exist, things that must be unique, DAGs without cycles.

Run by `loading` once every document is valid on its own. Each problem is located at the
referencing field when its line is known, else at the referencing document. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from controller.spec.meta import Document
from controller.spec.problems import FieldPath, Problem, nearest_line
from controller.spec.state import DesiredState, Location
from controller.spec.workflow import Workflow
from controller.spec.workspace import owners

FieldLines = Mapping[tuple[str, str], Mapping[FieldPath, int]]
_NOWHERE = Location("<unknown>", 0)


def check(state: DesiredState, *, fields: FieldLines | None = None) -> tuple[Problem, ...]:
    """Every cross-reference problem of `state`, sorted; empty when the references hold.

    `fields` maps (kind, name) to the line of each field path of that document, as loading
    records them; without it, problems point at the documents' own lines.
    """
    at = _Locator(state.locations, fields or {})
    found = [
        *_lane_problems(state, at),
        *_binding_problems(state, at),
        *_policy_problems(state, at),
        *_catalog_problems(state, at),
        *_workflow_problems(state, at),
        *_run_problems(state, at),
        *_host_problems(state, at),
    ]
    return tuple(sorted(set(found)))


@dataclass(frozen=True, slots=True)
class _Locator:
    locations: Mapping[tuple[str, str], Location]
    fields: FieldLines

    def __call__(self, document: Document, message: str, *, field: FieldPath = ()) -> Problem:
        key = (document.kind, document.name)
        where = self.locations.get(key, _NOWHERE)
        line = nearest_line(self.fields.get(key, {}), field, default=where.line)
        return Problem(where.path, line, message)


def _listing(what: str, names: Mapping[str, object]) -> str:
    if not names:
        return f"no {what} are declared"
    shown = sorted(names)
    more = f" and {len(shown) - 10} more" if len(shown) > 10 else ""
    return f"declared {what}: {', '.join(shown[:10])}{more}"


def _lane_problems(state: DesiredState, at: _Locator) -> Iterator[Problem]:
    owner: dict[str, str] = {}
    for lane in state.lanes.values():
        branch = lane.branch
        if branch in owner:
            message = f"lane {lane.name!r} uses branch {branch!r}, already used by lane "
            yield at(lane, message + repr(owner[branch]), field=("spec", "branch"))
            continue
        owner[branch] = lane.name
    for branch, name in owner.items():
        for prefix in _ref_folders(branch):
            if prefix in owner:
                message = f"lane {name!r} uses branch {branch!r}, which git cannot create next "
                message += f"to branch {prefix!r} of lane {owner[prefix]!r}"
                yield at(state.lanes[name], message, field=("spec", "branch"))


def _ref_folders(branch: str) -> list[str]:
    # git stores refs as paths: `a/b` cannot exist next to `a`.
    parts = branch.split("/")
    return ["/".join(parts[:end]) for end in range(1, len(parts))]


def _binding_problems(state: DesiredState, at: _Locator) -> Iterator[Problem]:
    bound: dict[str, str] = {}
    for binding in state.bindings.values():
        lane, participant = binding.spec.lane, binding.spec.participant
        if lane not in state.lanes:
            message = f"binding {binding.name!r} names lane {lane!r}, which is not declared; "
            message += _listing("lanes", state.lanes)
            yield at(binding, message, field=("spec", "lane"))
        if participant in bound:
            message = f"participant {participant!r} is bound by bindings {bound[participant]!r} "
            message += f"and {binding.name!r}; a participant runs in exactly one binding"
            yield at(binding, message, field=("spec", "participant"))
        bound.setdefault(participant, binding.name)


def _policy_problems(state: DesiredState, at: _Locator) -> Iterator[Problem]:
    members = {p for thread in state.threads.values() for p in thread.spec.participants}
    known = members | set(state.managed_participants())
    for policy in state.policies.values():
        for index, thread in enumerate(policy.spec.threads or ()):
            if thread not in state.threads:
                message = f"trigger policy {policy.name!r} names thread {thread!r}, which is not "
                message += "declared; " + _listing("threads", state.threads)
                yield at(policy, message, field=("spec", "threads", index))
        for index, participant in enumerate(policy.spec.participants or ()):
            if participant not in known:
                message = f"trigger policy {policy.name!r} names participant {participant!r}, "
                message += "which is neither bound by a Binding nor a member of any Thread"
                yield at(policy, message, field=("spec", "participants", index))


def _catalog_problems(state: DesiredState, at: _Locator) -> Iterator[Problem]:
    declared: dict[str, str] = {}
    for catalog in state.catalogs.values():
        for index, model in enumerate(catalog.spec.models):
            if model.name in declared:
                message = f"model {model.name!r} is declared by catalogs "
                message += f"{declared[model.name]!r} and {catalog.name!r}; declare it once"
                yield at(catalog, message, field=("spec", "models", index, "name"))
            declared.setdefault(model.name, catalog.name)
    yield from _alias_problems(state, at, declared)


def _alias_problems(
    state: DesiredState, at: _Locator, names: Mapping[str, str]
) -> Iterator[Problem]:
    owner: dict[str, str] = {}
    for catalog in state.catalogs.values():
        for index, model in enumerate(catalog.spec.models):
            for position, alias in enumerate(model.aliases):
                taken = owner.get(alias) or (alias if alias in names else None)
                if taken is not None and taken != model.name:
                    message = f"alias {alias!r} of model {model.name!r} already names model "
                    message += f"{taken!r}; a name or alias means one model"
                    yield at(catalog, message, field=("spec", "models", index, "aliases", position))
                owner.setdefault(alias, model.name)


def _workflow_problems(state: DesiredState, at: _Locator) -> Iterator[Problem]:
    models = state.models()
    for workflow in state.workflows.values():
        yield from _dependency_problems(workflow, at)
        for index, task in enumerate(workflow.spec.tasks):
            if state.model_named(task.model) is None:
                message = f"workflow {workflow.name!r}: task {task.name!r} uses model "
                message += f"{task.model!r}, which no ModelCatalog declares; "
                message += _listing("models", models)
                yield at(workflow, message, field=("spec", "tasks", index, "model"))


def _run_problems(state: DesiredState, at: _Locator) -> Iterator[Problem]:
    for run in state.runs.values():
        if run.spec.workflow not in state.workflows:
            message = f"workflow run {run.name!r} names workflow {run.spec.workflow!r}, which is "
            message += "not declared; " + _listing("workflows", state.workflows)
            yield at(run, message, field=("spec", "workflow"))


def _dependency_problems(workflow: Workflow, at: _Locator) -> Iterator[Problem]:
    tasks = {task.name: index for index, task in enumerate(workflow.spec.tasks)}
    for index, task in enumerate(workflow.spec.tasks):
        for position, needed in enumerate(task.depends_on):
            if needed not in tasks:
                message = f"workflow {workflow.name!r}: task {task.name!r} depends on {needed!r}, "
                message += "which is not a task of this workflow; " + _listing("tasks", tasks)
                yield at(workflow, message, field=("spec", "tasks", index, "dependsOn", position))
    graph = {task.name: task.depends_on for task in workflow.spec.tasks}
    for cycle in find_cycles(graph):
        message = f"workflow {workflow.name!r} has a dependency cycle: {' -> '.join(cycle)}"
        yield at(workflow, message, field=("spec", "tasks", tasks[cycle[0]], "dependsOn"))


def find_cycles(graph: Mapping[str, tuple[str, ...]]) -> tuple[tuple[str, ...], ...]:
    """Cycles of a dependency graph, each once, from its smallest name back to it: `(a, b, a)`.

    Edges to names outside `graph` are ignored. Iterative, so a long chain cannot exhaust the
    stack. Every strongly connected component with a cycle yields at least one cycle.
    """
    done: set[str] = set()
    cycles: set[tuple[str, ...]] = set()
    for root in sorted(graph):
        if root not in done:
            cycles |= _cycles_from(root, graph, done=done)
    return tuple(sorted(cycles))


def _cycles_from(
    root: str, graph: Mapping[str, tuple[str, ...]], *, done: set[str]
) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    path, on_path, stack = [root], {root}, [iter(sorted(graph[root]))]
    while stack:
        following = next(stack[-1], None)
        if following is None:
            done.add(path[-1])
            on_path.discard(path.pop())
            stack.pop()
        elif following in on_path:
            found.add(_rotated(path[path.index(following) :]))
        elif following in graph and following not in done:
            path.append(following)
            on_path.add(following)
            stack.append(iter(sorted(graph[following])))
    return found


def _rotated(loop: list[str]) -> tuple[str, ...]:
    start = loop.index(min(loop))
    ring = loop[start:] + loop[:start]
    return (*ring, ring[0])


def _host_problems(state: DesiredState, at: _Locator) -> Iterator[Problem]:
    workspace = state.workspace
    url = workspace.spec.state_url
    if workspace.spec.hosts and url is not None and url.startswith("sqlite"):
        message = "hosts share one PostgreSQL store: stateUrl must be postgresql://... "
        message += "(a SQLite file is one machine's), or remove hosts"
        yield at(workspace, message, field=("spec", "stateUrl"))
    for index, host in enumerate(workspace.spec.hosts):
        for position, lane in enumerate(host.lanes):
            if lane not in state.lanes:
                message = f"workspace host {host.name!r} names lane {lane!r}, which is not "
                message += "declared; " + _listing("lanes", state.lanes)
                yield at(workspace, message, field=("spec", "hosts", index, "lanes", position))
    for declared in state.lanes.values():
        hosts = owners(workspace, declared)
        if len(hosts) > 1:
            message = f"lane {declared.name!r} is owned by hosts {', '.join(map(repr, hosts))}; "
            message += "a lane needs exactly one owner"
            yield at(workspace, message, field=("spec", "hosts"))
    declared_hosts = {host.name.lower(): host.name for host in workspace.spec.hosts}
    for workflow in state.workflows.values():
        for index, name in enumerate(workflow.spec.hosts):
            if name.lower() in declared_hosts:
                continue
            message = f"workflow {workflow.name!r} allows host {name!r}, which the Workspace "
            message += "does not declare; " + _listing("hosts", declared_hosts)
            yield at(workflow, message, field=("spec", "hosts", index))
