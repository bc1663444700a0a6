"""Prometheus metrics of the bridge (prefix ``alpr_bridge_``, served on :9103); injectable registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.relays = Counter(
            "alpr_bridge_relays_total",
            "Delivery attempts, by sink and outcome (delivered, retry, dead)",
            ["sink", "outcome"],
            registry=registry,
        )
        self.enqueued = Counter(
            "alpr_bridge_enqueued_total", "Relays and ticket events put in the outbox, by reason", ["reason"],
            registry=registry,
        )  # fmt: skip
        self.outbox_depth = Gauge(
            "alpr_bridge_outbox_depth", "Undelivered entries in the outbox, by sink", ["sink"], registry=registry
        )
        self.outbox_oldest = Gauge(
            "alpr_bridge_outbox_oldest_age_seconds",
            "Age of the oldest undelivered outbox entry, by sink",
            ["sink"],
            registry=registry,
        )
        self.delivery_seconds = Histogram(
            "alpr_bridge_delivery_seconds",
            "Time from enqueue to confirmed delivery, by sink",
            ["sink"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=registry,
        )
        self.dead_letters = Counter(
            "alpr_bridge_dead_letters_total", "Entries moved to the dead-letter list, by sink", ["sink"],
            registry=registry,
        )  # fmt: skip
        self.watch_connected = Gauge(
            "alpr_bridge_watch_connected", "1 while the alert stream is open", registry=registry
        )
        self.watch_events = Counter("alpr_bridge_watch_events_total", "Alert events handled", registry=registry)
        self.watch_errors = Counter(
            "alpr_bridge_watch_errors_total", "Alert stream failures (reconnected)", registry=registry
        )
        self.tickets_open = Gauge("alpr_bridge_tickets_open", "Open help-desk incidents", registry=registry)
        self.tickets = Counter(
            "alpr_bridge_tickets_total", "Help-desk ticket events, by event (open, close)", ["event"],
            registry=registry,
        )  # fmt: skip
