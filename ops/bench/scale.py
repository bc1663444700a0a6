#!/usr/bin/env python3
"""Scale benchmark: many simulated nodes streaming to one hub that matches every read
against a large hot list.

  1. import a hot list of --entries plates (default 1,000,000, Illinois LEADS layout);
  2. --nodes simulated nodes (default 200), each one Ingest stream, send --rate reads/s each
     (default 1.0: 200 reads/s offered) for --seconds (default 60); a comma list of rates
     runs each in turn (the latency curve; the knee is the highest offered load whose ack
     p99 stays within 250 ms); --hit-ratio of the reads (default 1%) carry a hot-listed plate;
  3. a watcher on AlertService.Watch times read sent → alert received.
Measures ack latency, alert latency, the hub process's CPU and RSS, and reads lost (sent
but never acknowledged, or acknowledged but not in Cassandra). Last line JSON:
  {"reads_per_s", "ack_p99_ms", "alert_p99_ms", "hub_cpu_pct", "hub_rss_mb", "lost",
   "knee_offered_reads_per_s", "stages": [...], ...}  (top level: the first load >= 200 reads/s)

    .venv/bin/python -m ops.bench.scale [--entries 1000000] [--nodes 200] [--seconds 60] [--rate 0.5,1,1.5,2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator

import grpc
from alpr.v1 import alert_pb2, alert_pb2_grpc, ingest_pb2, ingest_pb2_grpc

from alpr_common.cassandra import connect
from alpr_common.simulation import make_read, noise_jpeg
from hub.config import HubConfig
from hub.schema import migrate
from ops.bench.common import ROOT, HubTarget, cassandra, hub_process, log, percentile, process_usage
from ops.bench.hotlist import _drop, bench_import, leads_file, plates
from tests.support import stored_ids


async def node_stream(
    target: str, node: int, n_reads: int, rate: float, hot: list[str], hit_ratio: float,
    sent: dict[str, float], acked: dict[str, float], crop: bytes,
) -> None:  # fmt: skip
    rnd = random.Random(node)
    async with grpc.aio.insecure_channel(target) as ch:
        stub = ingest_pb2_grpc.IngestServiceStub(ch)

        async def requests() -> AsyncIterator[ingest_pb2.IngestRequest]:
            await asyncio.sleep(rnd.uniform(0, 1 / rate))  # nodes are not in lock-step
            for _ in range(n_reads):
                plate = rnd.choice(hot) if rnd.random() < hit_ratio else None
                r = make_read(node_id=f"scale-{node:03d}", camera_id=f"scale-{node:03d}-a", plate=plate, rnd=rnd,
                              crop_jpeg=crop)  # fmt: skip
                sent[r.read_id] = time.perf_counter()
                yield ingest_pb2.IngestRequest(read=r)
                await asyncio.sleep(rnd.expovariate(rate))

        async for resp in stub.Ingest(requests()):
            if resp.WhichOneof("result") == "ack":
                acked[resp.ack.read_id] = time.perf_counter()


def watch_alerts(
    target: str, received: dict[str, float], stop: threading.Event
) -> grpc.CallIterator[alert_pb2.WatchResponse]:
    call = alert_pb2_grpc.AlertServiceStub(grpc.insecure_channel(target)).Watch(alert_pb2.WatchRequest())

    def drain() -> None:
        try:
            for ev in call:
                received.setdefault(ev.alert.read_id, time.perf_counter())
        except grpc.RpcError:
            pass

    threading.Thread(target=drain, daemon=True).start()
    return call


def run_stage(
    target: HubTarget, nodes: int, rate: float, seconds: float, hot: list[str], hit_ratio: float,
    received: dict[str, float], crop: bytes, stage: int,
) -> tuple[dict[str, float], dict[str, float], float, float]:  # fmt: skip
    """One offered load: every node streams ``rate`` reads/s for ``seconds``; (sent, acked, wall, cpu s)."""
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    n_reads = max(1, round(rate * seconds))
    log(f"scale: {nodes} nodes x {n_reads} reads at {rate}/s each (offered {nodes * rate:.0f} reads/s) …")
    cpu0, _ = process_usage(target.pid)
    t0 = time.perf_counter()

    async def run_nodes() -> None:
        await asyncio.gather(*(node_stream(target, stage * 10_000 + i, n_reads, rate, hot, hit_ratio, sent, acked,
                                           crop) for i in range(nodes)))  # fmt: skip

    asyncio.run(run_nodes())
    wall = time.perf_counter() - t0
    cpu1, _ = process_usage(target.pid)
    return sent, acked, wall, cpu1 - cpu0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60.0, help="per offered load")
    ap.add_argument(
        "--rate", type=str, default="1.0",
        help="reads per second per node; a comma list (e.g. 0.5,1,1.5,2) runs each in turn for the latency curve",
    )  # fmt: skip
    ap.add_argument("--hit-ratio", type=float, default=0.01)
    args = ap.parse_args()
    rates = [float(r) for r in args.rate.split(",")]

    stages: list[dict[str, float]] = []
    all_sent: dict[str, float] = {}
    all_acked: dict[str, float] = {}
    received: dict[str, float] = {}
    with cassandra() as cass:
        ks = f"alpr_scale_{uuid.uuid4().hex[:8]}"
        points, port = cass
        cfg = HubConfig.model_validate({"cassandra": {"contact_points": points, "port": port, "keyspace": ks,
                                                      "write_consistency": "ONE", "read_consistency": "ONE",
                                                      "request_timeout_s": 60}})  # fmt: skip
        cluster, session = connect(cfg.cassandra)
        migrate(session, cfg)
        try:
            with hub_process(cass, ks, ROOT / ".run" / "bench-scale",
                             cassandra={"write_consistency": "ONE", "read_consistency": "ONE"}) as target:  # fmt: skip
                ps = plates(args.entries)
                log(f"scale: importing {len(ps)} hot-list entries …")
                took, _result = bench_import(target, leads_file(ps))
                log(f"scale: import took {took:.1f} s ({len(ps) / took:.0f} entries/s)")
                _, rss_after_import = process_usage(target.pid)
                hot = ps[:: max(1, len(ps) // 1000)]
                stop = threading.Event()
                call = watch_alerts(target, received, stop)
                time.sleep(1.0)
                crop = noise_jpeg(136, 40, seed=1, quality=80)
                for i, rate in enumerate(rates):
                    sent, acked, wall, cpu = run_stage(
                        target, args.nodes, rate, args.seconds, hot, args.hit_ratio, received, crop, i
                    )
                    time.sleep(2.0)  # alerts of the last reads
                    ack_ms = [(acked[k] - t) * 1000 for k, t in sent.items() if k in acked]
                    alert_ms = [(received[k] - sent[k]) * 1000 for k in list(received) if k in sent]
                    stage = {
                        "offered_reads_per_s": round(args.nodes * rate, 1),
                        "reads_per_s": round(len(acked) / wall, 1),
                        "ack_p50_ms": round(percentile(ack_ms, 0.5), 1),
                        "ack_p99_ms": round(percentile(ack_ms, 0.99), 1),
                        "alert_p50_ms": round(percentile(alert_ms, 0.5), 1),
                        "alert_p99_ms": round(percentile(alert_ms, 0.99), 1),
                        "alerts": len(alert_ms),
                        "hub_cpu_pct": round(cpu / wall * 100, 1),
                        "load_avg": round(os.getloadavg()[0], 1),
                    }
                    log(f"scale: {json.dumps(stage)}")
                    stages.append(stage)
                    all_sent.update(sent)
                    all_acked.update(acked)
                _, rss = process_usage(target.pid)
                call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leave RpcContext.cancel untyped
        finally:
            stored = stored_ids(session, ks, list(all_sent))
            cluster.shutdown()
            _drop(cass, [ks])

    lost = sum(1 for k in all_sent if k not in all_acked or k not in stored)
    # The knee: the highest offered load whose ack p99 stays within 250 ms.
    within = [s["offered_reads_per_s"] for s in stages if s["ack_p99_ms"] <= 250]
    first = next((s for s in stages if s["offered_reads_per_s"] >= 200), stages[-1])
    result_json = {
        **first,
        "hub_rss_mb": round(rss, 1),
        "hub_rss_after_import_mb": round(rss_after_import, 1),
        "lost": lost,
        "reads_sent": len(all_sent),
        "knee_offered_reads_per_s": max(within) if within else None,
        "stages": stages,
        "hotlist_entries": args.entries,
        "nodes": args.nodes,
        "import_s": round(took, 1),
    }
    print(json.dumps(result_json), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
