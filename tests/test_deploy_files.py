"""Deployment files: the compose stack, the hub/node configs it uses, systemd units."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from hub.config import load_hub_config
from node.config import load_node_config
from tests.support import ROOT

DEPLOY = ROOT / "ops" / "deploy"


def test_compose_has_three_cassandra_nodes_two_hubs_bridge_and_monitoring() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert sorted(s for s in services if s.startswith("cassandra-")) == ["cassandra-1", "cassandra-2", "cassandra-3"]
    hubs = [s for s in services if s.startswith("hub-")]
    assert len(hubs) >= 2
    for name in hubs:
        assert services[name]["command"][0] == "alpr-hub"
        deps = services[name]["depends_on"]
        assert all(deps[c]["condition"] == "service_healthy" for c in deps if c.startswith("cassandra-"))
        assert deps["pki"]["condition"] == "service_completed_successfully"  # certificates before TLS
    assert {"bridge", "prometheus", "grafana"} <= set(services)
    for svc in services.values():  # every mounted file or folder exists in the repo
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), src


def test_deployment_hub_config_is_replicated_and_quorum() -> None:
    cfg = load_hub_config(DEPLOY / "config" / "hub.yaml")
    assert cfg.cassandra.replication_map() == {"class": "NetworkTopologyStrategy", "dc1": 3}
    assert cfg.cassandra.write_consistency == "LOCAL_QUORUM" and len(cfg.cassandra.contact_points) == 3
    assert cfg.retention.read_ttl_seconds == 60 * 86400


def test_deployment_hub_runs_with_auth_and_mutual_tls() -> None:
    cfg = load_hub_config(DEPLOY / "config" / "hub.yaml")
    assert cfg.auth.enabled and cfg.tls.enabled and cfg.tls.require_client_cert and cfg.tls.ca_file


def test_deployment_bridge_config_validates(tmp_path: Path) -> None:
    """With certificates where the compose file's pki service puts them (here: a temp dir)."""
    from alpr_common.operator_cli import main as alpr

    pki = tmp_path / "pki"
    assert alpr(["certs", "init", "--dir", str(pki / "ca")]) == 0
    assert alpr(["certs", "issue", "bridge", "--kind", "service", "--ca-dir", str(pki / "ca"), "--out", str(pki)]) == 0
    text = (DEPLOY / "config" / "bridge.yaml").read_text()
    assert "/etc/alpr/pki/bridge.crt" in text
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text(text.replace("/etc/alpr/pki", str(pki)))
    res = subprocess.run([str(Path(sys.executable).parent / "alpr-bridge"), "--validate-config", str(cfg)],
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr


def test_deployment_node_config_fails_over_between_hubs() -> None:
    cfg = load_node_config(DEPLOY / "config" / "node.yaml")
    assert len(cfg.hub.targets) >= 2


def test_systemd_units_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    venv_bin = Path(sys.executable).parent
    for unit in (DEPLOY / "systemd").glob("*.service"):
        text = unit.read_text().replace("/opt/alpr/.venv/bin/", f"{venv_bin}/")
        assert "ExecStart=" in text and "[Install]" in text
        if tool is None:
            continue
        copy = tmp_path / unit.name
        copy.write_text(text)
        res = subprocess.run([tool, "verify", str(copy)], capture_output=True, text=True)
        assert res.returncode == 0 and "Unknown" not in res.stdout + res.stderr, res.stdout + res.stderr


def test_boot_shift_check_uses_the_node_config() -> None:
    """The boot-time hot-list check talks to the hubs the way the node does (its config: hubs,
    node id, mutual-TLS certificate); tests/test_tls.py runs its command line against a TLS hub."""
    node_unit = (DEPLOY / "systemd" / "alpr-node.service").read_text()
    shift_unit = (DEPLOY / "systemd" / "alpr-node-shift-start.service").read_text()
    config = "--config /etc/alpr/node.yaml"
    assert config in node_unit
    exec_start = next(ln for ln in shift_unit.splitlines() if ln.startswith("ExecStart="))
    assert "shift-start" in exec_start and config in exec_start and "--hub" not in exec_start
