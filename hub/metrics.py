"""Prometheus metrics of the hub (prefix ``alpr_hub_``); the registry is injectable."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class HubMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reads_received = Counter(
            "alpr_hub_reads_received_total", "Reads received on ingest streams", registry=registry
        )
        self.reads_stored = Counter(
            "alpr_hub_reads_stored_total",
            "Reads durably stored and acknowledged",
            registry=registry,
        )
        self.reads_rejected = Counter(
            "alpr_hub_reads_rejected_total",
            "Reads refused, by reason (validation failures and storage errors)",
            ["reason"],
            registry=registry,
        )
        self.write_latency = Histogram(
            "alpr_hub_read_write_seconds",
            "Time to store one read in all its tables at the configured consistency",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.cassandra_errors = Counter(
            "alpr_hub_cassandra_write_errors_total",
            "Cassandra write failures, by exception type",
            ["error"],
            registry=registry,
        )
        self.open_streams = Gauge("alpr_hub_open_streams", "Open ingest streams", registry=registry)
        self.in_flight = Gauge("alpr_hub_reads_in_flight", "Reads being written right now", registry=registry)
        self.heartbeats = Counter("alpr_hub_heartbeats_total", "Heartbeats received", registry=registry)
        self.node_last_seen = Gauge(
            "alpr_hub_node_last_seen_timestamp_seconds",
            "Unix time of the last read or heartbeat from each node on this hub",
            ["node_id"],
            registry=registry,
        )
