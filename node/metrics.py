"""Prometheus metrics of an edge node (prefix ``alpr_node_``); the registry is injectable."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class NodeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.frames_in = Counter(
            "alpr_node_frames_in_total", "Frames received from cameras", ["camera_id"], registry=registry
        )
        self.frames_processed = Counter(
            "alpr_node_frames_processed_total", "Frames run through detection", ["camera_id"], registry=registry
        )
        self.frames_dropped = Counter(
            "alpr_node_frames_dropped_total",
            "Frames skipped because processing fell behind (newest frame wins)",
            ["camera_id"],
            registry=registry,
        )
        self.detector_latency = Histogram(
            "alpr_node_detector_seconds", "Plate detector time per frame", buckets=_LATENCY_BUCKETS, registry=registry
        )
        self.ocr_latency = Histogram(
            "alpr_node_ocr_seconds", "OCR + state time per plate crop", buckets=_LATENCY_BUCKETS, registry=registry
        )
        self.reads_emitted = Counter(
            "alpr_node_reads_emitted_total",
            "Reads (one per vehicle pass) committed to the queue",
            ["camera_id"],
            registry=registry,
        )
        self.reads_dropped_format = Counter(
            "alpr_node_reads_dropped_format_total",
            "Tracks dropped because the text matches no configured plate format",
            ["camera_id"],
            registry=registry,
        )
        self.queue_depth = Gauge("alpr_node_queue_depth", "Reads waiting for a hub ack", registry=registry)
        self.queue_oldest_age = Gauge(
            "alpr_node_queue_oldest_age_seconds", "Age of the oldest unacked read", registry=registry
        )
        self.queue_evicted = Counter(
            "alpr_node_queue_evicted_total", "Reads LOST because the queue hit its disk budget", registry=registry
        )
        self.reads_acked = Counter("alpr_node_reads_acked_total", "Reads acknowledged by the hub", registry=registry)
        self.reads_rejected = Counter(
            "alpr_node_reads_rejected_total", "Reads the hub refused as invalid (kept aside)", registry=registry
        )
        self.hub_connected = Gauge("alpr_node_hub_connected", "1 while a stream to a hub is open", registry=registry)
        self.hub_reconnects = Counter(
            "alpr_node_hub_reconnects_total", "Stream (re)connection attempts", registry=registry
        )
        self.clock_skew = Gauge(
            "alpr_node_clock_skew_seconds", "Node clock minus hub clock, from heartbeat acks", registry=registry
        )
        self.hotlist_version = Gauge("alpr_node_hotlist_version", "Hot-list version held locally", registry=registry)
        self.hotlist_age = Gauge(
            "alpr_node_hotlist_age_seconds", "Seconds since the hot list was last synchronised", registry=registry
        )
        self.local_alerts = Counter(
            "alpr_node_local_alerts_total", "Hot-list hits raised on the node", registry=registry
        )
        self.alert_hooks_dropped = Counter(
            "alpr_node_alert_hooks_dropped_total",
            "Local alert commands not run because too many were waiting",
            registry=registry,
        )
        self.alert_hook_failures = Counter(
            "alpr_node_alert_hook_failures_total",
            "Local alert commands that failed, exited non-zero or were killed on timeout",
            registry=registry,
        )
        self.stage_seconds = Counter(
            "alpr_node_stage_seconds",
            "Time spent per pipeline stage: decode (camera threads), gate, detect, ocr, track, encode (JPEG), commit "
            "(SQLite queue)",
            ["stage"],
            registry=registry,
        )
        self.gate_frames = Counter(
            "alpr_node_gate_frames",
            "Frames by what the motion gate had detected: full (interval or motion), regions, idle (nothing), off",
            ["camera", "decision"],
            registry=registry,
        )
        self.self_check_ok = Gauge("alpr_node_self_check_ok", "1 when every self-check passes", registry=registry)
