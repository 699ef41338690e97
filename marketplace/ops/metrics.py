"""The market's own Prometheus metrics, next to django-prometheus' request and database metrics."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from marketplace.ops.selectors import farm_snapshot

NAMES = (
    "market_nodes",
    "market_frames",
    "market_active_leases",
    "market_dispatch_lag_seconds",
    "market_settlement_lag_seconds",
    "market_verification_failures",
    "market_crop_failures",
    "market_canary_offers",
    "market_celery_queue_depth",
    "market_agent_queue_depth",
    "market_heartbeat_pace_seconds",
)


class FarmCollector(Collector):
    """Reads the farm when Prometheus scrapes (never at registration: `describe` names the metrics)."""

    def describe(self) -> Iterator:
        for name in NAMES:
            yield GaugeMetricFamily(name, name)

    def collect(self) -> Iterator:
        snap = farm_snapshot()
        nodes = GaugeMetricFamily("market_nodes", "Worker nodes by derived state", labels=["state"])
        for state, n in snap.nodes.items():
            nodes.add_metric([state], n)
        yield nodes
        frames = GaugeMetricFamily("market_frames", "Frames (and tiles) of open jobs by state", labels=["state"])
        for state, n in snap.frames.items():
            frames.add_metric([state], n)
        yield frames
        leases = GaugeMetricFamily("market_active_leases", "Active leases by kind", labels=["kind"])
        for kind, n in snap.active_leases.items():
            leases.add_metric([kind], n)
        yield leases
        yield GaugeMetricFamily(
            "market_dispatch_lag_seconds", "Age of the oldest frame waiting for a node", value=snap.oldest_queued_s
        )
        yield GaugeMetricFamily(
            "market_settlement_lag_seconds",
            "Age of the oldest rendered frame not yet verified and settled",
            value=snap.oldest_unsettled_s,
        )
        yield CounterMetricFamily("market_verification_failures", "Frame checks that failed", value=snap.checks_failed)
        yield CounterMetricFamily("market_crop_failures", "Crop re-renders that did not match", value=snap.crops_failed)
        yield GaugeMetricFamily(
            "market_canary_offers",
            "Online nodes holding a canary they can be handed now (0: no canary job open, or none left unseen)",
            value=snap.nodes_with_canary,
        )
        queues = GaugeMetricFamily(
            "market_celery_queue_depth", "Messages waiting in each Celery queue", labels=["queue"]
        )
        for name, depth in snap.celery_queues.items():
            if depth is not None:
                queues.add_metric([name], depth)
        yield queues
        if snap.agent_queue_messages is not None:
            yield GaugeMetricFamily(
                "market_agent_queue_depth", "Deliveries waiting in the agents' queues", value=snap.agent_queue_messages
            )
        yield GaugeMetricFamily(
            "market_heartbeat_pace_seconds",
            "Seconds between an agent's heartbeats, as agents are told now (longer as the farm grows)",
            value=snap.heartbeat_seconds,
        )
        if snap.heartbeats_waiting is not None:
            yield GaugeMetricFamily(
                "market_heartbeats_waiting",
                "Agents' heartbeats gathered and not yet written (a growing number: the flush is not running)",
                value=snap.heartbeats_waiting,
            )
