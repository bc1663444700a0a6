#!/usr/bin/env python3
"""Writes the Grafana dashboards in ops/grafana/dashboards/ (run after changing panels).

Two dashboards: "ALPR fleet" for fleet operators (per-node status, reads per minute, hits,
hot-list lag) and "ALPR operations" for ops (latencies, errors, backlogs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(
    pid: int,
    title: str,
    exprs: list[tuple[str, str]],
    x: int,
    y: int,
    w: int = 12,
    h: int = 8,
    kind: str = "timeseries",
    unit: str = "short",
    description: str = "",
) -> dict[str, Any]:
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom"}} if kind == "timeseries" else {},
        "targets": [
            {"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def dashboard(uid: str, title: str, panels: list[dict[str, Any]], tags: list[str]) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": tags,
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
                {
                    "name": "node",
                    "type": "query",
                    "datasource": DS,
                    "query": "label_values(alpr_hub_node_last_seen_timestamp_seconds, node_id)",
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "label": "Node",
                },
            ]
        },
        "panels": panels,
    }


FLEET = dashboard(
    "alpr-fleet",
    "ALPR fleet",
    [
        panel(
            1,
            "Seconds since last heartbeat or read, per node",
            [
                (
                    'time() - max by (node_id) (alpr_hub_node_last_seen_timestamp_seconds{node_id=~"$node"})',
                    "{{node_id}}",
                )
            ],
            0,
            0,
            kind="table",
            unit="s",
            description="Over 180 s: the node cannot reach a hub (alert AlprNodeNoHeartbeat).",
        ),
        panel(
            2,
            "Reads per minute, per camera",
            [("sum by (camera_id) (rate(alpr_node_reads_emitted_total[$__rate_interval])) * 60", "{{camera_id}}")],
            12,
            0,
            unit="short",
        ),
        panel(
            3,
            "Reads stored by the hubs per minute",
            [("sum(rate(alpr_hub_reads_stored_total[$__rate_interval])) * 60", "stored")],
            0,
            8,
        ),
        panel(
            4,
            "Hot-list hits per hour (hub alerts)",
            [("sum(increase(alpr_hub_alerts_created_total[1h]))", "hits")],
            12,
            8,
        ),
        panel(
            5,
            "Hits pending a decision / unattended",
            [("max(alpr_hub_alerts_pending)", "pending"), ("max(alpr_hub_alerts_unattended)", "unattended")],
            0,
            16,
            kind="stat",
        ),
        panel(
            6,
            "Hot-list versions behind, per node",
            [('max by (node_id) (alpr_hub_node_hotlist_lag_versions{node_id=~"$node"})', "{{node_id}}")],
            12,
            16,
        ),
        panel(
            7,
            "Hot-list age on the node",
            [("alpr_node_hotlist_age_seconds", "{{instance}}")],
            0,
            24,
            unit="s",
            description="Policy 4.1: current at each shift start (alert over 8 h).",
        ),
        panel(8, "Self-check ok (1) per node", [("alpr_node_self_check_ok", "{{instance}}")], 12, 24, kind="stat"),
        panel(
            9,
            "Camera frames per second",
            [
                (
                    "sum by (instance, camera_id) (rate(alpr_node_frames_in_total[$__rate_interval]))",
                    "{{instance}} {{camera_id}}",
                )
            ],
            0,
            32,
        ),
        panel(
            10,
            "Local (in-car) hits per hour",
            [("sum by (instance) (increase(alpr_node_local_alerts_total[1h]))", "{{instance}}")],
            12,
            32,
        ),
    ],
    ["alpr", "fleet"],
)

OPS = dashboard(
    "alpr-ops",
    "ALPR operations",
    [
        panel(
            1,
            "Read write latency (p50 / p99)",
            [
                (
                    "histogram_quantile(0.5, sum by (le) (rate(alpr_hub_read_write_seconds_bucket[$__rate_interval])))",
                    "p50",
                ),
                (
                    "histogram_quantile(0.99, sum by (le) (rate(alpr_hub_read_write_seconds_bucket[$__rate_interval])))",
                    "p99",
                ),
            ],
            0,
            0,
            unit="s",
        ),
        panel(
            2,
            "Reads refused, by reason",
            [("sum by (reason) (rate(alpr_hub_reads_rejected_total[$__rate_interval]))", "{{reason}}")],
            12,
            0,
            unit="reqps",
        ),
        panel(
            3,
            "Cassandra write errors",
            [
                (
                    "sum by (instance, error) (rate(alpr_hub_cassandra_write_errors_total[$__rate_interval]))",
                    "{{instance}} {{error}}",
                )
            ],
            0,
            8,
            unit="reqps",
        ),
        panel(
            4,
            "Open ingest streams / reads in flight",
            [
                ("sum by (instance) (alpr_hub_open_streams)", "streams {{instance}}"),
                ("sum by (instance) (alpr_hub_reads_in_flight)", "in flight {{instance}}"),
            ],
            12,
            8,
        ),
        panel(5, "Store-and-forward backlog (reads) per node", [("alpr_node_queue_depth", "{{instance}}")], 0, 16),
        panel(
            6, "Oldest unsent read per node", [("alpr_node_queue_oldest_age_seconds", "{{instance}}")], 12, 16, unit="s"
        ),
        panel(
            7,
            "Reads LOST to queue eviction",
            [("sum by (instance) (increase(alpr_node_queue_evicted_total[1h]))", "{{instance}}")],
            0,
            24,
        ),
        panel(
            8,
            "Node detector / OCR latency p95",
            [
                (
                    "histogram_quantile(0.95, sum by (le) (rate(alpr_node_detector_seconds_bucket[$__rate_interval])))",
                    "detector",
                ),
                ("histogram_quantile(0.95, sum by (le) (rate(alpr_node_ocr_seconds_bucket[$__rate_interval])))", "ocr"),
            ],
            12,
            24,
            unit="s",
        ),
        panel(9, "Hub to node clock skew", [("alpr_node_clock_skew_seconds", "{{instance}}")], 0, 32, unit="s"),
        panel(
            10,
            "Hot-list match time p99 (hub)",
            [("histogram_quantile(0.99, sum by (le) (rate(alpr_hub_match_seconds_bucket[$__rate_interval])))", "p99")],
            12,
            32,
            unit="s",
        ),
        panel(
            11,
            "Relays by sink and outcome",
            [("sum by (sink, outcome) (rate(alpr_bridge_relays_total[$__rate_interval]))", "{{sink}} {{outcome}}")],
            0,
            40,
            unit="reqps",
        ),
        panel(
            12,
            "Outbox depth / oldest relay age",
            [("alpr_bridge_outbox_depth", "depth"), ("alpr_bridge_outbox_oldest_age_seconds", "oldest (s)")],
            12,
            40,
        ),
        panel(
            13,
            "Decision to dispatch delivery p99",
            [
                (
                    "histogram_quantile(0.99, sum by (le, sink) (rate(alpr_bridge_delivery_seconds_bucket[$__rate_interval])))",
                    "{{sink}}",
                )
            ],
            0,
            48,
            unit="s",
        ),
        panel(
            14,
            "Dead letters (last hour)",
            [("sum by (sink) (increase(alpr_bridge_dead_letters_total[1h]))", "{{sink}}")],
            12,
            48,
            kind="stat",
        ),
    ],
    ["alpr", "ops"],
)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for d in (FLEET, OPS):
        (OUT / f"{d['uid']}.json").write_text(json.dumps(d, indent=2) + "\n")
        print(f"wrote {OUT / (d['uid'] + '.json')}")


if __name__ == "__main__":
    main()
