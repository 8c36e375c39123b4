"""Prometheus metrics (DESIGN §11) in a private registry, from the status model.

Gauges are read from the status object (the same one ``status --output json`` prints) that
the daemon's last pass left; the trigger queue (depth and oldest age) and the usage totals by
model are read from the store at each scrape (``read_store``, two statements): a scrape starts
no subprocess. Labels take values from closed sets (phases, states, action kinds, reason codes,
the models the ModelCatalogs declare); message text never becomes a label.

A new gauge by state from the status object (hosts by state, say) is one ``_by`` line in
``_Gauges.collect`` with its states as the known values.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from controller.core import world
from controller.core.phases import Phase
from controller.core.safeguards.decisions import Reason
from controller.core.workflows import model as wf
from controller.executors import triggers as deliver
from controller.runtime import reconcile
from controller.runtime.daemon import PassEnd
from controller.spec.state import DesiredState
from controller.store import jobs
from controller.store import runs as runs_store
from controller.store.jobs import JobState
from controller.store.queries import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PHASES = tuple(str(p) for p in Phase)
AGENT_STATES = (*(str(s) for s in world.AgentState), "pending", "dead", "unknown")
PENDING = (str(JobState.QUEUED), str(JobState.RUNNING))  # the states with an oldest age
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")
WAKE_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
HOST_STATES = (*(str(s) for s in world.HostState), "unknown")  # unknown: never held one
_REASONS = frozenset(str(r) for r in Reason)
OTHER = "other"


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens by kind (``TOKEN_KINDS``) and cost in USD of one model label."""

    tokens: Mapping[str, int]
    cost_usd: float


@dataclass(slots=True)
class Snapshot:
    """What the gauges show: the last status object, and what ``read_store`` read at the
    scrape (the queue by state, the oldest pending job's age, usage by model)."""

    status: Mapping[str, Any] | None = None
    queue: Mapping[str, int] = field(default_factory=dict)
    oldest: Mapping[str, float] = field(default_factory=dict)
    usage: Mapping[str, Usage] = field(default_factory=dict)


def read_store(
    store: Store, desired: DesiredState | None, now: datetime
) -> tuple[dict[str, int], dict[str, float], dict[str, Usage]]:
    """The scrape's reads (blocking: run it in a worker thread): the queue's depth and oldest
    age by state, and usage by model: a model the ModelCatalogs declare (by name or alias)
    under its name, every declared one even when unused, anything else as ``other``."""
    queue = jobs.queue(store)
    depth = {state: n for state, (n, _) in queue.items()}
    oldest = dict.fromkeys(PENDING, 0.0)
    for state in PENDING:
        created = queue.get(state, (0, None))[1]
        if created is not None:
            oldest[state] = max(0.0, (now - created).total_seconds())
    catalog = desired.models() if desired is not None else {}
    tokens = {name: dict.fromkeys(TOKEN_KINDS, 0) for name in catalog}
    cost = dict.fromkeys(catalog, 0.0)
    for recorded, (used, usd) in runs_store.usage_by_model(store).items():
        model = desired.model_named(recorded) if desired is not None else None
        label = model.name if model is not None else OTHER
        counts = tokens.setdefault(label, dict.fromkeys(TOKEN_KINDS, 0))
        for kind, n in zip(TOKEN_KINDS, _kinds(used), strict=True):
            counts[kind] += n
        cost[label] = cost.get(label, 0.0) + usd
    usage = {label: Usage(tokens[label], cost[label]) for label in tokens}
    return depth, oldest, usage


def _kinds(used: wf.Usage) -> tuple[int, int, int, int]:
    return (
        used.input_tokens,
        used.output_tokens,
        used.cache_read_tokens,
        used.cache_write_tokens,
    )


