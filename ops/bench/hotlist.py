#!/usr/bin/env python3
"""Hot-list benchmark: import rate, in-process match rate, delta propagation latency to
subscribed nodes, read ingested → alert on a watcher on another hub replica.

    .venv/bin/python -m ops.bench.hotlist [--entries 1000000] [--nodes 50] [--deltas 20] [--alerts 200]

Progress on stderr; the last line is JSON:
{"import_entries_per_s", "matches_per_s", "delta_p99_ms", "alert_p99_ms", ...}.
With the import: ``replica_catch_up_s``, from the importing hub serving the new version to a
second hub replica on the same keyspace serving it (read from the change log into its
in-memory mirror), and ``snapshot_entries_per_s``, the rate a node subscribing from version 0
receives the whole list.
Targets: 1,000,000 entries imported in <= 2 min, >= 200,000 matches/s against
1,000,000 entries, delta p99 <= 1 s to 50 nodes, alert p99 <= 250 ms (per stage, and against
the feed-poll path in the same run: ``ops.bench.hit_to_watch``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import queue
import random
import string
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
from alpr.v1 import alert_pb2, alert_pb2_grpc, hotlist_pb2, hotlist_pb2_grpc, ingest_pb2

from alpr_common.hotlist_model import entry_to_proto
from alpr_common.matching import Matcher, with_version
from alpr_common.simulation import make_read
from alpr_common.timestamps import timestamp_in
from hub.hotlists.file_formats import parse_file
from ops.bench.common import ROOT, AckedIngestStream, cassandra, hub_process, log, percentile, process_usage

TEMPLATE = "601815V ILMPSTOLEN VYR/13 VMA/JEEP VMO/F15 VST/2D VCO/WHI     DOT/040216 LDS/V23A0968"
STATES = ("IL", "IL", "IL", "IL", "WI", "IN", "MO", "IA")


def plates(n: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    out: set[str] = set()
    alphabet = string.ascii_uppercase + string.digits
    while len(out) < n:
        out.add("".join(rnd.choices(alphabet, k=rnd.choice((6, 7, 7, 7, 8)))))
    return sorted(out)


def leads_file(ps: list[str]) -> bytes:
    lines = []
    for i, p in enumerate(ps):
        st = STATES[i % len(STATES)]
        lines.append(f"{p:<8}{st}{TEMPLATE[10:77]}V{i:07d}")
    return ("\n".join(lines) + "\n").encode()


def bench_import(target: str, data: bytes) -> tuple[float, hotlist_pb2.ImportResult]:
    def reqs() -> Iterator[hotlist_pb2.ImportListRequest]:
        yield hotlist_pb2.ImportListRequest(
            header=hotlist_pb2.ImportHeader(
                format=hotlist_pb2.IMPORT_FORMAT_IL_LEADS, source=hotlist_pb2.HOT_LIST_SOURCE_LEADS,
                imported_by="bench", file_name="bench.txt",
            )
        )  # fmt: skip
        for i in range(0, len(data), 1 << 20):
            yield hotlist_pb2.ImportListRequest(data=data[i : i + (1 << 20)])

    t0 = time.perf_counter()
    result = None
    last = ""
    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 1 << 30)]) as ch:
        for resp in hotlist_pb2_grpc.HotListServiceStub(ch).ImportList(reqs(), timeout=1800):
            if resp.WhichOneof("payload") == "result":
                result = resp.result
            else:
                pr = resp.progress
                msg = f"{pr.phase} {pr.done}/{pr.total}"
                if pr.phase != last or pr.done == pr.total:
                    log(f"  import: {msg} at {time.perf_counter() - t0:.1f} s")
                    last = pr.phase
    assert result is not None
    return time.perf_counter() - t0, result


def _rss_mb() -> float:
    return process_usage(os.getpid())[1]


def bench_match(ps: list[str], reads: int) -> dict[str, float]:
    """The hub's matcher holding ``ps`` as a LEADS import leaves them: build time, memory, a
    full garbage collection's pause, and match rate (wall clock and per CPU second: on a
    shared machine the second is what the matcher itself costs)."""
    log(f"match: building the matcher with {len(ps)} LEADS entries")
    data = leads_file(ps)
    entries = parse_file("IL_LEADS", data, "LEADS", "bench").entries
    del data
    gc.collect()
    rss0 = _rss_mb()
    # As the hub's mirror applies an import: the store has encoded each entry for the change
    # log already (timed apart: the hub pays it whichever matcher it runs).
    t0 = time.process_time()
    blobs = [with_version(entry_to_proto(e).SerializeToString(), 1) for e in entries]
    encode_cpu_s = time.process_time() - t0
    m = Matcher()
    t0, c0 = time.perf_counter(), time.process_time()
    m.reserve(len(entries))
    for e, blob in zip(entries, blobs, strict=True):
        m.upsert(e, blob)
    build_s, build_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    del entries, e, blobs, blob
    gc.collect()
    held_mb = _rss_mb() - rss0
    t0 = time.perf_counter()
    gc.collect()
    gc_ms = (time.perf_counter() - t0) * 1000
    rnd = random.Random(3)
    alphabet = string.ascii_uppercase + string.digits
    sample = ["".join(rnd.choices(alphabet, k=7)) for _ in range(reads)]
    for i in range(0, reads, 100):  # 1 % hits
        sample[i] = ps[rnd.randrange(len(ps))]
    log(f"match: {reads} reads")
    match = m.match
    t0, c0 = time.perf_counter(), time.process_time()
    hits = 0
    for p in sample:
        if match(p, "IL"):
            hits += 1
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    load = os.getloadavg()[0]
    log(
        f"match: {reads / dt:,.0f} reads/s wall, {reads / cpu:,.0f} per CPU second ({hits} with a match); "
        f"built in {build_s:.1f} s ({build_cpu_s:.1f} s CPU), {held_mb:.0f} MB, full GC {gc_ms:.0f} ms; load {load:.1f}"
    )
    return {
        "matches_per_s": round(reads / dt),
        "matches_per_cpu_s": round(reads / cpu),
        "match_build_s": round(build_s, 1),
        "match_build_cpu_s": round(build_cpu_s, 1),
        "encode_cpu_s": round(encode_cpu_s, 1),
        "matcher_mb": round(held_mb),
        "full_gc_ms": round(gc_ms, 1),
        "match_load_avg": round(load, 1),
    }


class Node(threading.Thread):
    """One subscribed node: records when each delta version arrives."""

    def __init__(self, target: str, node_id: str, have: int) -> None:
        super().__init__(daemon=True)
        self.target, self.node_id, self.have = target, node_id, have
        self.arrivals: dict[int, float] = {}
        self.ready = threading.Event()
        self._q: queue.Queue[hotlist_pb2.SubscribeRequest | None] = queue.Queue()
        self.call: grpc.CallIterator[hotlist_pb2.SubscribeResponse] | None = None

    def run(self) -> None:
        self._q.put(hotlist_pb2.SubscribeRequest(start=hotlist_pb2.SubscribeStart(node_id=self.node_id,
                                                                                  have_version=self.have)))  # fmt: skip

        def it() -> Iterator[hotlist_pb2.SubscribeRequest]:
            while (m := self._q.get()) is not None:
                yield m

        with grpc.insecure_channel(self.target) as ch:
            self.call = call = hotlist_pb2_grpc.HotListServiceStub(ch).Subscribe(it())
            try:
                for r in call:
                    k = r.WhichOneof("payload")
                    if k == "delta" and not r.delta.more:
                        self.arrivals[r.delta.version] = time.perf_counter()
                        self._q.put(hotlist_pb2.SubscribeRequest(ack=hotlist_pb2.SubscribeAck(version=r.delta.version)))
                    elif k == "current":
                        self.ready.set()
            except grpc.RpcError:
                pass

    def stop(self) -> None:
        self._q.put(None)
        if self.call is not None:
            self.call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leave RpcContext.cancel untyped


class VersionWatch(threading.Thread):
    """Polls hubs' hot-list versions; records when each first serves a version (perf_counter)."""

    def __init__(self, targets: list[str], version: int = 1) -> None:
        super().__init__(daemon=True)
        self.targets, self.version = targets, version
        self.seen: dict[str, float] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        stubs = {t: hotlist_pb2_grpc.HotListServiceStub(grpc.insecure_channel(t)) for t in self.targets}
        while not self.halt.is_set() and len(self.seen) < len(stubs):
            for t, stub in stubs.items():
                if t not in self.seen:
                    with contextlib.suppress(grpc.RpcError):
                        if stub.GetVersion(hotlist_pb2.GetVersionRequest(), timeout=60).version >= self.version:
                            self.seen[t] = time.perf_counter()
            time.sleep(0.02)


