#!/usr/bin/env python3
"""Run the whole platform on one machine, on a generated sample video.

    ops/local up       Cassandra (127.0.0.1:9042), hub (:50051, metrics :9101), a stand-in CAD
                       webhook (:8089), the dispatch bridge (metrics :9103) and one edge node
                       (metrics :9102) reading a generated drive-by clip in a loop; puts one of
                       the clip's plates on the hot list so the demo raises a hit
    ops/local status   what is running, node self-check, reads stored so far
    ops/local down     stop everything (graceful: hub drains, node flushes)

Everything lives in .run/local/ (logs: *.log; dispatch receipts: cad.jsonl). Idempotent:
`up` leaves running parts alone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run" / "local"
BIN = ROOT / ".venv" / "bin"
HUB_TARGET = "127.0.0.1:50051"
CAD_PORT = 8089
CAD_SECRET = "local-demo-secret"
sys.path.insert(0, str(ROOT))
import cassandractl  # noqa: E402  (ops/cassandractl.py, beside this file)


def _cluster() -> Any:
    return cassandractl.CassandraCluster(RUN / "cassandra", nodes=1, base_port=9042, heap="1G")


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None

    @property
    def pid_file(self) -> Path:
        return RUN / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        return RUN / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def start(self) -> bool:
        if self.pid():
            print(f"{self.name}: already running (pid {self.pid()})")
            return False
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                    env={**os.environ, **(self.env or {})}, start_new_session=True)  # fmt: skip
        self.pid_file.write_text(str(proc.pid))
        time.sleep(0.5)
        if proc.poll() is not None:
            raise SystemExit(f"{self.name} failed to start; see {self.log}:\n{self.log.read_text()[-2000:]}")
        print(f"{self.name}: started (pid {proc.pid}, log {self.log.relative_to(ROOT)})")
        return True

    def stop(self, timeout: float = 30) -> None:
        pid = self.pid()
        if not pid:
            self.pid_file.unlink(missing_ok=True)
            return
        print(f"stopping {self.name} (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + timeout
        while self.pid() and time.time() < deadline:
            time.sleep(0.1)
        if self.pid():
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)


def services() -> dict[str, Service]:
    env = {"YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(RUN / "ultralytics"), "ALPR_CAD_SECRET": CAD_SECRET}
    return {
        "hub": Service("hub", [str(BIN / "alpr-hub"), "serve", "--config", str(ROOT / "ops/config/hub.example.yaml")]),
        "cad": Service("cad", [str(BIN / "python"), str(ROOT / "ops/local_cad.py"), "--port", str(CAD_PORT),
                               "--secret", CAD_SECRET, "--out", str(RUN / "cad.jsonl")]),
        "bridge": Service("bridge", [str(BIN / "alpr-bridge"), "serve", "--config", str(RUN / "bridge.yaml")], env),
        "node": Service("node", [str(BIN / "alpr-node"), "run", "--config", str(RUN / "node.yaml")], env),
    }  # fmt: skip


def _hub_healthy(timeout: float = 2.0) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(HUB_TARGET) as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False


def _write_configs() -> list[str]:
    """Bridge and node configs plus the sample clip; returns the clip's plates."""
    (RUN / "bridge.yaml").write_text(yaml.safe_dump({
        "bridge_id": "local-bridge", "agency_id": "local-pd", "hubs": [HUB_TARGET],
        "cassandra": {"contact_points": ["127.0.0.1"], "port": 9042, "keyspace": "alpr",
                      "write_consistency": "ONE", "read_consistency": "ONE"},
        "relay": {"unattended_after_s": 120},
        "dispatch": [{"name": "local-cad", "kind": "webhook", "url": f"http://127.0.0.1:{CAD_PORT}/relays",
                      "secret_env": "ALPR_CAD_SECRET"}],
        "tickets": {"enabled": True, "sinks": [{"name": "it-file", "kind": "file", "path": str(RUN / "tickets.jsonl")}]},
    }))  # fmt: skip
    clip = RUN / "sample.avi"
    truth_file = RUN / "sample.json"
    if not clip.exists() or not truth_file.exists():
        from node.clips import make_clip

        truth = make_clip(clip, vehicles=6, fps=10.0, plate_width=200, frames_per_pass=12, gap_frames=10, seed=42)
        truth_file.write_text(json.dumps([v.plate for v in truth]))
    plates: list[str] = json.loads(truth_file.read_text())
    (RUN / "node.yaml").write_text(yaml.safe_dump({
        "node_id": "sample-pole-1", "kind": "FIXED", "state_dir": str(RUN / "node"),
        "cameras": [{"camera_id": "sample-pole-1-north", "source": str(clip), "loop": True, "max_fps": 10}],
        "location": {"latitude": 41.5250, "longitude": -88.0817, "accuracy_m": 5, "heading_deg": 0},
        "hub": {"targets": [HUB_TARGET]},
        "metrics_port": 9102,
    }))  # fmt: skip
    return plates


