#!/usr/bin/env python3
"""Dispatch bridge benchmark: officer decision → signed webhook received by the CAD.

Starts (when nothing is running) Cassandra, a hub process and an ``alpr-bridge`` process
with one webhook sink pointing at a real HTTP receiver in this process (which verifies
every HMAC signature). Then:

1. latency: ``--alerts`` alerts are accepted one after another at ``--rate`` per second;
   for each, the time from sending DecideAlert to the webhook request arriving;
2. throughput: with the bridge stopped, ``--burst`` alerts are accepted (16 in parallel);
   the bridge is restarted and relays the backlog from its stored stream position:
   relays per second from the first to the last webhook received.

Both are run twice in one invocation, each time with a fresh hub and keyspace: first the
baseline (``alerts.push: false``: the bridge's Watch hears of a decision only when the hub's
next poll of the alert feed finds it), then the default (the deciding hub hands the stored
decision to its Watch streams at once). Per stage: ``decide`` (DecideAlert call), ``stored``
(the hub's answer → the webhook), and inside the hub (from its metrics, estimated from the
histogram buckets) the decision's ``read``, ``claim`` (the lightweight transaction),
``record`` (history and feed written, watchers told) and ``audit``.

Last line: ``{"dispatch_p50_ms", "dispatch_p99_ms", "stored_to_dispatch_p99_ms", "relays_per_s",
..., "stages", "baseline": {... the same for the feed-poll path}, "p99_ratio"}``; ``--no-baseline``
skips the first run. ``ALPR_BENCH_CASSANDRA=host:port`` uses a running Cassandra.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import yaml
from alpr.v1 import alert_pb2, alert_pb2_grpc, hotlist_pb2, hotlist_pb2_grpc, ingest_pb2, ingest_pb2_grpc

from alpr_common.simulation import make_read
from alpr_common.timestamps import timestamp_in
from dispatch_bridge.sinks import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify_signature
from hub.alerts import alert_id_for
from ops.bench.common import ROOT, cassandra, hub_process, log, percentile, stage_ms

SECRET = b"bench-secret"
PLATE = "DSP1234"


class Receiver:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.bad = 0
        self.lock = threading.Lock()
        recv = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = time.monotonic()
                ok = verify_signature(SECRET, self.headers.get(SIGNATURE_HEADER, ""), body)
                with recv.lock:
                    if ok:
                        recv.arrived.setdefault(self.headers.get(IDEMPOTENCY_HEADER, ""), now)
                    else:
                        recv.bad += 1
                self.send_response(200 if ok else 401)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cad"


def _retry(fn: Any, what: str, tries: int = 5) -> Any:
    for i in range(tries):
        try:
            return fn()
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.FAILED_PRECONDITION and i > 0:
                return None  # an earlier attempt that timed out did apply
            if i == tries - 1:
                raise
            log(f"bench: {what} failed ({e.code().name}), retrying")
            time.sleep(1.0)


def raise_alerts(target: str, n: int) -> list[str]:
    reads = {r.read_id: r for r in (make_read(plate=PLATE, camera_id="bench-cam") for _ in range(n))}
    todo = dict(reads)
    with grpc.insecure_channel(target) as ch:
        for _ in range(5):
            if not todo:
                break
            for resp in ingest_pb2_grpc.IngestServiceStub(ch).Ingest(
                iter([ingest_pb2.IngestRequest(read=r) for r in todo.values()]), timeout=300
            ):
                if resp.WhichOneof("result") == "ack":
                    todo.pop(resp.ack.read_id, None)
    assert not todo, f"{len(todo)} of {n} reads not acked"
    return [str(alert_id_for(rid)) for rid in reads]


def decide(stub: alert_pb2_grpc.AlertServiceStub, aid: str, acked: dict[str, float] | None = None) -> float:
    t = time.monotonic()
    _retry(
        lambda: stub.DecideAlert(
            alert_pb2.DecideAlertRequest(
                alert_id=aid,
                officer_id="bench",
                accept=alert_pb2.Acceptance(
                    characters_verified=True,
                    state_verified=True,
                    leads_check=alert_pb2.LEADS_CHECK_DONE,
                    action=alert_pb2.ENFORCEMENT_ACTION_TAKING_ACTION,
                ),
            ),
            timeout=30,
        ),
        "DecideAlert",
    )
    if acked is not None:
        acked[aid] = time.monotonic()
    return t


def wait_all(recv: Receiver, keys: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with recv.lock:
            if all(k in recv.arrived for k in keys):
                return
        time.sleep(0.01)
    missing = [k for k in keys if k not in recv.arrived]
    raise RuntimeError(f"{len(missing)} relays not received in {timeout} s")


def ms(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(values, 0.50), 1), "p99_ms": round(percentile(values, 0.99), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alerts", type=int, default=200, help="alerts for the latency run")
    ap.add_argument("--rate", type=float, default=20.0, help="decisions per second in the latency run")
    ap.add_argument("--burst", type=int, default=400, help="alerts for the throughput run")
    ap.add_argument("--no-baseline", action="store_true", help="skip the feed-poll baseline run")
    args = ap.parse_args()
    with cassandra() as cass:
        before = None
        if not args.no_baseline:
            log("bench: baseline (alerts.push: false, watchers hear by polling the feed)")
            before = run_case(cass, args, push=False)
        log("bench: default path (alerts.push: true)")
        result = run_case(cass, args, push=True)
    if before is not None:
        result["baseline"] = before
        result["p99_ratio"] = round(before["dispatch_p99_ms"] / max(1e-9, result["dispatch_p99_ms"]), 2)
        result["stored_p99_ratio"] = round(
            before["stored_to_dispatch_p99_ms"] / max(1e-9, result["stored_to_dispatch_p99_ms"]), 2
        )
    print(json.dumps(result), flush=True)
    return 0


def run_case(cass: tuple[list[str], int], args: argparse.Namespace, push: bool) -> dict[str, Any]:
    """The latency and throughput runs against a fresh hub (``alerts.push`` as given) and bridge."""
    keyspace = f"alpr_bench_dispatch_{uuid.uuid4().hex[:8]}"
    run_dir = Path(tempfile.mkdtemp(prefix="alpr-bench-dispatch-"))
    # alerts left pending are not unattended within the bench (the hub's threshold, which the bridge follows)
    with hub_process(cass, keyspace, run_dir, cassandra={"write_consistency": "ONE", "read_consistency": "ONE"},
                     alerts={"push": push, "unattended_after_s": 3600}, metrics_port=0) as target:  # fmt: skip
        hl = hotlist_pb2_grpc.HotListServiceStub(grpc.insecure_channel(target))
        _retry(
            lambda: hl.AddEntry(
                hotlist_pb2.AddEntryRequest(
                    expire_time=timestamp_in(timedelta(days=30)),
                    plate=PLATE,
                    state="IL",
                    category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE,
                    reason="bench",
                    entered_by="bench",
                )
            ),
            "AddEntry",
        )
        recv = Receiver()
        points, port = cass
        cfg = {
            "insecure_dev": True,  # the bench hub is a plain-text development hub
            "bridge_id": "bench",
            "agency_id": "bench-pd",
            "hubs": [str(target)],
            "metrics_port": -1,
            "cassandra": {
                "contact_points": points,
                "port": port,
                "keyspace": keyspace,
                "write_consistency": "ONE",
                "read_consistency": "ONE",
            },
            "delivery": {"concurrency": 32},
            "dispatch": [{"name": "cad", "kind": "webhook", "url": recv.url, "secret": SECRET.decode()}],
        }
        (run_dir / "bridge.yaml").write_text(yaml.safe_dump(cfg))
        blog = run_dir / "bridge.log"

        def start_bridge() -> subprocess.Popen[bytes]:
            size = blog.stat().st_size if blog.exists() else 0
            with open(blog, "a") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "dispatch_bridge.cli", "--config", str(run_dir / "bridge.yaml"),
                     "--log-level", "WARNING"],
                    stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )  # fmt: skip
            deadline = time.time() + 60
            while not re.search(r"running", blog.read_text()[size:]):
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("bridge did not start:\n" + blog.read_text()[-3000:])
                time.sleep(0.05)
            time.sleep(1.0)  # the Watch stream opens
            return proc

        def stop_bridge(proc: subprocess.Popen[bytes]) -> None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

        proc = start_bridge()
        try:
            log(f"bench: raising {args.alerts + args.burst} alerts")
            lat_ids = raise_alerts(target, args.alerts)
            burst_ids = raise_alerts(target, args.burst)
            stub = alert_pb2_grpc.AlertServiceStub(grpc.insecure_channel(target))
            log(f"bench: latency run, {args.alerts} decisions at {args.rate}/s")
            sent: dict[str, float] = {}
            acked: dict[str, float] = {}
            for aid in lat_ids:
                t0 = time.monotonic()
                sent[f"{aid}:valid_alert"] = decide(stub, aid, acked)
                time.sleep(max(0.0, 1.0 / args.rate - (time.monotonic() - t0)))
            wait_all(recv, list(sent), 60)
            assert target.metrics_port is not None
            stages = stage_ms(target.metrics_port, "alpr_hub_alert_decision_stage_seconds", "stage",
                              ["read", "claim", "record", "audit"])  # fmt: skip
            lat = [(recv.arrived[k] - t) * 1000 for k, t in sent.items()]
            # From the hub's answer to DecideAlert (the decision is stored) instead of the request.
            lat_ack = [(recv.arrived[f"{a}:valid_alert"] - t) * 1000 for a, t in acked.items()]
            lat_rpc = [(acked[a] - sent[f"{a}:valid_alert"]) * 1000 for a in acked]
            # Throughput of the bridge itself: decisions made while it is stopped, then the
            # backlog it relays after a restart (from its stored stream position).
            stop_bridge(proc)
            log(f"bench: throughput run, {args.burst} decisions while the bridge is stopped")
            t0 = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda a: decide(stub, a), burst_ids))
            decided = time.monotonic() - t0
            proc = start_bridge()
            keys = [f"{a}:valid_alert" for a in burst_ids]
            wait_all(recv, keys, 300)
            times = sorted(recv.arrived[k] for k in keys)
            result = {
                "dispatch_p50_ms": round(percentile(lat, 0.50), 1),
                "dispatch_p99_ms": round(percentile(lat, 0.99), 1),
                "dispatch_max_ms": round(max(lat), 1),
                "stored_to_dispatch_p50_ms": round(percentile(lat_ack, 0.50), 1),
                "stored_to_dispatch_p99_ms": round(percentile(lat_ack, 0.99), 1),
                "stages": {"decide": ms(lat_rpc), "stored": ms(lat_ack), "hub": stages},
                "relays_per_s": round((len(times) - 1) / max(1e-9, times[-1] - times[0]), 1),
                "hub_decisions_per_s": round(len(keys) / decided, 1),
                "latency_alerts": len(lat),
                "burst_alerts": len(keys),
                "bad_signatures": recv.bad,
            }
        finally:
            stop_bridge(proc)
            recv.server.shutdown()
    log(f"bench: {json.dumps(result)}")
    return result


if __name__ == "__main__":
    sys.exit(main())
