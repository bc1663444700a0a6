#!/usr/bin/env python3
"""Run the whole platform on one machine, on a generated sample video.

    ops/local up       Cassandra (127.0.0.1:9042), hub (:50051, metrics :9101), a stand-in CAD
                       webhook (:8089), the dispatch bridge (metrics :9103) and one edge node
                       (metrics :9102) reading a generated drive-by clip in a loop; puts one of
                       the clip's plates on the hot list so the demo raises a hit
    ops/local status   what is running, node self-check, reads stored so far
    ops/local down     stop everything (graceful: hub drains, node flushes)

The stack runs as it would in production: mutual TLS and access control on. `up` creates a
deployment CA and certificates (alpr certs) in .run/local/pki, bootstraps an admin and an
officer token, registers the node and its camera, and writes .run/local/env: `source` it to
use the `alpr` CLI against the local hub.

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
from datetime import date, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run" / "local"
BIN = ROOT / ".venv" / "bin"
HUB_TARGET = "127.0.0.1:50051"
PKI = RUN / "pki"
NODE_ID, CAMERA_ID = "sample-pole-1", "sample-pole-1-north"
CAD_PORT = 8089
CONSOLE_PORT = 8443
CAD_SECRET = "local-demo-secret"
sys.path.insert(0, str(ROOT))
from ops import cassandractl  # noqa: E402


def _cluster() -> cassandractl.CassandraCluster:
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
        "hub": Service("hub", [str(BIN / "alpr-hub"), "serve", "--config", str(RUN / "hub.yaml")]),
        "cad": Service("cad", [str(BIN / "python"), str(ROOT / "ops/local_cad.py"), "--port", str(CAD_PORT),
                               "--secret", CAD_SECRET, "--out", str(RUN / "cad.jsonl")]),
        "bridge": Service("bridge", [str(BIN / "alpr-bridge"), "serve", "--config", str(RUN / "bridge.yaml")], env),
        "node": Service("node", [str(BIN / "alpr-node"), "run", "--config", str(RUN / "node.yaml")], env),
        "console": Service("console", [str(BIN / "alpr-console"), "--hub", HUB_TARGET,
                                       "--hub-ca", str(PKI / "ca" / "ca.crt"), "--hub-cert", str(PKI / "console.crt"),
                                       "--hub-key", str(PKI / "console.key"), "--host", "127.0.0.1",
                                       "--port", str(CONSOLE_PORT), "--https-cert", str(PKI / "console-web.crt"),
                                       "--https-key", str(PKI / "console-web.key")]),
    }  # fmt: skip


def _cli_env() -> dict[str, str]:
    """What the operator CLI needs to reach the local hub over mutual TLS."""
    return {
        "ALPR_HUB": HUB_TARGET,
        "ALPR_TLS_CA": str(PKI / "ca" / "ca.crt"),
        "ALPR_TLS_CERT": str(PKI / "console.crt"),
        "ALPR_TLS_KEY": str(PKI / "console.key"),
    }


def _make_pki() -> None:
    """The deployment CA and the certificates of the hub, node, bridge and operator console."""
    from alpr_common import tls

    if not (PKI / "ca" / "ca.crt").exists():
        tls.init_ca(PKI / "ca", "ALPR local demo CA")
    wanted = [("hub-local", "service", ["127.0.0.1", "localhost"]), (NODE_ID, "node", []),
              ("local-bridge", "service", []), ("console", "service", []),
              ("console-web", "service", ["127.0.0.1", "localhost"])]  # the console's HTTPS certificate  # fmt: skip
    for name, kind, hosts in wanted:
        if not (PKI / f"{name}.crt").exists():
            tls.issue(PKI / "ca", name, kind, PKI, hosts)


def _write_hub_config() -> None:
    cfg = yaml.safe_load((ROOT / "ops/config/hub.example.yaml").read_text())
    # Only the bridge's certificate reads alerts without a token; the console certificate
    # identifies this machine, and people's data needs the operator's token.
    key = RUN / "audit.key"  # the audit chain's HMAC key: on disk here, never in Cassandra
    if not key.exists():
        import secrets

        key.write_text(secrets.token_hex(32) + "\n")
        key.chmod(0o600)
    cfg["auth"] = {"enabled": True, "audit_chain": "", "services": {"local-bridge": "bridge"},
                   "audit_key_file": str(key), "audit_checkpoint_dir": str(RUN / "audit-checkpoints")}  # fmt: skip
    cfg["tls"] = {
        "enabled": True, "cert_file": str(PKI / "hub-local.crt"), "key_file": str(PKI / "hub-local.key"),
        "ca_file": str(PKI / "ca" / "ca.crt"), "require_client_cert": True, "enforce_node_identity": True,
    }  # fmt: skip
    (RUN / "hub.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def _token(user: str, role: str) -> str:
    """A token for ``user`` (created once with alpr-hub add-user, kept in .run/local/USER.token)."""
    path = RUN / f"{user}.token"
    if not path.exists():
        out = subprocess.run([str(BIN / "alpr-hub"), "add-user", "--config", str(RUN / "hub.yaml"), "--user", user,
                              "--role", role], capture_output=True, text=True, check=True).stdout  # fmt: skip
        path.write_text(out.strip().splitlines()[-1] + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def _alpr(token: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "alpr"), "--token", token, *argv], capture_output=True, text=True, check=False,
                          env={**os.environ, **_cli_env()})  # fmt: skip


def _hub_healthy(timeout: float = 2.0) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from alpr_common.tls import channel_credentials

    env = _cli_env()
    if not Path(env["ALPR_TLS_CERT"]).exists():
        return False
    creds = channel_credentials(env["ALPR_TLS_CA"], env["ALPR_TLS_CERT"], env["ALPR_TLS_KEY"])
    try:
        with grpc.secure_channel(HUB_TARGET, creds) as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False


def _write_configs() -> list[str]:
    """Bridge and node configs plus the sample clip; returns the clip's plates."""
    (RUN / "bridge.yaml").write_text(yaml.safe_dump({
        "bridge_id": "local-bridge", "agency_id": "local-pd", "hubs": [HUB_TARGET],
        "hub_tls": {"ca_file": str(PKI / "ca" / "ca.crt"), "cert_file": str(PKI / "local-bridge.crt"),
                    "key_file": str(PKI / "local-bridge.key")},
        "cassandra": {"contact_points": ["127.0.0.1"], "port": 9042, "keyspace": "alpr",
                      "write_consistency": "ONE", "read_consistency": "ONE"},
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
        "node_id": NODE_ID, "kind": "FIXED", "state_dir": str(RUN / "node"),
        "cameras": [{"camera_id": CAMERA_ID, "source": str(clip), "loop": True, "max_fps": 10}],
        "location": {"latitude": 41.5250, "longitude": -88.0817, "accuracy_m": 5, "heading_deg": 0},
        "hub": {"targets": [HUB_TARGET], "tls_ca_file": str(PKI / "ca" / "ca.crt"),
                "tls_cert_file": str(PKI / f"{NODE_ID}.crt"), "tls_key_file": str(PKI / f"{NODE_ID}.key")},
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
    print("[1/6] Cassandra")
    _cluster().start()
    print("[2/6] hub (mutual TLS and access control on; certificates in .run/local/pki)")
    _make_pki()
    _write_hub_config()
    svc["hub"].start()
    deadline = time.time() + 120
    while not _hub_healthy():
        if svc["hub"].pid() is None or time.time() > deadline:
            print(f"hub failed to start; see {svc['hub'].log}:\n" + svc["hub"].log.read_text()[-3000:], file=sys.stderr)
            return 1
        time.sleep(0.5)
    print("[3/6] users, node registration, sample video, configs, hot-list entry")
    admin, officer = _token("local-admin", "admin"), _token("local-officer", "officer")
    env_file = RUN / "env"
    env_file.write_text("".join(f"export {k}={v}\n" for k, v in {**_cli_env(), "ALPR_TOKEN": officer}.items()))
    reg = _alpr(admin, "nodes", "register", NODE_ID, "--camera", CAMERA_ID)
    if reg.returncode != 0:
        print(f"registering the node failed:\n{reg.stderr}", file=sys.stderr)
        return 1
    plates = _write_configs()
    hot = plates[0]
    if f'"{hot}"' not in _alpr(admin, "--json", "hotlist", "list").stdout:  # idempotent: one demo entry
        _alpr(admin, "hotlist", "add", hot, "--category", "stolen_vehicle",
              "--reason", "local demo: stolen from the sample video",
              "--expires", (date.today() + timedelta(days=30)).isoformat())  # fmt: skip

    print(f"  sample clip .run/local/sample.avi with plates {', '.join(plates)}; {hot} is on the hot list")
    print("[4/6] dispatch: stand-in CAD webhook and the bridge")
    svc["cad"].start()
    svc["bridge"].start()
    print("[5/6] web console (HTTPS, certificate from the local CA)")
    _token("local-fleet", "fleet_operator")  # for the fleet page
    svc["console"].start()
    print("[6/6] edge node on the sample clip")
    if _models_present():
        svc["node"].start()
    else:
        print("  node skipped: no trained models in node/models (alpr-node train builds them)")
    print(
        "\nendpoints:\n"
        f"  hub gRPC       {HUB_TARGET}  mutual TLS (CA .run/local/pki/ca/ca.crt), tokens required\n"
        "  metrics        hub http://127.0.0.1:9101/metrics  node :9102  bridge :9103\n"
        "  Cassandra      127.0.0.1:9042 (keyspace alpr)\n"
        f"  dispatch       relays received by the stand-in CAD: .run/local/cad.jsonl\n"
        "  tokens         .run/local/local-officer.token, .run/local/local-admin.token, .run/local/local-fleet.token\n"
        f"  web console    https://localhost:{CONSOLE_PORT}  sign in with a token file's content (officer: hits and\n"
        "                 review; admin: hot lists and audit; fleet: the fleet page). The certificate is from the\n"
        "                 local CA: trust .run/local/pki/ca/ca.crt in the browser or accept the warning once.\n"
        '                 Or by password: .venv/bin/alpr --token "$(cat .run/local/local-admin.token)" users\n'
        "                 set-password local-officer --generate, then user id local-officer and that password.\n"
        "try:\n"
        "  source .run/local/env                      # hub address, TLS files, the officer's token\n"
        f"  .venv/bin/alpr alerts list                 # the hit on {hot}, PENDING\n"
        "  .venv/bin/alpr-node status --state-dir .run/local/node\n"
        "  ops/local status | ops/local down"
    )
    return 0


def down() -> int:
    for name in ("node", "console", "bridge", "cad", "hub"):
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