def bench_snapshot(target: str) -> tuple[int, float]:
    """(entries, seconds) for a node subscribing with nothing to receive the whole list."""
    start = hotlist_pb2.SubscribeRequest(start=hotlist_pb2.SubscribeStart(node_id="bench-snapshot", have_version=0))
    done = threading.Event()

    def it() -> Iterator[hotlist_pb2.SubscribeRequest]:
        yield start
        done.wait(600)

    entries = 0
    t0 = time.perf_counter()
    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)]) as ch:
        call = hotlist_pb2_grpc.HotListServiceStub(ch).Subscribe(it())
        for r in call:
            k = r.WhichOneof("payload")
            if k == "snapshot_chunk":
                entries += len(r.snapshot_chunk.entries)
            elif k == "snapshot_end":
                break
        secs = time.perf_counter() - t0
        done.set()
        call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leave RpcContext.cancel untyped
    return entries, secs


def bench_deltas(writer: str, reader: str, nodes: int, deltas: int) -> list[float]:
    hl = hotlist_pb2_grpc.HotListServiceStub(grpc.insecure_channel(writer))
    have = hotlist_pb2_grpc.HotListServiceStub(grpc.insecure_channel(reader)).GetVersion(
        hotlist_pb2.GetVersionRequest()).version  # fmt: skip
    subs = [Node(reader, f"bench-node-{i}", have) for i in range(nodes)]
    for s in subs:
        s.start()
    for s in subs:
        assert s.ready.wait(60), "subscriber did not get current"
    log(f"deltas: {nodes} nodes subscribed on {reader}; committing {deltas} changes on {writer}")
    sent: dict[int, float] = {}
    for i in range(deltas):
        t0 = time.perf_counter()
        v = hl.AddEntry(hotlist_pb2.AddEntryRequest(expire_time=timestamp_in(timedelta(days=30)), plate=f"DLT{i:04d}", state="IL", reason="bench",
                        entered_by="bench", category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE)).version  # fmt: skip
        sent[v] = t0
        time.sleep(0.25)
    deadline = time.time() + 30
    while time.time() < deadline and any(len(s.arrivals) < deltas for s in subs):
        time.sleep(0.1)
    lat = [(s.arrivals[v] - t0) * 1000 for s in subs for v, t0 in sent.items() if v in s.arrivals]
    missing = nodes * deltas - len(lat)
    for s in subs:
        s.stop()
    log(f"deltas: p50 {percentile(lat, 0.5):.0f} ms p99 {percentile(lat, 0.99):.0f} ms, {missing} not received")
    return lat


