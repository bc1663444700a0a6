#!/usr/bin/env python3
"""Soak benchmark: a node process on a looping clip for N minutes with a hub up; does its
memory stay flat and does every read reach the hub?

A real hub process (ops/bench/common.py: Cassandra from ALPR_BENCH_CASSANDRA, 9042 or a
local one) and a real ``alpr-node run`` process with the shipped models read a generated
clip in a loop (paced to --max-fps); one plate of the clip is on the hot list, so local
alerts and the alert command run on every pass. The node's resident memory is sampled every
--sample-s seconds; the slope is a least-squares fit over the samples after the warm-up
(the first --warmup-frac of the run: model loading, allocator and caches settling), and the
baseline is the memory at the end of the warm-up, measured in the same run.

At the end the node is stopped with SIGTERM (it sends what is queued) and the hub's reads
table is counted: lost = reads the node emitted that the hub does not hold and the node no
longer queues (0 expected). Progress on stderr; the last line is JSON:
  {"rss_start_mb", "rss_warm_mb", "rss_end_mb", "rss_slope_mb_per_h", "rss_end_vs_warm",
   "reads", "stored", "queued", "lost", "minutes", ...}
Target: slope <= 5 MB/h after warm-up, 0 lost.

    .venv/bin/python -m ops.bench.soak [--minutes 10] [--max-fps 8]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import grpc
import yaml
from alpr.v1 import hotlist_pb2, hotlist_pb2_grpc
from cassandra.cluster import Cluster

from alpr_common.timestamps import timestamp_in
from node.clips import make_clip
from ops.bench.common import ROOT, cassandra, hub_process, log, process_usage

TARGET_SLOPE_MB_PER_H = 5.0


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per hour."""
    n = len(samples)
    if n < 2:
        return float("nan")
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    if var == 0:
        return float("nan")
    return 3600 * sum((t - mt) * (v - mv) for t, v in samples) / var


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--warmup-frac", type=float, default=0.2)
    ap.add_argument("--vehicles", type=int, default=4)
    ap.add_argument("--max-fps", type=float, default=8.0, help="camera pace (frames per second)")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()

    keyspace = f"soak_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp, cassandra() as cass:
        run = Path(tmp)
        clip = run / "loop.avi"
        truth = make_clip(clip, args.vehicles, fps=10.0, size=(960, 540), plate_width=200, frames_per_pass=10,
                          gap_frames=6, seed=args.seed)  # fmt: skip
        log(f"soak: clip of {len(truth)} vehicles ({[v.plate for v in truth]}); starting the hub")
        cluster = Cluster(cass[0], port=cass[1])
        cql = cluster.connect()
        try:
            with hub_process(cass, keyspace, run / "hub") as hub:
                with grpc.insecure_channel(hub) as ch:
                    hotlist_pb2_grpc.HotListServiceStub(ch).AddEntry(
                        hotlist_pb2.AddEntryRequest(
                            expire_time=timestamp_in(timedelta(days=30)),
                            plate=truth[0].plate,
                            state="IL",
                            reason="soak test entry",
                            entered_by="soak",
                            category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE,
                        ),
                        timeout=60,
                    )
                result = _soak(args, run, clip, hub)
            stored = cql.execute(f"SELECT count(*) FROM {keyspace}.reads_by_id", timeout=120).one()[0]
        finally:
            cql.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
            cluster.shutdown()
    result["stored"] = stored
    result["lost"] = max(0, result["reads"] - stored - result["queued"])
    result["target_slope_mb_per_h"] = TARGET_SLOPE_MB_PER_H
    result["met"] = bool(result["rss_slope_mb_per_h"] <= TARGET_SLOPE_MB_PER_H and result["lost"] == 0)
    print(json.dumps(result), flush=True)
    return 0


def _soak(args: argparse.Namespace, run: Path, clip: Path, hub: str) -> dict[str, float | int]:
    state = run / "node"
    cfg = {
        "insecure_dev": True,  # the bench hub is a plain-text development hub
        "node_id": "soak-node",
        "state_dir": str(state),
        "location": {"latitude": 41.52, "longitude": -88.08},
        "cameras": [{"camera_id": "soak-cam", "source": str(clip), "loop": True, "max_fps": args.max_fps}],
        "hub": {"targets": [str(hub)], "heartbeat_interval_s": 5},
        "alerts": {"command": ["true"]},
        "metrics_port": -1,
    }
    path = run / "node.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "YOLO_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    with open(run / "node.log", "w") as out:
        node = subprocess.Popen([sys.executable, "-m", "node.cli", "run", "--config", str(path), "--log-level",
                                 "WARNING"], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)  # fmt: skip
    duration = args.minutes * 60
    samples: list[tuple[float, float]] = []
    try:
        deadline = time.monotonic() + 300  # the clock starts once the node runs (models loaded)
        while "running" not in (run / "node.log").read_text() and time.monotonic() < deadline:
            if node.poll() is not None:
                raise RuntimeError("the node exited:\n" + (run / "node.log").read_text()[-3000:])
            time.sleep(0.2)
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < duration:
            if node.poll() is not None:
                raise RuntimeError("the node exited:\n" + (run / "node.log").read_text()[-3000:])
            samples.append((elapsed, process_usage(node.pid)[1]))
            if len(samples) % 12 == 1:
                log(f"soak: {elapsed / 60:.1f} min, node rss {samples[-1][1]:.1f} MB")
            time.sleep(args.sample_s)
        cpu_s = process_usage(node.pid)[0]
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(90)
        except subprocess.TimeoutExpired:
            node.kill()
    status = json.loads((state / "status.json").read_text())
    warm = [s for s in samples if s[0] >= duration * args.warmup_frac]
    rss_warm = warm[0][1] if warm else samples[-1][1]
    return {
        "minutes": round(args.minutes, 2),
        "rss_start_mb": round(samples[0][1], 1),
        "rss_warm_mb": round(rss_warm, 1),
        "rss_end_mb": round(samples[-1][1], 1),
        "rss_slope_mb_per_h": round(slope_per_hour(warm), 2),
        "rss_end_vs_warm": round(samples[-1][1] / rss_warm, 3),
        "samples": len(samples),
        "reads": int(status["reads_emitted"]),
        "queued": int(status["queue"]["depth"]),
        "node_cpu_s": round(cpu_s, 1),
        "node_exit_code": node.returncode,
    }


if __name__ == "__main__":
    sys.exit(main())
