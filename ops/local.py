#!/usr/bin/env python3
"""Run the platform locally: Cassandra and the hub, then a sample of reads through it.

    ops/local up       start Cassandra (127.0.0.1:9042) and the hub (:50051, metrics :9101),
                       send sample reads, show one as stored (with its 60-day TTL)
    ops/local status   what is running
    ops/local down     stop the hub (graceful) and Cassandra

Everything lives in .run/local/ (logs: hub.log, cassandra/node1/logs/). Idempotent: `up`
leaves running parts alone. The edge node, bridge and dashboards join as they are built.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run" / "local"
HUB_PID = RUN / "hub.pid"
HUB_LOG = RUN / "hub.log"
HUB_TARGET = "127.0.0.1:50051"


sys.path.insert(0, str(ROOT))
import cassandractl  # noqa: E402  (ops/cassandractl.py, beside this file)


def _cluster() -> Any:
    return cassandractl.CassandraCluster(RUN / "cassandra", nodes=1, base_port=9042, heap="1G")


def _hub_pid() -> int | None:
    try:
        pid = int(HUB_PID.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _hub_healthy(timeout: float = 2.0) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(HUB_TARGET) as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False


def up() -> int:
    RUN.mkdir(parents=True, exist_ok=True)
    print("[1/3] Cassandra")
    _cluster().start()
    print("[2/3] hub")
    if _hub_pid() and _hub_healthy():
        print(f"hub already running (pid {_hub_pid()})")
    else:
        env = {**os.environ, "ALPR_HUB__CASSANDRA__CONTACT_POINTS": "127.0.0.1"}
        with open(HUB_LOG, "ab") as log:
            proc = subprocess.Popen(
                [
                    str(ROOT / ".venv" / "bin" / "alpr-hub"),
                    "serve",
                    "--config",
                    str(ROOT / "ops/config/hub.example.yaml"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        HUB_PID.write_text(str(proc.pid))
        deadline = time.time() + 90
        while not _hub_healthy():
            if proc.poll() is not None or time.time() > deadline:
                print(f"hub failed to start; see {HUB_LOG}:\n" + HUB_LOG.read_text()[-3000:], file=sys.stderr)
                return 1
            time.sleep(0.5)
        print(f"hub serving on {HUB_TARGET} (pid {proc.pid}, log {HUB_LOG.relative_to(ROOT)})")
    print("[3/3] sample: 20 simulated reads from node 'sample-pole-1'")
    _sample()
    print(
        "\nendpoints:\n"
        f"  hub gRPC      {HUB_TARGET}   (grpcurl -plaintext {HUB_TARGET} list)\n"
        "  hub metrics   http://127.0.0.1:9101/metrics\n"
        "  Cassandra     127.0.0.1:9042  (keyspace alpr)\n"
        "stop with: ops/local down"
    )
    return 0


def _sample() -> None:
    import grpc
    from alpr.v1 import ingest_pb2, ingest_pb2_grpc
    from cassandra.cluster import Cluster

    from alpr_common.simulation import make_read, noise_jpeg

    crop = noise_jpeg(136, 40, seed=3)
    reads = [make_read(node_id="sample-pole-1", camera_id="sample-pole-1-north", crop_jpeg=crop) for _ in range(20)]
    with grpc.insecure_channel(HUB_TARGET) as ch:
        answers = list(
            ingest_pb2_grpc.IngestServiceStub(ch).Ingest(iter([ingest_pb2.IngestRequest(read=r) for r in reads]))
        )
    acks = [a for a in answers if a.WhichOneof("result") == "ack"]
    print(f"hub acknowledged {len(acks)}/{len(reads)} reads")
    cluster = Cluster(["127.0.0.1"], port=9042, protocol_version=5)
    try:
        s = cluster.connect("alpr")
        row = s.execute(
            "SELECT read_id, plate, camera_id, capture_time, TTL(plate) AS ttl FROM reads_by_id WHERE read_id = %s",
            [uuid.UUID(reads[0].read_id)],
        ).one()
        print(
            f"stored: read {row.read_id} plate {row.plate} camera {row.camera_id} at {row.capture_time:%Y-%m-%d %H:%M:%S}"
            f" UTC, expires in {row.ttl} s ({row.ttl / 86400:.2f} days)"
        )
    finally:
        cluster.shutdown()


def down() -> int:
    pid = _hub_pid()
    if pid:
        print(f"stopping hub (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            if _hub_pid() is None:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    HUB_PID.unlink(missing_ok=True)
    _cluster().stop()
    return 0


def status() -> int:
    pid = _hub_pid()
    print(f"hub: {'running, pid ' + str(pid) if pid else 'stopped'}{' (healthy)' if pid and _hub_healthy() else ''}")
    for st in _cluster().status():
        print(f"cassandra: {st.line()}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["up", "down", "status"])
    args = ap.parse_args()
    return {"up": up, "down": down, "status": status}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