def bench_alerts(hub_a: str, hub_b: str, n: int) -> list[float]:
    hl = hotlist_pb2_grpc.HotListServiceStub(grpc.insecure_channel(hub_a))
    for i in range(20):
        v = hl.AddEntry(hotlist_pb2.AddEntryRequest(expire_time=timestamp_in(timedelta(days=30)), plate=f"ALRT{i:03d}", state="IL", reason="bench", entered_by="b",
                        category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE)).version  # fmt: skip
    hb = hotlist_pb2_grpc.HotListServiceStub(grpc.insecure_channel(hub_b))
    while hb.GetVersion(hotlist_pb2.GetVersionRequest()).version < v:
        time.sleep(0.05)
    received: dict[str, float] = {}
    call = alert_pb2_grpc.AlertServiceStub(grpc.insecure_channel(hub_b)).Watch(alert_pb2.WatchRequest())
    call.initial_metadata()

    def drain() -> None:
        try:
            for ev in call:
                received.setdefault(ev.alert.read_id, time.perf_counter())
        except grpc.RpcError:
            pass

    threading.Thread(target=drain, daemon=True).start()
    sent: dict[str, float] = {}
    stream = AckedIngestStream(hub_a)
    acks = stream.acks
    rnd = random.Random(5)
    log(f"alerts: {n} matching reads into {hub_a} (plus 9 non-matching each), watcher on {hub_b}")
    for i in range(n):
        for _ in range(9):
            stream.send(ingest_pb2.IngestRequest(read=make_read(rnd=rnd)))
        r = make_read(plate=f"ALRT{i % 20:03d}", rnd=rnd)
        sent[r.read_id] = time.perf_counter()
        stream.send(ingest_pb2.IngestRequest(read=r))
        time.sleep(0.05)
    deadline = time.time() + 20
    while time.time() < deadline and len([k for k in sent if k in received]) < n:
        time.sleep(0.1)
    stream.close()
    call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leave RpcContext.cancel untyped
    lat = [(received[k] - t) * 1000 for k, t in sent.items() if k in received]
    ack_lat = [(acks[k] - t) * 1000 for k, t in sent.items() if k in acks]
    log(f"alerts: p50 {percentile(lat, 0.5):.0f} ms p99 {percentile(lat, 0.99):.0f} ms ({n - len(lat)} missing); "
        f"ack of a matching read p50 {percentile(ack_lat, 0.5):.0f} ms p99 {percentile(ack_lat, 0.99):.0f} ms")  # fmt: skip
    return lat