def _models_present() -> bool:
    from node.recognition.loading import RecognizerConfig

    cfg = RecognizerConfig()
    return cfg.detector_path.exists() and cfg.ocr_model_path.exists()


def up() -> int:
    RUN.mkdir(parents=True, exist_ok=True)
    svc = services()
    print("[1/5] Cassandra")
    _cluster().start()
    print("[2/5] hub")
    svc["hub"].start()
    deadline = time.time() + 120
    while not _hub_healthy():
        if svc["hub"].pid() is None or time.time() > deadline:
            print(f"hub failed to start; see {svc['hub'].log}:\n" + svc["hub"].log.read_text()[-3000:], file=sys.stderr)
            return 1
        time.sleep(0.5)
    print("[3/5] sample video, configs, hot-list entry")
    plates = _write_configs()
    hot = plates[0]
    listed = subprocess.run([str(BIN / "alpr"), "--hub", HUB_TARGET, "--json", "hotlist", "list"],
                            capture_output=True, text=True, check=False).stdout  # fmt: skip
    if f'"{hot}"' not in listed:  # idempotent: one demo entry
        subprocess.run([str(BIN / "alpr"), "--hub", HUB_TARGET, "hotlist", "add", hot, "--category", "stolen_vehicle",
                        "--reason", "local demo: stolen from the sample video", "--officer", "demo-officer"],
                       check=False, stdout=subprocess.DEVNULL)  # fmt: skip

    print(f"  sample clip .run/local/sample.avi with plates {', '.join(plates)}; {hot} is on the hot list")
    print("[4/5] dispatch: stand-in CAD webhook and the bridge")
    svc["cad"].start()
    svc["bridge"].start()
    print("[5/5] edge node on the sample clip")
    if _models_present():
        svc["node"].start()
    else:
        print("  node skipped: no trained models in node/models (alpr-node train builds them)")
    print(
        "\nendpoints:\n"
        f"  hub gRPC       {HUB_TARGET}  (grpcurl -plaintext {HUB_TARGET} list)\n"
        "  metrics        hub http://127.0.0.1:9101/metrics  node :9102  bridge :9103\n"
        "  Cassandra      127.0.0.1:9042 (keyspace alpr)\n"
        f"  dispatch       relays received by the stand-in CAD: .run/local/cad.jsonl\n"
        "try:\n"
        f"  .venv/bin/alpr --hub {HUB_TARGET} alerts list          # the hit on {hot}, PENDING\n"
        "  .venv/bin/alpr-node status --state-dir .run/local/node\n"
        "  ops/local status | ops/local down"
    )
    return 0


def down() -> int:
    for name in ("node", "bridge", "cad", "hub"):
        services()[name].stop()
    _cluster().stop()
    return 0


def status() -> int:
    for s in services().values():
        pid = s.pid()
        print(f"{s.name}: {'running, pid ' + str(pid) if pid else 'stopped'}")
    for st in _cluster().status():
        print(f"cassandra: {st.line()}")
    print(f"hub: {'SERVING' if _hub_healthy() else 'not serving'}")
    if (RUN / "node" / "status.json").exists():
        subprocess.run([str(BIN / "alpr-node"), "status", "--state-dir", str(RUN / "node")], check=False)
    cad = RUN / "cad.jsonl"
    print(f"dispatch receipts: {len(cad.read_text().splitlines()) if cad.exists() else 0}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["up", "down", "status"])
    args = ap.parse_args()
    return {"up": up, "down": down, "status": status}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
