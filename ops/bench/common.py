"""Shared plumbing for benchmarks: find or start Cassandra, start/stop a hub process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

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
    """A hub's gRPC target ("host:port") that also knows the hub's process id."""

    pid: int


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
        m = re.search(r"serving on [\d.]+:(\d+)", log_path.read_text())
        if m:
            target = HubTarget(f"127.0.0.1:{m.group(1)}")
            target.pid = proc.pid
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


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]