def _drop(cass: tuple[list[str], int], keyspaces: list[str]) -> None:
    """Drop the benchmark's keyspaces (a million-entry list is not worth keeping)."""
    from alpr_common.cassandra import connect
    from hub.config import HubConfig

    points, port = cass
    cluster, session = connect(
        HubConfig.model_validate({"cassandra": {"contact_points": points, "port": port}}).cassandra
    )
    try:
        for ks in keyspaces:
            session.execute(f"DROP KEYSPACE IF EXISTS {ks}", timeout=120)
    finally:
        cluster.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--match-reads", type=int, default=500_000)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--deltas", type=int, default=20)
    ap.add_argument("--alerts", type=int, default=200)
    ap.add_argument(
        "--skip", action="append", default=[], choices=["import", "match", "deltas", "alerts", "replica", "snapshot"]
    )
    args = ap.parse_args()
    out: dict[str, Any] = {"entries": args.entries, "nodes": args.nodes}
    log(f"generating {args.entries} unique plates")
    ps = plates(args.entries)
    if "match" not in args.skip:
        out.update(bench_match(ps, args.match_reads))
    fast = {"hotlists": {"poll_interval_s": 0.1}, "alerts": {"feed_poll_interval_s": 0.075}}
    run = ROOT / ".run" / "bench-hotlist"
    if not {"import", "deltas", "alerts"} <= set(args.skip):
        with cassandra() as cass:
            try:
                _run_cluster_parts(cass, args, ps, out, run, fast)
            finally:
                _drop(cass, out.pop("_keyspaces", []))
    for k in ("import_entries_per_s", "matches_per_s", "delta_p99_ms", "alert_p99_ms"):
        out.setdefault(k, None)
    print(json.dumps(out), flush=True)
    return 0


