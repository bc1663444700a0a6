"""The hub as users run it: the ``alpr-hub`` command, killed and restarted mid-stream."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import yaml
from cassandra.cluster import Session

from alpr_common.simulation import make_read
from hub.schema import load_migrations
from tests.support import PacedStream, read_request, run_stream, stored_ids

HUB = [sys.executable, "-m", "hub.cli"]


def write_config(tmp_path: Path, cassandra: tuple[list[str], int], keyspace: str, **extra: Any) -> Path:
    points, port = cassandra
    cfg = {
        "insecure_dev": True,  # a test of the process, not of access control
        "hub_id": "proc-hub",
        "listen_host": "127.0.0.1",
        "grpc_port": 0,
        "metrics_port": -1,
        "cassandra": {
            "contact_points": points,
            "port": port,
            "keyspace": keyspace,
            "write_consistency": "ONE",
        },
        **extra,
    }
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class HubProcess:
    """``alpr-hub serve`` as a child process; its output goes to a log file (a pipe nobody
    reads would fill up and block the hub's logging)."""

    def __init__(self, config: Path) -> None:
        self.log_path = config.parent / f"hub-{time.time_ns()}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(
            [*HUB, "serve", "--config", str(config)], stdout=self._log, stderr=subprocess.STDOUT, text=True
        )
        # a first start applies every migration: minutes on a loaded box with 3 Cassandra nodes
        deadline = time.time() + 400
        while time.time() < deadline:
            m = re.search(r"serving on [\d.]+:(\d+)", self.log_path.read_text())
            if m:
                self.target = f"127.0.0.1:{m.group(1)}"
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.proc.kill()
        raise AssertionError("hub did not start:\n" + self.log_path.read_text())

    def finish(self, timeout: float = 30) -> str:
        self.proc.wait(timeout)
        self._log.close()
        return self.log_path.read_text()


def test_validate_config_accepts_good_and_rejects_unknown_keys(
    tmp_path: Path, cassandra: tuple[list[str], int]
) -> None:
    good = write_config(tmp_path, cassandra, "alpr")
    ok = subprocess.run([*HUB, "--validate-config", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("grpc_prot: 50051\ncassandra:\n  contact_point: [x]\n")
    res = subprocess.run([*HUB, "--validate-config", str(bad)], capture_output=True, text=True)
    assert res.returncode == 2
    assert "grpc_prot: unknown key" in res.stderr and "cassandra.contact_point: unknown key" in res.stderr
    env = {**os.environ, "ALPR_HUB__GRPC_PORT": "not-a-port"}
    res = subprocess.run([*HUB, "--validate-config", str(good)], capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "grpc_port" in res.stderr


def test_migrate_command_applies_once(tmp_path: Path, cassandra: tuple[list[str], int], cql: Session) -> None:
    ks = f"alpr_m_{uuid.uuid4().hex[:8]}"
    cfg = write_config(tmp_path, cassandra, ks)
    first = subprocess.run([*HUB, "migrate", "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert (
        "applying migration 001_reads" in first.stdout
        and f"{len(load_migrations())} migration(s) applied now" in first.stdout
    )
    again = subprocess.run([*HUB, "migrate", "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "0 migration(s) applied now" in again.stdout
    cql.execute(f"DROP KEYSPACE {ks}")


def test_hub_unreachable_cassandra_gives_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "hub.yaml"
    cfg.write_text("insecure_dev: true\nmetrics_port: -1\ncassandra:\n  port: 1\n  connect_timeout_s: 2\n")
    res = subprocess.run([*HUB, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "cannot reach Cassandra" in res.stderr


def test_hub_killed_mid_stream_loses_nothing_the_client_resends(
    tmp_path: Path, cassandra: tuple[list[str], int], cql: Session, keyspace: str
) -> None:
    cfg = write_config(tmp_path, cassandra, keyspace)
    reads = [make_read(plate=f"K{i:05d}", node_id="crash-node") for i in range(400)]
    hub = HubProcess(cfg)
    stream = PacedStream(hub.target)
    for r in reads:
        stream.send(read_request(r))
    deadline = time.time() + 60
    while len(stream.result.acks) < 50 and time.time() < deadline:
        time.sleep(0.005)
    hub.proc.send_signal(signal.SIGKILL)
    first = stream.wait_closed()
    hub.finish()
    assert first.status == grpc.StatusCode.UNAVAILABLE
    assert 50 <= len(first.acks) < len(reads), "the kill should land mid-stream"

    # A node resends everything it holds unacked to the restarted hub.
    hub2 = HubProcess(cfg)
    try:
        unacked = [r for r in reads if r.read_id not in first.acks]
        second = run_stream(hub2.target, map(read_request, unacked))
        assert set(second.acks) == {r.read_id for r in unacked} and not second.errors
    finally:
        hub2.proc.send_signal(signal.SIGTERM)
        out = hub2.finish()
    assert hub2.proc.returncode == 0, out
    assert "hub stopped" in out

    assert stored_ids(cql, keyspace, [r.read_id for r in reads]) == {r.read_id for r in reads}
    day = reads[0].capture_time.ToDatetime().date()
    rows = 0
    for r in reads:  # exactly once per read in the per-plate table too
        rows += len(
            cql.execute(
                f"SELECT read_id FROM {keyspace}.reads_by_plate WHERE plate = %s AND day = %s",
                [r.plate_text, day],
            ).all()
        )
    assert rows == len(reads)
