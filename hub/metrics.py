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
        self.idle_streams_closed = Counter(
            "alpr_hub_idle_streams_closed_total",
            "Ingest streams closed because nothing arrived within ingest.idle_timeout_s",
            registry=registry,
        )
        self.in_flight = Gauge("alpr_hub_reads_in_flight", "Reads being written right now", registry=registry)
        self.bytes_in_flight = Gauge(
            "alpr_hub_ingest_bytes_in_flight",
            "Bytes of reads being stored right now (bounded by ingest.max_bytes_in_flight)",
            registry=registry,
        )
        self.backpressure_waits = Counter(
            "alpr_hub_ingest_backpressure_waits_total",
            "Reads that waited for room in ingest.max_bytes_in_flight (their stream was paused meanwhile)",
            registry=registry,
        )
        self.heartbeats = Counter("alpr_hub_heartbeats_total", "Heartbeats received", registry=registry)
        self.loop_lag = Histogram(
            "alpr_hub_event_loop_lag_seconds",
            "How much later than due the hub's event loop ran a 100 ms timer (time something held the loop)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.node_last_seen = Gauge(
            "alpr_hub_node_last_seen_timestamp_seconds",
            "Unix time of the last read or heartbeat from each node on this hub",
            ["node_id"],
            registry=registry,
        )
        self.node_last_heartbeat = Gauge(
            "alpr_hub_node_last_heartbeat_timestamp_seconds",
            "Unix time of each node's last heartbeat on this hub; restored from node_status at start-up, "
            "so a node that died before a restart is still reported silent",
            ["node_id"],
            registry=registry,
        )


class HotListMetrics:
    """Hot-list log, node sync state (policy 4.1) and alerts (``alpr_hub_hotlist_*``, ``alpr_hub_alerts_*``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.version = Gauge("alpr_hub_hotlist_version", "Hot-list version this hub has loaded", registry=registry)
        self.entries = Gauge("alpr_hub_hotlist_entries", "Hot-list entries loaded on this hub", registry=registry)
        self.changes = Counter(
            "alpr_hub_hotlist_changes_total", "Hot-list changes committed by this hub", ["kind"], registry=registry
        )
        self.subscribers = Gauge(
            "alpr_hub_hotlist_subscribers", "Nodes subscribed to hot-list changes on this hub", registry=registry
        )
        self.node_version = Gauge(
            "alpr_hub_node_hotlist_version",
            "Hot-list version each subscribed node acknowledged",
            ["node_id"],
            registry=registry,
        )
        self.node_lag = Gauge(
            "alpr_hub_node_hotlist_lag_versions",
            "Versions a subscribed node is behind the hub's current version",
            ["node_id"],
            registry=registry,
        )
        self.node_age = Gauge(
            "alpr_hub_node_hotlist_age_seconds",
            "How long a node's hot list has been out of date (0 when current)",
            ["node_id"],
            registry=registry,
        )
        self.match_seconds = Histogram(
            "alpr_hub_match_seconds",
            "Time to match one read against the hot list",
            buckets=(1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 1e-3, 1e-2),
            registry=registry,
        )
        self.alerts_created = Counter(
            "alpr_hub_alerts_created_total", "Alerts raised, by best match kind", ["kind"], registry=registry
        )
        self.alerts_decided = Counter(
            "alpr_hub_alerts_decided_total", "Alert decisions, by status", ["status"], registry=registry
        )
        self.alerts_pending = Gauge("alpr_hub_alerts_pending", "PENDING alerts still retained", registry=registry)
        self.alerts_unattended = Gauge(
            "alpr_hub_alerts_unattended",
            "PENDING alerts older than alerts.unattended_after_s, all retained, policy 4.3",
            registry=registry,
        )
        self.watchers = Gauge("alpr_hub_alert_watchers", "Open AlertService.Watch streams", registry=registry)
        self.feed_errors = Counter(
            "alpr_hub_alert_feed_errors_total", "Failed polls of the alert feed", registry=registry
        )
        self.alert_fanout = Histogram(
            "alpr_hub_alert_fanout_seconds",
            "From an alert event's time (the alert's creation, the decision) to its hand-over to this hub's "
            "Watch streams, by path: local (written here), peer (pushed by another hub), feed (found by polling)",
            ["path"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )
        self.decision_stage = Histogram(
            "alpr_hub_alert_decision_stage_seconds",
            "DecideAlert by stage: read (the alert), claim (the lightweight transaction), record (history and "
            "feed, watchers told), audit",
            ["stage"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.alert_pushes = Counter(
            "alpr_hub_alert_pushes_total",
            "Alert events pushed to peer hubs, by result (ok / failed / dropped: the peer reads them from the feed)",
            ["result"],
            registry=registry,
        )


class AgencyMetrics:
    """Agency exchange (``alpr_hub_share_*``): sharing decisions and relays received."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.share_decisions = Counter(
            "alpr_hub_share_decisions_total",
            "Agency sharing decisions (policy 4.7), by outcome (allowed / refused)",
            ["outcome"],
            registry=registry,
        )
        self.shared_received = Counter(
            "alpr_hub_shared_alerts_received_total",
            "Relays received from other agencies, by result (stored / duplicate)",
            ["result"],
            registry=registry,
        )
