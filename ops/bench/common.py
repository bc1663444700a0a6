"""Shared plumbing for benchmarks: find or start Cassandra, start/stop a hub process."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import yaml
from alpr.v1 import ingest_pb2, ingest_pb2_grpc

from ops.cassandractl import CassandraCluster, cql_answers

ROOT = Path(__file__).resolve().parents[2]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextmanager
def cassandra(port: int = 39042) -> Iterator[tuple[list[str], int]]:
    """Use ALPR_BENCH_CASSANDRA=host:port, or a Cassandra answering on 9042, or start one."""
    given = os.environ.get("ALPR_BENCH_CASSANDRA")
    if given:
        host, _, p = given.rpartition(":")
        yield [host], int(p)
        return
    if cql_answers("127.0.0.1", 9042):
        log("bench: using the Cassandra already running on 127.0.0.1:9042")
        yield ["127.0.0.1"], 9042
        return
    cluster = CassandraCluster(ROOT / ".run" / f"bench-cassandra-{port}", nodes=1, base_port=port, heap="1G",
                                   log=log)  # fmt: skip
    cluster.start()
    try:
        yield cluster.contact_points, cluster.port
    finally:
        cluster.stop()


class HubTarget(str):
    """A hub's gRPC target ("host:port") that also knows the hub's process id and metrics port
    (None unless the hub was started with ``metrics_port=0`` or a port)."""

    pid: int
    metrics_port: int | None = None


def process_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds used so far, resident memory in MB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss_kb = next(
        int(ln.split()[1]) for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("VmRSS:")
    )
    return cpu, rss_kb / 1024


@contextmanager
def hub_process(
    cass: tuple[list[str], int], keyspace: str, run_dir: Path, start_timeout_s: float = 120, **extra: Any
) -> Iterator[HubTarget]:
    """Run ``alpr-hub serve`` in its own process; yields its gRPC target once it serves (within
    ``start_timeout_s``).

    ``extra`` sections are merged over the defaults (e.g. ``cassandra={"write_consistency": "ONE"}``).
    """
    points, port = cass
    cfg: dict[str, Any] = {
        "insecure_dev": True,  # benchmarks on loopback; the secured path is measured where a bench passes auth/tls
        "hub_id": "bench-hub",
        "listen_host": "127.0.0.1",
        "grpc_port": 0,
        "metrics_port": -1,
        "cassandra": {"contact_points": points, "port": port, "keyspace": keyspace},
    }
    for key, value in extra.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "hub.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log_path = run_dir / "hub.log"
    # Output to a file: a pipe nobody reads would fill up and block the hub's logging.
    with open(log_path, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "serve", "--config", str(path), "--log-level", "WARNING"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    target: HubTarget | None = None
    deadline = time.time() + start_timeout_s
    while time.time() < deadline and proc.poll() is None:
        m = re.search(r"serving on [\d.]+:(\d+) \(metrics :(\w+)\)", log_path.read_text())
        if m:
            target = HubTarget(f"127.0.0.1:{m.group(1)}")
            target.pid = proc.pid
            target.metrics_port = int(m.group(2)) if m.group(2).isdigit() else None
            break
        time.sleep(0.05)
    if target is None:
        proc.kill()
        raise RuntimeError("hub did not start:\n" + log_path.read_text()[-3000:])
    try:
        yield target
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def histogram(metrics_port: int, name: str, labels: dict[str, str]) -> list[tuple[float, float]]:
    """A Prometheus histogram scraped from a hub: [(upper bound, cumulative count)], +Inf last."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    text = urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    out = []
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            if smp.name == f"{name}_bucket" and all(smp.labels.get(k) == v for k, v in labels.items()):
                out.append((float(smp.labels["le"]), smp.value))
    return sorted(out)


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus-style quantile estimate (linear within the bucket); NaN when empty."""
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    rank = q * buckets[-1][1]
    prev_le, prev_n = 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_n) / max(1e-12, n - prev_n))
        prev_le, prev_n = le, n
    return prev_le


def stage_ms(metrics_port: int, name: str, label: str, values: list[str]) -> dict[str, dict[str, float]]:
    """p50/p99 (estimated from the histogram's buckets, ms) and count of each ``label`` value."""
    out = {}
    for v in values:
        b = histogram(metrics_port, name, {label: v})
        out[v] = {
            "p50_ms": round(histogram_quantile(b, 0.5) * 1000, 1),
            "p99_ms": round(histogram_quantile(b, 0.99) * 1000, 1),
            "count": b[-1][1] if b else 0,
        }
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


class AckedIngestStream:
    """One Ingest stream to ``target`` (plain gRPC, a bench hub) that records when each read is acked."""

    def __init__(self, target: str) -> None:
        self._q: queue.Queue[ingest_pb2.IngestRequest | None] = queue.Queue()
        self.acks: dict[str, float] = {}  # read id -> perf_counter() of its ack
        self._stream = ingest_pb2_grpc.IngestServiceStub(grpc.insecure_channel(target)).Ingest(self._requests())
        threading.Thread(target=self._drain, daemon=True).start()

    def _requests(self) -> Iterator[ingest_pb2.IngestRequest]:
        while (m := self._q.get()) is not None:
            yield m

    def _drain(self) -> None:
        for r in self._stream:
            if r.WhichOneof("result") == "ack":
                self.acks[r.ack.read_id] = time.perf_counter()

    def send(self, request: ingest_pb2.IngestRequest) -> None:
        self._q.put(request)

    def close(self) -> None:
        """Ends the stream once everything sent has gone out."""
        self._q.put(None)
