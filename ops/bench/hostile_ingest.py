#!/usr/bin/env python3
"""Hub memory under hostile ingest: resident memory idle, with 50 stalled streams, and while
300 large (~500 KB) reads arrive.

A stalled stream sends the start of one message (the gRPC prefix declares 1 MB, 60 KB follow)
and then nothing; the hub must close it after ``ingest.idle_timeout_s`` and not hold memory
for it meanwhile. The large reads come on 10 streams at once; like a node, each stream's
sender sends again what was not acked (on a new stream) until every read is acked or
``--deadline`` passes. Meanwhile a probe calls the hub's health check every 20 ms (an
unrelated call: target <= 200 ms). Target: the hub's RSS stays within 1.5x its idle value
and every read is acked. Prints progress on stderr and, as the last line, JSON:
  {"idle_rss_mb", "stalled_peak_rss_mb", "stalled_ratio", "large_reads_peak_rss_mb",
   "large_reads_ratio", "rss_after_idle_timeout_mb", "large_reads_acked",
   "large_reads_acked_first_try", "large_read_errors", "large_reads_s",
   "probe_max_ms", "probe_p99_ms", "hub_poll_failures", ...}

    .venv/bin/python -m ops.bench.hostile_ingest [--stalled 50] [--large 300]
        [--max-bytes-in-flight N]   (the hub's ingest.max_bytes_in_flight; default: the hub's own)
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
from alpr.v1 import ingest_pb2, reads_pb2

from alpr_common.cassandra import connect
from alpr_common.simulation import make_read, noise_jpeg
from hub.config import HubConfig
from hub.schema import migrate
from ops.bench.common import ROOT, cassandra, hub_process, log, percentile
from tests.support import LatencyProbe, run_stream


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class PeakRss:
    """Samples a process's RSS every 20 ms and keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            self._stop.wait(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def stalled_stream(port: int, declared: int = 1 << 20, sent: int = 60_000) -> socket.socket:
    """An Ingest stream opened by hand (HTTP/2, no TLS) that sends part of one message, then nothing."""

    def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
        return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload

    def literal(name: bytes, value: bytes) -> bytes:  # HPACK literal without indexing
        return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value

    headers = b"".join(
        literal(k, v)
        for k, v in (
            (b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/alpr.v1.IngestService/Ingest"),
            (b":authority", b"127.0.0.1"), (b"content-type", b"application/grpc"), (b"te", b"trailers"),
        )
    )  # fmt: skip
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(0x4, 0, 0, b"") + frame(0x1, 0x4, 1, headers))
    body = b"\x00" + declared.to_bytes(4, "big") + bytes(sent)
    for i in range(0, len(body), 16_000):  # DATA frames within the default 16 KB frame size
        s.sendall(frame(0x0, 0, 1, body[i : i + 16_000]))
    return s


class NodeSender:
    """One simulated node: sends its reads on a stream, and what was not acked again on a new
    stream (as a node's store-and-forward queue does) until all are acked or the deadline."""

    def __init__(self, target: str, reads: list[reads_pb2.PlateRead], deadline: float) -> None:
        self.target, self.reads, self.deadline = target, reads, deadline
        self.acked: set[str] = set()
        self.first_try = 0
        self.errors: dict[str, int] = {}

    def run(self) -> None:
        attempt = 0
        while time.monotonic() < self.deadline:
            todo = [r for r in self.reads if r.read_id not in self.acked]
            if not todo:
                return
            timeout = max(1.0, self.deadline - time.monotonic())
            result = run_stream(self.target, [ingest_pb2.IngestRequest(read=r) for r in todo], timeout=timeout)
            self.acked |= set(result.acks)
            if attempt == 0:
                self.first_try = len(result.acks)
            for err in result.errors.values():
                name = next(c.name for c in grpc.StatusCode if c.value[0] == err.code)
                self.errors[name] = self.errors.get(name, 0) + 1
            if result.status != grpc.StatusCode.OK:
                self.errors[f"stream {result.status.name}"] = self.errors.get(f"stream {result.status.name}", 0) + 1
            attempt += 1
            time.sleep(0.5)


