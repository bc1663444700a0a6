#!/usr/bin/env python3
"""Hit to screen: a matching read ingested on hub A → the alert on a Watch stream on hub B
(another replica on the same keyspace) and on hub A itself, per stage, old path and new.

    .venv/bin/python -m ops.bench.hit_to_watch [--alerts 200] [--rate 20] [--filler 9] [--no-baseline]

Each case starts two fresh hub processes (B first, then A with ``alerts.peers: [B]``) on a
fresh keyspace, puts 20 plates on the hot list, opens a watcher on each hub, and streams
``--alerts`` matching reads (each after 9 that do not match) into A at ``--rate`` hits/s.
The baseline case runs with ``alerts.push: false`` (every hub hears of an alert only by
polling the feed every ``alerts.feed_poll_interval_s`` = 75 ms); the second with the defaults
(the raising hub hands the stored alert to its own watchers at once and pushes it to B).

Stages, from the bench's clock and the alert's ``created_time`` (the hub's clock when it took
the read off the stream; one machine, one clock): ``receive`` (read sent → taken by hub A),
``store_ack`` (taken → ack received: the read's rows, the alert, its day row and its feed
event written, then the ack), ``ack_to_other`` / ``ack_to_same`` (ack received → alert on
the watcher of B / A: the fan-out after the alert is stored; below 0 when the watcher heard
before the node's ack arrived), and from the hubs' ``alpr_hub_alert_fanout_seconds``
(estimated from buckets; from the event's time, so the writes are included) the path that
handed each event over: ``feed`` (poll), ``peer`` (pushed), ``local`` (written there).

Last line JSON: ``{"alert_p50_ms", "alert_p99_ms", "same_hub_p99_ms", "stages", "paths",
"baseline": {...}, "p99_ratio"}``; ``alert_*`` is read sent → alert on B's watcher.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import grpc
from alpr.v1 import alert_pb2, alert_pb2_grpc, hotlist_pb2, hotlist_pb2_grpc, ingest_pb2

from alpr_common.simulation import make_read
from alpr_common.timestamps import from_timestamp, timestamp_in
from ops.bench.common import ROOT, AckedIngestStream, HubTarget, cassandra, hub_process, log, percentile, stage_ms
from ops.bench.hotlist import _drop

PLATES = [f"ALRT{i:03d}" for i in range(20)]


class WatchTimes:
    """A Watch stream in a thread: when each read's alert arrived (perf_counter)."""

    def __init__(self, target: str) -> None:
        self.received: dict[str, float] = {}
        self.created: dict[str, float] = {}  # read id → the alert's created_time (Unix s)
        self.call = alert_pb2_grpc.AlertServiceStub(grpc.insecure_channel(target)).Watch(alert_pb2.WatchRequest())
        self.call.initial_metadata()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        try:
            for ev in self.call:
                if ev.kind == alert_pb2.ALERT_EVENT_KIND_CREATED:
                    self.received.setdefault(ev.alert.read_id, time.perf_counter())
                    self.created.setdefault(ev.alert.read_id, from_timestamp(ev.alert.created_time).timestamp())
        except grpc.RpcError:
            pass

    def close(self) -> None:
        self.call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leave RpcContext.cancel untyped


def ms(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(values, 0.50), 1), "p99_ms": round(percentile(values, 0.99), 1)}


def run_case(cass: tuple[list[str], int], n: int, rate: float, filler: int, push: bool) -> dict[str, Any]:
    ks = f"alpr_bench_hit_{uuid.uuid4().hex[:8]}"
    run = ROOT / ".run" / "bench-hit-to-watch"
    common: dict[str, Any] = {"cassandra": {"write_consistency": "ONE", "read_consistency": "ONE"}, "metrics_port": 0}
    try:
        with hub_process(cass, ks, run / "b", hub_id="bench-b", alerts={"push": push}, **common) as b:
            peers = [str(b)] if push else []
            with hub_process(cass, ks, run / "a", hub_id="bench-a", alerts={"push": push, "peers": peers},
                             **common) as a:  # fmt: skip
                return measure(a, b, n, rate, filler)
    finally:
        _drop(cass, [ks])


