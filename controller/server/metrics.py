"""Prometheus metrics (DESIGN §11) in a private registry, from the status model.

Gauges are read from the status object (the same one ``status --output json`` prints) that
the daemon's last pass left, and the trigger queue from the store at each scrape: a scrape
starts no subprocess. Labels take values from closed sets (phases, states, action kinds,
reason codes); names a user chose and message text never become labels.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from controller.core import world
from controller.core.phases import Phase
from controller.core.safeguards.decisions import Reason
from controller.executors import triggers as deliver
from controller.runtime import reconcile
from controller.runtime.daemon import PassEnd
from controller.store.jobs import JobState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PHASES = tuple(str(p) for p in Phase)
AGENT_STATES = (*(str(s) for s in world.AgentState), "pending", "dead", "unknown")
_REASONS = frozenset(str(r) for r in Reason)
OTHER = "other"


@dataclass(slots=True)
class Snapshot:
    """What the gauges show: the last status object, and the queue read at the scrape."""

    status: Mapping[str, Any] | None = None
    queue: Mapping[str, int] = field(default_factory=dict)


class _Gauges(Collector):
    """The gauges, computed at collection from the current snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield _by("lanes_trigger_queue_depth", "Trigger jobs by state.", "state", _queue(self))
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
        yield _one(
            "lanes_desired_valid", "1 when desired state is valid.", int(view["desiredValid"])
        )


def _queue(gauges: _Gauges) -> Mapping[str, int]:
    counts = dict.fromkeys((str(s) for s in JobState), 0)
    return {**counts, **gauges.snapshot.queue}


def _count(items: Sequence[Mapping[str, Any]], key: str, known: Iterable[str]) -> Mapping[str, int]:
    return {**dict.fromkeys(known, 0), **Tally(str(i[key]) for i in items)}


def _by(name: str, documentation: str, label: str, values: Mapping[str, int]) -> Metric:
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
        """Count wake results (a reason outside the known codes counts as ``other``)."""
        for w in envelopes:
            reason = w.reason if w.reason in _REASONS else OTHER
            self.wakes.labels(str(w.result), reason).inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