def large_read(rnd: random.Random, size: int) -> reads_pb2.PlateRead:
    """A valid read whose frame is a real JPEG padded with comment segments to ``size`` bytes."""
    base = noise_jpeg(320, 240, seed=rnd.randrange(1000), quality=80)
    pad, comments = size - len(base), b""
    while pad > 4:
        n = min(pad - 4, 65_533)
        comments += b"\xff\xfe" + (n + 2).to_bytes(2, "big") + bytes(n)
        pad -= n + 4
    read = make_read("bench-h", "bench-h-cam", rnd=rnd, frame_jpeg=base[:2] + comments + base[2:])
    read.frame_width, read.frame_height = 320, 240  # the frame image's own size
    return read


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stalled", type=int, default=50)
    ap.add_argument("--large", type=int, default=300)
    ap.add_argument("--large-bytes", type=int, default=500_000)
    ap.add_argument("--idle-timeout", type=float, default=10.0)
    ap.add_argument("--max-bytes-in-flight", type=int, default=None, help="the hub's ingest.max_bytes_in_flight")
    ap.add_argument("--deadline", type=float, default=300.0, help="seconds for every large read to be acked")
    args = ap.parse_args()
    rnd = random.Random(5)
    with cassandra() as cass:
        ks = f"alpr_bench_{uuid.uuid4().hex[:8]}"
        points, port = cass
        config = HubConfig.model_validate(
            {"insecure_dev": True, "cassandra": {"contact_points": points, "port": port, "keyspace": ks}}
        )
        cluster, session = connect(config.cassandra)
        migrate(session, config)
        ingest: dict[str, object] = {"idle_timeout_s": args.idle_timeout}
        if args.max_bytes_in_flight is not None:
            ingest["max_bytes_in_flight"] = args.max_bytes_in_flight
        run_dir = ROOT / ".run" / "bench-hostile"
        with hub_process(cass, ks, run_dir, ingest=ingest, cassandra={"write_consistency": "ONE"}) as target:
            pid, hub_port = target.pid, int(target.rsplit(":", 1)[1])
            warm = run_stream(target, [ingest_pb2.IngestRequest(read=make_read(rnd=rnd)) for _ in range(50)])
            assert len(warm.acks) == 50, warm
            time.sleep(2)
            idle = rss_mb(pid)
            log(f"bench: idle hub RSS {idle:.0f} MB")

            with PeakRss(pid) as stalled_peak:
                socks = [stalled_stream(hub_port) for _ in range(args.stalled)]
                time.sleep(args.idle_timeout + 5)  # past the idle timeout: the hub has closed them
                after_timeout = rss_mb(pid)
                for s in socks:
                    s.close()
            log(f"bench: {args.stalled} stalled streams: peak RSS {stalled_peak.peak:.0f} MB")

            reads = [large_read(rnd, args.large_bytes) for _ in range(args.large)]
            log_at = (run_dir / "hub.log").stat().st_size
            deadline = time.monotonic() + args.deadline
            senders = [NodeSender(target, reads[i::10], deadline) for i in range(10)]
            with PeakRss(pid) as large_peak, LatencyProbe(target) as probe:
                t0 = time.perf_counter()
                threads = [threading.Thread(target=s.run) for s in senders]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                large_s = time.perf_counter() - t0
            with open(run_dir / "hub.log", "rb") as f:
                f.seek(log_at)
                poll_failures = sum(1 for ln in f if b"poll failed" in ln)
            errors: dict[str, int] = {}
            for sender in senders:
                for k, v in sender.errors.items():
                    errors[k] = errors.get(k, 0) + v
            log(f"bench: {args.large} reads of {args.large_bytes} B: peak RSS {large_peak.peak:.0f} MB, "
                f"{sum(len(s.acked) for s in senders)} acked in {large_s:.1f} s, errors {errors}")  # fmt: skip
        try:
            session.execute(f"DROP KEYSPACE {ks}", timeout=120)
        except Exception as e:
            log(f"bench: could not drop keyspace {ks} ({e!r})")
        cluster.shutdown()
    print(
        json.dumps(
            {
                "idle_rss_mb": round(idle, 1),
                "stalled_streams": args.stalled,
                "stalled_peak_rss_mb": round(stalled_peak.peak, 1),
                "stalled_ratio": round(stalled_peak.peak / idle, 3),
                "rss_after_idle_timeout_mb": round(after_timeout, 1),
                "idle_timeout_s": args.idle_timeout,
                "large_reads": args.large,
                "large_read_bytes": args.large_bytes,
                "max_bytes_in_flight": args.max_bytes_in_flight,
                "large_reads_acked": sum(len(s.acked) for s in senders),
                "large_reads_acked_first_try": sum(s.first_try for s in senders),
                "large_read_errors": errors,
                "large_reads_s": round(large_s, 1),
                "large_reads_peak_rss_mb": round(large_peak.peak, 1),
                "large_reads_ratio": round(large_peak.peak / idle, 3),
                "probe_max_ms": round(max(probe.latencies, default=float("nan")) * 1000, 1),
                "probe_p99_ms": round(percentile(probe.latencies, 0.99) * 1000, 1),
                "hub_poll_failures": poll_failures,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