def _run_cluster_parts(
    cass: tuple[list[str], int],
    args: argparse.Namespace,
    ps: list[str],
    out: dict[str, Any],
    run: Path,
    fast: dict[str, Any],
) -> None:
    """Import, deltas and alerts against hub processes; keyspaces go to out["_keyspaces"]."""
    ks = f"alpr_bench_hl_{uuid.uuid4().hex[:8]}"
    out["_keyspaces"] = [ks]
    replica = "import" not in args.skip and "replica" not in args.skip
    with (
        hub_process(cass, ks, run / "a", cassandra={"write_consistency": "ONE"}, **fast) as hub_a,
        hub_process(cass, ks, run / "a2", cassandra={"write_consistency": "ONE"}, hub_id="bench-a2", **fast)
        if replica
        else contextlib.nullcontext("") as hub_a2,
    ):
        if "import" not in args.skip:
            data = leads_file(ps)
            log(f"import: {len(data) / 1e6:.0f} MB LEADS file, {args.entries} entries, into {hub_a}")
            watch = VersionWatch([hub_a, hub_a2] if hub_a2 else [hub_a])
            watch.start()
            secs, res = bench_import(hub_a, data)
            del data
            out["import_seconds"] = round(secs, 1)
            out["import_entries_per_s"] = round(res.added / secs)
            log(
                f"import: {res.added} added in {secs:.1f} s = {res.added / secs:,.0f} entries/s (version {res.version})"
            )
            watch.join(120)
            watch.halt.set()
            if hub_a2 and len(watch.seen) == 2:
                lag = watch.seen[hub_a2] - watch.seen[hub_a]
                out["replica_catch_up_s"] = round(lag, 2)
                log(f"replica: {hub_a2} serves version {res.version} {lag:.2f} s after the importing hub")
            if "snapshot" not in args.skip:
                n, secs = bench_snapshot(hub_a)
                out["snapshot_seconds"] = round(secs, 2)
                out["snapshot_entries_per_s"] = round(n / secs)
                log(f"snapshot: {n} entries to a fresh node in {secs:.2f} s = {n / secs:,.0f} entries/s")
        if "deltas" not in args.skip:
            lat = bench_deltas(hub_a, hub_a, args.nodes, args.deltas)
            out["delta_same_hub_p99_ms"] = round(percentile(lat, 0.99), 1)
    if "alerts" not in args.skip or "deltas" not in args.skip:
        ks2 = f"alpr_bench_al_{uuid.uuid4().hex[:8]}"
        out["_keyspaces"].append(ks2)
        one = {"write_consistency": "ONE"}
        with (
            hub_process(cass, ks2, run / "b2", cassandra=one, hub_id="bench-b", **fast) as b,
            # A pushes the alerts it raises to B (alerts.peers); B's watcher does not wait for its feed poll.
            hub_process(cass, ks2, run / "b1", cassandra=one, hub_id="bench-a", hotlists=fast["hotlists"],
                        alerts={**fast["alerts"], "peers": [str(b)]}) as a,
        ):  # fmt: skip
            if "deltas" not in args.skip:
                # Across replicas: committed on A, subscribers on B (B learns it by tailing the log).
                lat = bench_deltas(a, b, args.nodes, args.deltas)
                out["delta_p50_ms"] = round(percentile(lat, 0.5), 1)
                out["delta_p99_ms"] = round(percentile(lat, 0.99), 1)
            if "alerts" not in args.skip:
                lat = bench_alerts(a, b, args.alerts)
                out["alert_p50_ms"] = round(percentile(lat, 0.5), 1)
                out["alert_p99_ms"] = round(percentile(lat, 0.99), 1)


if __name__ == "__main__":
    sys.exit(main())