class _Gauges(Collector):
    """The gauges, computed at collection from the current snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        yield _by("lanes_trigger_queue_depth", "Trigger jobs by state.", "state", _queue(self))
        yield _by(
            "lanes_trigger_queue_oldest_age_seconds",
            "Age of the oldest trigger job in each pending state (0 when none).",
            "state",
            {**dict.fromkeys(PENDING, 0.0), **snapshot.oldest},
        )
        yield from _usage(snapshot.usage)
        view = self.snapshot.status
        if view is None:
            return
        lanes = view["lanes"]
        agents = [a for lane in lanes for a in lane["agents"]]
        yield _by("lanes_lanes", "Lanes by phase.", "phase", _count(lanes, "phase", PHASES))
        yield _by(
            "lanes_agents", "Agents by state.", "state", _count(agents, "state", AGENT_STATES)
        )
        yield _one(
            "lanes_agent_restarts",
            "Restarts of the agents now known, summed.",
            sum(a["restarts"] for a in agents),
        )
        conditions = Tally(c["type"] for lane in lanes for c in lane["conditions"])
        yield _by("lanes_lane_conditions", "Conditions on lanes, by type.", "type", conditions)
        blocked = sum(1 for p in view["participants"] if p["blocked"])
        yield _one("lanes_blocked_participants", "Participants blocked.", blocked)
        yield _by(
            "lanes_workflow_runs",
            "Workflow runs shown by status, by phase.",
            "phase",
            Tally(r["phase"] for r in view["runs"]),
        )
        if "hosts" in view:  # many hosts (Workspace.hosts): every host's lease, by state
            yield _by(
                "lanes_hosts",
                "Hosts by the state of their lease.",
                "state",
                _count(view["hosts"], "state", HOST_STATES),
            )
        yield _one(
            "lanes_desired_valid", "1 when desired state is valid.", int(view["desiredValid"])
        )


def _queue(gauges: _Gauges) -> Mapping[str, int]:
    counts = dict.fromkeys((str(s) for s in JobState), 0)
    return {**counts, **gauges.snapshot.queue}


def _count(items: Sequence[Mapping[str, Any]], key: str, known: Iterable[str]) -> Mapping[str, int]:
    return {**dict.fromkeys(known, 0), **Tally(str(i[key]) for i in items)}


def _usage(usage: Mapping[str, Usage]) -> Iterator[Metric]:
    tokens = CounterMetricFamily(
        "lanes_tokens",
        "Tokens used by workflow tasks, by model and kind.",
        labels=["model", "kind"],
    )
    cost = CounterMetricFamily(
        "lanes_cost_usd", "Cost in USD charged for workflow tasks, by model.", labels=["model"]
    )
    for model, used in sorted(usage.items()):
        for kind in TOKEN_KINDS:
            tokens.add_metric([model, kind], used.tokens.get(kind, 0))
        cost.add_metric([model], used.cost_usd)
    yield tokens
    yield cost


def _by(name: str, documentation: str, label: str, values: Mapping[str, float]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value, n in sorted(values.items()):
        family.add_metric([value], n)
    return family


def _one(name: str, documentation: str, value: float) -> Metric:
    return GaugeMetricFamily(name, documentation, value=value)


class Metrics:
    """The daemon's registry: counters it moves as it works, gauges from the snapshot."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.snapshot = Snapshot()
        self.passes = Counter("lanes_reconcile", "Passes by result.", ["result"], registry=r)
        self.duration = Histogram(
            "lanes_reconcile_duration_seconds", "How long passes took.", registry=r
        )
        self.actions = Counter(
            "lanes_actions", "Actions by kind and result.", ["action", "result"], registry=r
        )
        self.wakes = Counter(
            "lanes_wakes", "Trigger results by result and reason.", ["result", "reason"], registry=r
        )
        self.wake_latency = Histogram(
            "lanes_wake_latency_seconds",
            "Delivered wakes: from the newest unread message's commit to its keystrokes.",
            buckets=WAKE_LATENCY_BUCKETS,
            registry=r,
        )
        r.register(_Gauges(self.snapshot))

    def passed(self, result: reconcile.PassResult, seconds: float) -> None:
        """Count one pass, its actions and its wakes."""
        self.passes.labels("failed" if result.failed else "ok").inc()
        self.duration.observe(seconds)
        for outcome in result.outcomes:
            self.actions.labels(outcome.action.kind, outcome.status).inc()
        self.woke(result.wakes)

    def failed(self, result: PassEnd, seconds: float) -> None:
        """Count a pass that raised (``error``) or crashed."""
        self.passes.labels(str(result)).inc()
        self.duration.observe(seconds)

    def woke(self, envelopes: Iterable[deliver.Envelope]) -> None:
        """Count wake results (a reason outside the known codes counts as ``other``), and the
        latency of the delivered ones."""
        for w in envelopes:
            reason = w.reason if w.reason in _REASONS else OTHER
            self.wakes.labels(str(w.result), reason).inc()
            if w.result == deliver.Result.DELIVERED and w.waited is not None:
                self.wake_latency.observe(w.waited)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
