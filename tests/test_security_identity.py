"""Security: identity, audit and secure defaults, against real hubs with TLS and auth on.

A certificate identifies a machine, not a person; the principal is the identity; the audit
chain is keyed and anchored outside Cassandra; a hub is secure unless a config says
``insecure_dev: true``; certificates pass strict verification; images hold no secrets.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alpr_common import tls
from dispatch_bridge.config import BridgeConfig
from hub.config import HubConfig
from hub.server import InsecureConfigError, create_server
from node.config import NodeConfig
from tests.conftest import fresh_keyspace, make_hub_config
from tests.support import ROOT, HubThread

pytestmark = pytest.mark.security

HUB = [sys.executable, "-m", "hub.cli"]


# -- secure by default ---------------------------------------------------------------------


def test_a_hub_config_is_secure_unless_it_says_insecure_dev() -> None:
    cfg = HubConfig()
    assert cfg.auth.enabled and cfg.tls.enabled and not cfg.insecure_dev
    assert cfg.metrics_host == "127.0.0.1"
    # TLS on, but no certificate: the hub may not start, and says how to fix it.
    assert any("cert_file" in p and "insecure_dev" in p for p in cfg.security_problems())
    off = HubConfig.model_validate({"auth": {"enabled": False}, "tls": {"enabled": False}})
    problems = off.security_problems()
    assert len(problems) == 2 and all("insecure_dev: true" in p for p in problems)
    dev = HubConfig.model_validate({"insecure_dev": True})
    assert not dev.auth.enabled and not dev.tls.enabled and dev.security_problems() == []
    assert dev.insecure_parts() == ["access control (auth)", "TLS"]
    # insecure_dev only changes defaults: auth can still be on.
    assert HubConfig.model_validate({"insecure_dev": True, "auth": {"enabled": True}}).auth.enabled


def test_an_insecure_hub_does_not_start_without_insecure_dev(tmp_path: Path) -> None:
    off = HubConfig.model_validate({"auth": {"enabled": False}, "tls": {"enabled": False}, "metrics_port": -1})
    with pytest.raises(InsecureConfigError, match="insecure_dev"):
        asyncio.run(create_server(off))  # refused before it touches Cassandra or a port
    path = tmp_path / "hub.yaml"
    path.write_text("auth:\n  enabled: false\ntls:\n  enabled: false\nmetrics_port: -1\n")
    for argv in (["--validate-config", str(path)], ["serve", "--config", str(path)]):
        res = subprocess.run([*HUB, *argv], capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and "insecure_dev: true" in res.stderr, res


def test_an_insecure_dev_hub_warns_loudly(cassandra, cql, caplog) -> None:
    cfg = make_hub_config(cassandra, fresh_keyspace("dev"))
    assert cfg.insecure_dev
    with caplog.at_level(logging.WARNING, logger="hub.server"):
        hub = HubThread(cfg).start()
        hub.stop()
    warning = [r.getMessage() for r in caplog.records if "INSECURE DEVELOPMENT HUB" in r.getMessage()]
    assert warning and "access control (auth), TLS OFF" in warning[0]
    cql.execute(f"DROP KEYSPACE IF EXISTS {cfg.cassandra.keyspace}", timeout=120)


def test_metrics_listen_on_loopback_unless_configured() -> None:
    assert HubConfig().metrics_host == "127.0.0.1"
    assert BridgeConfig.model_fields["metrics_host"].default == "127.0.0.1"
    assert NodeConfig.model_fields["metrics_host"].default == "127.0.0.1"
    # The deployment scrapes from another container, so it says so explicitly.
    deployed = yaml.safe_load((ROOT / "ops/deploy/config/hub.yaml").read_text())
    assert deployed["metrics_host"] == "0.0.0.0"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_certificates_pass_strict_verification(tmp_path: Path) -> None:
    from cryptography import x509

    tls.init_ca(tmp_path / "ca")
    hub_crt, _ = tls.issue(tmp_path / "ca", "hub-1", "service", tmp_path, ["127.0.0.1", "hub-1.example"])
    node_crt, _ = tls.issue(tmp_path / "ca", "pole-1", "node", tmp_path)
    res = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", str(tmp_path / "ca" / "ca.crt"), str(hub_crt), str(node_crt)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    for path in (hub_crt, node_crt):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        for ext in (x509.SubjectKeyIdentifier, x509.AuthorityKeyIdentifier, x509.KeyUsage, x509.ExtendedKeyUsage):
            cert.extensions.get_extension_for_class(ext)  # raises when missing
    node = x509.load_pem_x509_certificate(node_crt.read_bytes())
    eku = node.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]  # a node is never a TLS server


def test_image_build_context_holds_no_secrets_and_hub_image_no_torch() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".run", "**/*.key", "**/*.token"} <= ignored
    dockerfile = (ROOT / "ops/deploy/Dockerfile").read_text()
    stages = dockerfile.split("\nFROM ")
    platform = next(s for s in stages if s.startswith("base AS platform"))
    assert stages[-1] is platform  # the default target, used by compose for hubs and bridge
    assert "[node]" not in platform and "torch" not in platform
    # The hub and the bridge really run without the recognition stack.
    probe = (
        "import sys, hub.server, hub.cli, dispatch_bridge.bridge, dispatch_bridge.cli, alpr_common.operator_cli\n"
        "heavy = sorted(m for m in ('torch', 'ultralytics', 'cv2', 'onnxruntime') if m in sys.modules)\n"
        "print(heavy); sys.exit(1 if heavy else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