def measure(a: HubTarget, b: HubTarget, n: int, rate: float, filler: int) -> dict[str, Any]:
    hl = hotlist_pb2_grpc.HotListServiceStub(grpc.insecure_channel(a))
    for p in PLATES:
        v = hl.AddEntry(hotlist_pb2.AddEntryRequest(plate=p, state="IL", reason="bench", entered_by="b",
                        expire_time=timestamp_in(timedelta(days=30)),
                        category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE)).version  # fmt: skip
    hb = hotlist_pb2_grpc.HotListServiceStub(grpc.insecure_channel(b))
    while hb.GetVersion(hotlist_pb2.GetVersionRequest()).version < v:
        time.sleep(0.05)
    other, same = WatchTimes(b), WatchTimes(a)
    stream = AckedIngestStream(a)
    acks = stream.acks
    rnd = random.Random(5)
    sent: dict[str, float] = {}
    sent_wall: dict[str, float] = {}
    log(f"hit_to_watch: {n} matching reads into {a} at {rate}/s ({filler} non-matching before each), watchers on "
        f"{b}, {a}")  # fmt: skip
    for i in range(n):
        for _ in range(filler):
            stream.send(ingest_pb2.IngestRequest(read=make_read(rnd=rnd)))
        r = make_read(plate=PLATES[i % len(PLATES)], rnd=rnd)
        sent[r.read_id], sent_wall[r.read_id] = time.perf_counter(), time.time()
        stream.send(ingest_pb2.IngestRequest(read=r))
        time.sleep(1.0 / rate)
    deadline = time.time() + 20
    while time.time() < deadline and not all(k in other.received and k in same.received for k in sent):
        time.sleep(0.1)
    stream.close()
    other.close()
    same.close()
    # perf_counter → wall clock for each read (both taken when it was sent).
    wall = {k: sent_wall[k] - sent[k] for k in sent}
    got = [k for k in sent if k in other.received]
    created = {k: other.created.get(k, same.created.get(k, 0.0)) for k in sent}
    stages = {
        "receive": ms([(created[k] - sent_wall[k]) * 1000 for k in got]),
        "store_ack": ms([(acks[k] + wall[k] - created[k]) * 1000 for k in got if k in acks]),
        "ack_to_other": ms([(other.received[k] - acks[k]) * 1000 for k in got if k in acks]),
        "ack_to_same": ms([(same.received[k] - acks[k]) * 1000 for k in sent if k in same.received and k in acks]),
    }
    assert a.metrics_port is not None and b.metrics_port is not None
    name = "alpr_hub_alert_fanout_seconds"
    paths = {
        "other_hub": stage_ms(b.metrics_port, name, "path", ["peer", "feed"]),
        "same_hub": stage_ms(a.metrics_port, name, "path", ["local", "feed"]),
    }
    lat = [(other.received[k] - sent[k]) * 1000 for k in got]
    same_lat = [(same.received[k] - sent[k]) * 1000 for k in sent if k in same.received]
    ack_lat = [(acks[k] - sent[k]) * 1000 for k in sent if k in acks]
    out = {
        "alert_p50_ms": round(percentile(lat, 0.5), 1),
        "alert_p99_ms": round(percentile(lat, 0.99), 1),
        "same_hub_p50_ms": round(percentile(same_lat, 0.5), 1),
        "same_hub_p99_ms": round(percentile(same_lat, 0.99), 1),
        "ack_p99_ms": round(percentile(ack_lat, 0.99), 1),
        "missing": len(sent) - len(got),
        "stages": stages,
        "paths": paths,
    }
    log(f"hit_to_watch: {json.dumps(out)}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alerts", type=int, default=200, help="matching reads per case")
    ap.add_argument("--rate", type=float, default=20.0, help="matching reads per second")
    ap.add_argument("--filler", type=int, default=9, help="non-matching reads sent before each matching one")
    ap.add_argument("--no-baseline", action="store_true", help="skip the feed-poll baseline case")
    args = ap.parse_args()
    with cassandra() as cass:
        before = None
        if not args.no_baseline:
            log("hit_to_watch: baseline (alerts.push: false: watchers hear by polling the feed)")
            before = run_case(cass, args.alerts, args.rate, args.filler, push=False)
        log("hit_to_watch: default (stored alert to the hub's own watchers at once, pushed to the peer)")
        result = run_case(cass, args.alerts, args.rate, args.filler, push=True)
    if before is not None:
        result["baseline"] = before
        result["p99_ratio"] = round(before["alert_p99_ms"] / max(1e-9, result["alert_p99_ms"]), 2)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
