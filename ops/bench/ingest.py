#!/usr/bin/env python3
"""Ingest benchmark: the hub's throughput as a ratio of raw Cassandra driver throughput.

In one run, on the same Cassandra, with the same rows into the same tables:
  (a) raw: cassandra-driver concurrent async inserts (3 tables per read), in this process;
  (b) hub: the same reads streamed through an ``alpr-hub`` process by K concurrent simulated
      nodes (one client process, one stream per node, a window of unacked reads per stream).
Prints progress on stderr and, as the last line, JSON:
  {"raw_rows_per_s", "hub_reads_per_s", "ratio", "p99_ack_ms", ...}
A "row" of the raw figure is one read written to all three read tables, so the two rates
compare like with like. Starts Cassandra if none is running and stops what it started.

    .venv/bin/python -m ops.bench.ingest [--reads 20000] [--nodes 8] [--window 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from alpr.v1 import ingest_pb2, ingest_pb2_grpc, reads_pb2

from alpr_common.cassandra import connect
from alpr_common.simulation import make_read, noise_jpeg
from hub.config import HubConfig
from hub.schema import migrate
from hub.storage import ReadStore, read_rows
from hub.validation import validate_read
from ops.bench.common import ROOT, cassandra, hub_process, log, percentile


def make_reads(n: int, nodes: int, seed: int = 7) -> list[reads_pb2.PlateRead]:
    rnd = random.Random(seed)
    crop = noise_jpeg(136, 40, seed=1, quality=80)  # a typical plate crop: ~5 KB
    now = datetime.now(UTC)
    return [make_read(node_id=f"bench-{i % nodes}", camera_id=f"bench-{i % nodes}-cam", captured=now, rnd=rnd,
                      crop_jpeg=crop) for i in range(n)]  # fmt: skip


def raw_insert(config: HubConfig, reads: list[reads_pb2.PlateRead], concurrency: int) -> float:
    """Reads per second for direct driver inserts of the rows the hub would write."""
    cluster, session = connect(config.cassandra)
    session.set_keyspace(config.cassandra.keyspace)
    store = ReadStore(session=session, config=config)
    now = datetime.now(UTC)
    rows = []
    for r in reads:
        v = validate_read(r, config, now)
        rows.append(read_rows(r, v.plate, v.ttl_seconds, config.hub_id, now))
    total = 3 * len(rows)
    done = threading.Event()
    slots = threading.Semaphore(concurrency)
    remaining = [total]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def finished(_: object = None) -> None:
        slots.release()
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

    def failed(exc: BaseException) -> None:
        errors.append(exc)
        finished()

    start = time.perf_counter()
    for row in rows:  # binding is part of the work, as it is for the hub
        for stmt in store.read_writes(row):
            slots.acquire()
            session.execute_async(stmt).add_callbacks(finished, failed)
    done.wait()
    elapsed = time.perf_counter() - start
    cluster.shutdown()
    if errors:
        raise RuntimeError(f"{len(errors)} raw inserts failed, first: {errors[0]!r}")
    return len(reads) / elapsed


async def _node_stream(target: str, reads: list[bytes], window: int, latencies: list[float]) -> int:
    import grpc

    sent_at: dict[str, float] = {}
    slots = asyncio.Semaphore(window)
    acked = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)

        async def requests() -> AsyncIterator[ingest_pb2.IngestRequest]:
            for raw in reads:
                await slots.acquire()
                req = ingest_pb2.IngestRequest.FromString(raw)
                sent_at[req.read.read_id] = time.perf_counter()
                yield req

        async for resp in stub.Ingest(requests()):
            if resp.WhichOneof("result") == "ack":
                latencies.append(time.perf_counter() - sent_at.pop(resp.ack.read_id))
                acked += 1
            else:
                raise RuntimeError(f"hub refused a read: {resp}")
            slots.release()
            if acked == len(reads):
                break
    return acked


def _client(target: str, per_node: list[list[bytes]], window: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    async def run() -> tuple[int, float, list[float]]:
        latencies: list[float] = []
        start = time.perf_counter()
        counts = await asyncio.gather(*(_node_stream(target, r, window, latencies) for r in per_node))
        return sum(counts), time.perf_counter() - start, latencies

    out.put(asyncio.run(run()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reads", type=int, default=20000, help="reads per phase (default 20000)")
    ap.add_argument("--nodes", type=int, default=8, help="K concurrent simulated nodes (default 8)")
    ap.add_argument("--window", type=int, default=64, help="unacked reads per node stream (default 64)")
    ap.add_argument("--raw-concurrency", type=int, default=512, help="in-flight statements for raw inserts")
    ap.add_argument(
        "--consistency",
        default="ONE",
        help="write consistency for both phases (default ONE: 1 node)",
    )
    args = ap.parse_args()

    with cassandra() as cass:
        ks = f"alpr_bench_{uuid.uuid4().hex[:8]}"
        points, port = cass
        config = HubConfig.model_validate({
            "hub_id": "bench-hub",
            "cassandra": {"contact_points": points, "port": port, "keyspace": ks,
                          "write_consistency": args.consistency, "read_consistency": args.consistency},
        })  # fmt: skip
        cluster, session = connect(config.cassandra)
        migrate(session, config)
        log(f"bench: keyspace {ks}; generating {args.reads} reads for {args.nodes} nodes")
        reads = make_reads(args.reads, args.nodes)
        # warm-up both paths a little so JIT/connection set-up does not count
        log("bench: (a) raw driver inserts …")
        raw_insert(config, reads[: min(2000, len(reads))], args.raw_concurrency)
        raw = raw_insert(config, reads, args.raw_concurrency)
        log(f"bench: raw {raw:.0f} reads/s")

        per_node: list[list[bytes]] = [[] for _ in range(args.nodes)]
        for i, r in enumerate(reads):
            per_node[i % args.nodes].append(ingest_pb2.IngestRequest(read=r).SerializeToString())
        log(f"bench: (b) the same reads through the hub, {args.nodes} node streams …")
        cl = {"write_consistency": args.consistency, "read_consistency": args.consistency}
        with hub_process(cass, ks, ROOT / ".run" / "bench-ingest", cassandra=cl) as target:
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            warm = [n[: max(1, 200 // args.nodes)] for n in per_node]
            p = ctx.Process(target=_client, args=(target, warm, args.window, q))
            p.start()
            q.get()
            p.join()
            p = ctx.Process(target=_client, args=(target, per_node, args.window, q))
            p.start()
            acked, elapsed, latencies = q.get()
            p.join()
        hub_rate = acked / elapsed
        log(f"bench: hub {hub_rate:.0f} reads/s")
        try:  # a busy Cassandra may take its time: the figures are what matters
            session.execute(f"DROP KEYSPACE {ks}", timeout=120)
        except Exception as e:
            log(f"bench: could not drop keyspace {ks} ({e!r}); drop it by hand")
        cluster.shutdown()

    result = {
        "raw_rows_per_s": round(raw, 1),
        "hub_reads_per_s": round(hub_rate, 1),
        "ratio": round(hub_rate / raw, 3),
        "p99_ack_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "p50_ack_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "reads": args.reads,
        "nodes": args.nodes,
        "window": args.window,
        "consistency": args.consistency,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
