"""Security: identity, audit and secure defaults, against real hubs with TLS and auth on.

A certificate identifies a machine, not a person; the principal is the identity; the audit
chain is keyed and anchored outside Cassandra; a hub is secure unless a config says
``insecure_dev: true``; certificates pass strict verification; images hold no secrets.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
import yaml
from alpr.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    agency_pb2,
    agency_pb2_grpc,
    alert_pb2,
    alert_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    hotlist_pb2,
    hotlist_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)
from cassandra.cluster import Session

from alpr_common import tls
from alpr_common.cassandra import Row
from alpr_common.config import InsecureConfigError
from alpr_common.simulation import make_read
from alpr_common.timestamps import timestamp_in, to_timestamp
from dispatch_bridge.config import BridgeConfig
from hub.config import HubConfig, load_hub_config
from hub.server import create_server
from node.config import NodeConfig
from tests.access_support import AuthHub, call, rpc_code
from tests.conftest import fresh_keyspace, make_hub_config
from tests.support import ROOT, HubThread, LatencyProbe

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
    # Without insecure_dev the audit chain needs its key and its checkpoints outside Cassandra.
    no_audit = HubConfig.model_validate({"tls": {"cert_file": "h.crt", "key_file": "h.key", "ca_file": "ca.crt"}})
    assert [p.split(" ")[0] for p in no_audit.security_problems()] == [
        "auth.audit_key_file",
        "auth.audit_checkpoint_dir",
    ]
    # The shipped configs serve as they are.
    for shipped in ("ops/config/hub.example.yaml", "ops/deploy/config/hub.yaml"):
        assert load_hub_config(ROOT / shipped).security_problems() == [], shipped


def test_an_insecure_hub_does_not_start_without_insecure_dev(tmp_path: Path) -> None:
    off = HubConfig.model_validate({"auth": {"enabled": False}, "tls": {"enabled": False}, "metrics_port": -1})
    with pytest.raises(InsecureConfigError, match="insecure_dev"):
        asyncio.run(create_server(off))  # refused before it touches Cassandra or a port
    path = tmp_path / "hub.yaml"
    path.write_text("auth:\n  enabled: false\ntls:\n  enabled: false\nmetrics_port: -1\n")
    for argv in (["--validate-config", str(path)], ["serve", "--config", str(path)]):
        res = subprocess.run([*HUB, *argv], capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and "insecure_dev: true" in res.stderr, res


def test_an_insecure_dev_hub_warns_loudly(
    cassandra: tuple[list[str], int], cql: Session, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_hub_config(cassandra, fresh_keyspace("dev"))
    assert cfg.insecure_dev
    with caplog.at_level(logging.WARNING, logger="hub.server"):
        hub = HubThread(cfg).start()
        hub.stop()
    warning = [r.getMessage() for r in caplog.records if "INSECURE DEVELOPMENT HUB" in r.getMessage()]
    assert warning and "access control (auth), TLS OFF" in warning[0]
    cql.execute(f"DROP KEYSPACE IF EXISTS {cfg.cassandra.keyspace}", timeout=120)


def _plain_node(tmp_path: Path, **extra: object) -> NodeConfig:
    return NodeConfig.model_validate({
        "node_id": "plain-1", "state_dir": str(tmp_path / "state"), "location": {"latitude": 1, "longitude": 2},
        "cameras": [{"camera_id": "plain-1-a", "source": str(tmp_path / "missing.mp4")}], "metrics_port": -1,
        "hub": {"targets": ["127.0.0.1:1"]}, "hotlist": {"enabled": False}, **extra,
    })  # fmt: skip


def test_a_node_is_secure_unless_it_says_insecure_dev(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from node.fleet_overlay import local_only_problems
    from node.runtime import NodeRuntime
    from node.runtime_cli import main as alpr_node
    from tests.test_node_runtime import MarkerRecognizer

    plain = _plain_node(tmp_path)
    assert not plain.insecure_dev
    (problem,) = plain.security_problems()
    assert "hub.tls_ca_file" in problem and "insecure_dev: true" in problem and "alpr certs issue" in problem
    with pytest.raises(InsecureConfigError, match=r"the node will not start: hub\.tls_ca_file"):
        NodeRuntime(plain, recognizer=MarkerRecognizer()).start()  # refused before any camera or thread
    (no_cert,) = _plain_node(tmp_path, hub={"targets": ["h:1"], "tls_ca_file": "ca.crt"}).security_problems()
    assert "tls_cert_file" in no_cert
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(plain.model_dump(mode="json", exclude_defaults=True)))
    for argv in (["run", "--validate-config", str(path)], ["run", "--config", str(path)]):
        assert alpr_node(argv) == 2
    # A fleet overlay cannot switch it off from the hub.
    assert [f for f, _ in local_only_problems({"insecure_dev": True})] == ["insecure_dev"]
    # insecure_dev: plain text is allowed, and said loudly.
    dev = _plain_node(tmp_path, insecure_dev=True)
    assert dev.security_problems() == [] and dev.insecure_parts() == ["TLS to the hub"]
    with caplog.at_level(logging.WARNING, logger="node.runtime"):
        NodeRuntime(dev, recognizer=MarkerRecognizer()).start().stop(drain_s=0)
    warning = [r.getMessage() for r in caplog.records if "INSECURE DEVELOPMENT NODE" in r.getMessage()]
    assert warning and "TLS to the hub OFF" in warning[0]


def test_a_bridge_is_secure_unless_it_says_insecure_dev(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from dispatch_bridge.bridge import Bridge

    nowhere = {"contact_points": ["127.0.0.1"], "port": 1}  # touched only if the check let it through
    plain = BridgeConfig.model_validate({"cassandra": nowhere, "metrics_port": -1,
                                         "neighbours": [{"agency_id": "gary-pd"}]})  # fmt: skip
    problems = plain.security_problems()
    assert [p.split(" ")[0] for p in problems] == ["hub_tls", "neighbours[gary-pd].tls"], problems
    assert "insecure_dev: true" in problems[0] and "alpr certs issue" in problems[0]
    with pytest.raises(InsecureConfigError, match="the bridge will not start: hub_tls is not set"):
        asyncio.run(Bridge(plain).start())
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(plain.model_dump(mode="json", exclude_none=True)))
    for argv in (["--validate-config", str(path)], ["serve", "--config", str(path)]):
        res = subprocess.run([sys.executable, "-m", "dispatch_bridge.cli", *argv], capture_output=True, text=True,
                             cwd=ROOT, timeout=60)  # fmt: skip
        assert res.returncode == 2 and "hub_tls is not set" in res.stderr, res
    # insecure_dev: plain text is allowed, and said loudly before anything is opened.
    dev = plain.model_copy(update={"insecure_dev": True})
    assert dev.security_problems() == []
    assert dev.insecure_parts() == ["TLS to the hub", "credentials at the hub", "TLS to gary-pd"]
    with caplog.at_level(logging.WARNING, logger="dispatch_bridge.bridge"), pytest.raises(Exception):  # noqa: B017
        asyncio.run(Bridge(dev).start())  # then fails: no Cassandra on port 1
    warning = [r.getMessage() for r in caplog.records if "INSECURE DEVELOPMENT BRIDGE" in r.getMessage()]
    assert warning and "TLS to the hub, credentials at the hub, TLS to gary-pd OFF" in warning[0]


def test_the_console_uses_tls_to_the_hub_unless_it_says_insecure_dev() -> None:
    """People's tokens, plates and images: without the hubs' CA the console does not start, unless
    told --insecure-dev, and then it says so loudly."""
    cmd = [sys.executable, "-m", "console.cli", "--hub", "127.0.0.1:1", "--port", "0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPR_CONSOLE_")}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60, env=env)
    assert res.returncode == 2 and "no TLS towards the hub: give --hub-ca" in res.stderr, res
    assert "--insecure-dev" in res.stderr
    dev = subprocess.Popen([*cmd, "--insecure-dev"], stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        assert dev.stderr is not None
        said = ""
        deadline = time.monotonic() + 60
        while "console on http://" not in said and time.monotonic() < deadline and dev.poll() is None:
            said += dev.stderr.readline()
        assert "INSECURE DEVELOPMENT CONSOLE" in said and "TLS to the hub OFF" in said, said
    finally:
        dev.kill()
        dev.wait(30)


def test_metrics_listen_on_loopback_unless_configured() -> None:
    from console.settings import ConsoleSettings

    assert HubConfig().metrics_host == "127.0.0.1"
    assert BridgeConfig.model_fields["metrics_host"].default == "127.0.0.1"
    assert NodeConfig.model_fields["metrics_host"].default == "127.0.0.1"
    assert ConsoleSettings().host == "127.0.0.1"  # the console has no metrics; its pages stay local too
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


# -- identity: a certificate is a machine, the principal is the person ------------------------

AGENCY_CN = "will-county.example.gov"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    tls.init_ca(d / "ca")
    tls.issue(d / "ca", "hub-1", "service", d, ["127.0.0.1", "localhost"])
    for name, kind in (("console", "service"), ("bridge", "service"), (AGENCY_CN, "service"),
                       ("pole-1", "node"), ("pole-2", "node"), ("pole-3", "node")):  # fmt: skip
        tls.issue(d / "ca", name, kind, d)
    (d / "audit.key").write_text(secrets.token_hex(32) + "\n")
    return d


def secured(pki: Path, **auth: object) -> dict[str, object]:
    """Hub settings as deployed: no insecure_dev, mutual TLS, auth, a keyed and anchored audit chain."""
    return {
        "insecure_dev": False,
        "auth": {"enabled": True, "services": {"bridge": "bridge"}, "audit_key_file": str(pki / "audit.key"),
                 "audit_checkpoint_dir": str(pki / "checkpoints"), **auth},
        "tls": {"enabled": True, "cert_file": str(pki / "hub-1.crt"), "key_file": str(pki / "hub-1.key"),
                "ca_file": str(pki / "ca" / "ca.crt")},
    }  # fmt: skip


@pytest.fixture(scope="module")
def shub(cassandra: tuple[list[str], int], cql: Session, pki: Path) -> Iterator[AuthHub]:
    """A hub as deployed, the bridge's certificate named."""
    h = AuthHub(cassandra, cql, hotlists={"poll_interval_s": 0.05}, **secured(pki))
    h.channel.close()
    h.channel = channel(h, pki, "console")
    admin = admin_pb2_grpc.AdminServiceStub(h.channel)
    call(admin.RegisterNode, admin_pb2.RegisterNodeRequest(node_id="pole-1", camera_ids=["pole-1-a"]), h.admin)
    call(admin.RegisterNode, admin_pb2.RegisterNodeRequest(node_id="pole-3", camera_ids=["pole-3-a"]), h.admin)
    yield h
    h.stop()


def channel(h: AuthHub, pki: Path, name: str) -> grpc.Channel:
    creds = tls.channel_credentials(str(pki / "ca" / "ca.crt"), str(pki / f"{name}.crt"), str(pki / f"{name}.key"))
    return grpc.secure_channel(h.thread.target, creds)


def audit_entries(h: AuthHub, action: str) -> list[audit_pb2.AuditEntry]:
    auditor = h.token("sec-auditor", "auditor")
    stub = audit_pb2_grpc.AuditServiceStub(h.channel)
    return [e for e in call(stub.ListAudit, audit_pb2.ListAuditRequest(limit=1000), auditor).entries
            if e.action == action]  # fmt: skip


def watch_code(ch: grpc.Channel, token: str | None = None) -> grpc.StatusCode:
    """How a Watch with these credentials ends within 2 s (DEADLINE_EXCEEDED: it was serving)."""
    md: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
    try:
        for _ in alert_pb2_grpc.AlertServiceStub(ch).Watch(alert_pb2.WatchRequest(), metadata=md, timeout=2):
            pass
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def test_a_certificate_alone_reads_no_peoples_data(shub: AuthHub, pki: Path) -> None:
    alerts = alert_pb2_grpc.AlertServiceStub(shub.channel)  # the operators' CLI certificate
    denied = grpc.StatusCode.PERMISSION_DENIED
    for fn in (
        lambda: call(alerts.ListAlerts, alert_pb2.ListAlertsRequest()),
        lambda: call(alerts.GetAlert, alert_pb2.GetAlertRequest(alert_id="7a6c1f3e-0000-4000-8000-000000000000")),
        lambda: call(search_pb2_grpc.SearchServiceStub(shub.channel).Search, search_pb2.SearchRequest()),
        lambda: call(hotlist_pb2_grpc.HotListServiceStub(shub.channel).ListEntries, hotlist_pb2.ListEntriesRequest()),
        lambda: call(agency_pb2_grpc.AgencyExchangeServiceStub(shub.channel).ListSharedAlerts,
                     agency_pb2.ListSharedAlertsRequest()),
    ):  # fmt: skip
        code, msg = rpc_code(fn)
        assert code == denied and "service:console" in msg and "user's token" in msg, msg
    assert watch_code(shub.channel) == denied
    assert any(
        e.actor == "service:console" and "ListAlerts" in e.details_json for e in audit_entries(shub, "access.denied")
    )
    # The same certificate with an officer's token: the officer reads, and it is the officer.
    officer = shub.token("ofc-cert", "officer")
    assert call(alerts.ListAlerts, alert_pb2.ListAlertsRequest(), officer) is not None
    me = call(admin_pb2_grpc.AdminServiceStub(shub.channel).WhoAmI, admin_pb2.WhoAmIRequest(), officer)
    assert me.user.user_id == "ofc-cert"
    # A revoked operator's token is refused, certificate or not.
    call(admin_pb2_grpc.AdminServiceStub(shub.channel).RevokeUser, admin_pb2.RevokeUserRequest(user_id="ofc-cert"),
         shub.admin)  # fmt: skip
    assert rpc_code(lambda: call(alerts.ListAlerts, alert_pb2.ListAlertsRequest(), officer))[0] == (
        grpc.StatusCode.UNAUTHENTICATED
    )


def test_the_bridge_certificate_gets_the_bridge_methods_only(shub: AuthHub, pki: Path) -> None:
    with channel(shub, pki, "bridge") as ch:
        alerts = alert_pb2_grpc.AlertServiceStub(ch)
        assert call(alerts.ListAlerts, alert_pb2.ListAlertsRequest()) is not None
        assert watch_code(ch) == grpc.StatusCode.DEADLINE_EXCEEDED  # admitted, nothing to send
        me = call(admin_pb2_grpc.AdminServiceStub(ch).WhoAmI, admin_pb2.WhoAmIRequest())
        assert me.user.user_id == "service:bridge"
        denied = grpc.StatusCode.PERMISSION_DENIED
        for fn in (
            lambda: call(search_pb2_grpc.SearchServiceStub(ch).Search, search_pb2.SearchRequest()),
            lambda: call(hotlist_pb2_grpc.HotListServiceStub(ch).ListEntries, hotlist_pb2.ListEntriesRequest()),
            lambda: call(alerts.DecideAlert, alert_pb2.DecideAlertRequest(alert_id="x")),
            lambda: call(agency_pb2_grpc.AgencyExchangeServiceStub(ch).ReceiveSharedAlert,
                         agency_pb2.ReceiveSharedAlertRequest()),
        ):  # fmt: skip
            assert rpc_code(fn)[0] == denied


def _relay(origin: str, key: str) -> agency_pb2.ReceiveSharedAlertRequest:
    return agency_pb2.ReceiveSharedAlertRequest(
        relay=agency_pb2.Relay(
            idempotency_key=key, origin_agency_id=origin, plate="SHR1234", reason=agency_pb2.RELAY_REASON_UNABLE_TO_ACT
        )
    )


def test_shared_alerts_only_from_the_registered_agency_identity(shub: AuthHub, pki: Path) -> None:
    sup = shub.token("sup-share", "supervisor")
    ag = agency_pb2_grpc.AgencyExchangeServiceStub(shub.channel)
    for agency_id, identity in (("will-county-so", AGENCY_CN), ("joliet-pd", "joliet.example.gov")):
        agency = agency_pb2.Agency(agency_id=agency_id, name=agency_id, state="IL", endpoint="127.0.0.1:1",
                                   tls_identity=identity, law_enforcement=True)  # fmt: skip
        call(ag.RegisterAgency, agency_pb2.RegisterAgencyRequest(agency=agency, replace=True), sup)
    denied = grpc.StatusCode.PERMISSION_DENIED
    with channel(shub, pki, AGENCY_CN) as ch:
        peer = agency_pb2_grpc.AgencyExchangeServiceStub(ch)
        assert not call(peer.ReceiveSharedAlert, _relay("will-county-so", "k-own")).duplicate
        code, msg = rpc_code(lambda: call(peer.ReceiveSharedAlert, _relay("joliet-pd", "k-claim")))
        assert code == denied and "joliet.example.gov" in msg, msg
        code, msg = rpc_code(lambda: call(peer.ReceiveSharedAlert, _relay("nowhere-pd", "k-unreg")))
        assert code == denied and "not registered" in msg, msg
    code, _ = rpc_code(lambda: call(agency_pb2_grpc.AgencyExchangeServiceStub(shub.channel).ReceiveSharedAlert,
                                    _relay("will-county-so", "k-console")))  # fmt: skip
    assert code == denied
    listed = call(ag.ListSharedAlerts, agency_pb2.ListSharedAlertsRequest(), sup).alerts
    assert [a.relay.idempotency_key for a in listed] == ["k-own"]
    refused = audit_entries(shub, "shared.receive")
    assert len(refused) == 3 and all(e.outcome == "refused" for e in refused)


def _refused_as_someone_else(fn: Callable[[], object], field: str, typed: str, who: str) -> None:
    code, msg = rpc_code(fn)
    assert code == grpc.StatusCode.PERMISSION_DENIED, (code, msg)
    assert f"{field} {typed!r} is not the signed-in {who}" in msg and "credentials" in msg, msg


def test_the_principal_is_the_identity(shub: AuthHub, pki: Path, cql: Session) -> None:
    """Who acts comes from the token: left empty it is filled in, naming someone else is refused."""
    sup = shub.token("sup-ident", "supervisor")
    officer = shub.token("ofc-ident", "officer")
    hl = hotlist_pb2_grpc.HotListServiceStub(shub.channel)

    def add(plate: str, entered_by: str) -> hotlist_pb2.HotListEntry:
        return call(hl.AddEntry, hotlist_pb2.AddEntryRequest(expire_time=timestamp_in(timedelta(days=30)),
            plate=plate, state="IL", category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE, reason="identity test",
            entered_by=entered_by), sup).entry  # fmt: skip

    _refused_as_someone_else(lambda: add("IDN0001", "chief-of-police"), "entered_by", "chief-of-police", "sup-ident")
    held = call(hl.ListEntries, hotlist_pb2.ListEntriesRequest(plate="IDN0001"), sup).entries
    assert list(held) == []  # nothing was entered under the other name
    assert add("IDN4321", "").entered_by == "sup-ident"  # empty is fine: the token says who
    removed = add("IDN9999", "sup-ident")  # naming oneself is fine too
    assert removed.entered_by == "sup-ident"
    _refused_as_someone_else(
        lambda: call(hl.RemoveEntry, hotlist_pb2.RemoveEntryRequest(entry_id=removed.entry_id, reason="done",
                                                                   removed_by="x"), sup), "removed_by", "x", "sup-ident"
    )  # fmt: skip
    call(hl.RemoveEntry, hotlist_pb2.RemoveEntryRequest(entry_id=removed.entry_id, reason="done"), sup)
    changes = [e for e in audit_entries(shub, "hotlist.change") if "IDN" in e.details_json or e.actor == "sup-ident"]
    assert len(changes) == 3 and all(e.actor == "sup-ident" and "on_behalf_of" not in e.details_json for e in changes)
    denied = [e for e in audit_entries(shub, "access.denied") if e.actor == "sup-ident"]
    assert {json.loads(e.details_json)["method"] for e in denied} >= {
        "/alpr.v1.HotListService/AddEntry", "/alpr.v1.HotListService/RemoveEntry"
    }  # fmt: skip

    # An alert is decided by the officer of the token; a typed other officer is refused.
    time.sleep(0.5)  # the ingesting hub picks up the new entry
    read = make_read(plate="IDN4321", camera_id="cam-ident")
    read.region = "IL"
    shub.ingest([read])
    alerts = alert_pb2_grpc.AlertServiceStub(shub.channel)
    deadline, found = time.monotonic() + 30, list[alert_pb2.Alert]()
    while not found and time.monotonic() < deadline:
        listed = call(alerts.ListAlerts, alert_pb2.ListAlertsRequest(), officer).alerts
        found = [a for a in listed if a.read_id == read.read_id]
        time.sleep(0.2)
    assert found, "no alert for the hot-listed read"
    accept = alert_pb2.Acceptance(characters_verified=True, state_verified=True, leads_check=alert_pb2.LEADS_CHECK_DONE,
                                  action=alert_pb2.ENFORCEMENT_ACTION_TAKING_ACTION)  # fmt: skip

    def decide(officer_id: str) -> alert_pb2.DecideAlertResponse:
        return call(alerts.DecideAlert, alert_pb2.DecideAlertRequest(
            alert_id=found[0].alert_id, officer_id=officer_id, accept=accept), officer)  # fmt: skip

    _refused_as_someone_else(lambda: decide("someone-else"), "officer_id", "someone-else", "ofc-ident")
    pending = call(alerts.GetAlert, alert_pb2.GetAlertRequest(alert_id=found[0].alert_id), officer).alert
    assert pending.status == alert_pb2.ALERT_STATUS_PENDING
    assert decide("").alert.disposition.officer_id == "ofc-ident"

    # An out-of-state approval is the signed-in supervisor's: approver_id cannot name another.
    ag = agency_pb2_grpc.AgencyExchangeServiceStub(shub.channel)
    agency = agency_pb2.Agency(agency_id="kenosha-pd", name="Kenosha", state="WI", endpoint="127.0.0.1:2",
                               tls_identity="kenosha.example.gov", law_enforcement=True)  # fmt: skip
    call(ag.RegisterAgency, agency_pb2.RegisterAgencyRequest(agency=agency, replace=True), sup)
    expires = to_timestamp(dt.datetime.now(dt.UTC) + dt.timedelta(days=30))

    def approve(approver_id: str) -> agency_pb2.ApproveAgencyResponse:
        return call(ag.ApproveAgency, agency_pb2.ApproveAgencyRequest(
            agency_id="kenosha-pd", approver_id=approver_id,
            approver_role=agency_pb2.APPROVER_ROLE_DEPUTY_CHIEF_OF_INVESTIGATIONS,
            scopes=[agency_pb2.SHARE_SCOPE_ALERTS], expires_time=expires), sup)  # fmt: skip

    _refused_as_someone_else(lambda: approve("deputy-chief"), "approver_id", "deputy-chief", "sup-ident")
    assert approve("").approval.approver_id == "sup-ident"


def test_an_import_is_the_signed_in_users(shub: AuthHub) -> None:
    """Streamed requests too: an importer named in the header must be the token's user."""
    sup = shub.token("sup-import", "supervisor")
    csv_file = b"plate,state,category\nIMP4242,IL,stolen_vehicle\n"
    hl = hotlist_pb2_grpc.HotListServiceStub(shub.channel)
    md = (("authorization", f"Bearer {sup}"),)

    def run_import(imported_by: str) -> list[hotlist_pb2.ImportResult]:
        def requests() -> Iterator[hotlist_pb2.ImportListRequest]:
            header = hotlist_pb2.ImportHeader(format=hotlist_pb2.IMPORT_FORMAT_CSV,
                                              source=hotlist_pb2.HOT_LIST_SOURCE_SCOFFLAW,
                                              imported_by=imported_by, file_name="scofflaw.csv")  # fmt: skip
            yield hotlist_pb2.ImportListRequest(header=header)
            yield hotlist_pb2.ImportListRequest(data=csv_file)

        return [r.result for r in hl.ImportList(requests(), metadata=md, timeout=60)
                if r.WhichOneof("payload") == "result"]  # fmt: skip

    _refused_as_someone_else(lambda: run_import("chief-of-police"), "header.imported_by", "chief-of-police",
                             "sup-import")  # fmt: skip
    assert list(call(hl.ListEntries, hotlist_pb2.ListEntriesRequest(plate="IMP4242"), sup).entries) == []
    assert run_import(""), "no import result"
    listed = call(hl.ListEntries, hotlist_pb2.ListEntriesRequest(plate="IMP4242"), sup).entries
    assert [e.entered_by for e in listed] == ["sup-import"]


class _Subscribe:
    """A Subscribe stream over mutual TLS that stays open until closed."""

    def __init__(self, h: AuthHub, pki: Path, cert: str, node_id: str) -> None:
        self.stop = threading.Event()
        self.ch = channel(h, pki, cert)
        start = hotlist_pb2.SubscribeRequest(start=hotlist_pb2.SubscribeStart(node_id=node_id, have_version=0))

        def requests() -> Iterator[hotlist_pb2.SubscribeRequest]:
            yield start
            self.stop.wait(30)

        self.call = hotlist_pb2_grpc.HotListServiceStub(self.ch).Subscribe(requests(), timeout=20)

    def first(self) -> grpc.StatusCode | hotlist_pb2.SubscribeResponse:
        try:
            return next(iter(self.call))
        except grpc.RpcError as e:
            return e.code()
        finally:
            self.stop.set()
            self.call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leave RpcContext.cancel untyped
            self.ch.close()


def test_nodes_subscribe_only_as_their_registered_certificate(shub: AuthHub, pki: Path) -> None:
    ok = _Subscribe(shub, pki, "pole-1", "pole-1").first()
    assert isinstance(ok, hotlist_pb2.SubscribeResponse)
    assert _Subscribe(shub, pki, "pole-1", "pole-3").first() == grpc.StatusCode.PERMISSION_DENIED  # posing
    assert _Subscribe(shub, pki, "pole-2", "pole-2").first() == grpc.StatusCode.PERMISSION_DENIED  # unregistered
    call(admin_pb2_grpc.AdminServiceStub(shub.channel).RevokeNode,
         admin_pb2.RevokeNodeRequest(node_id="pole-3", reason="stolen unit"), shub.admin)  # fmt: skip
    assert _Subscribe(shub, pki, "pole-3", "pole-3").first() == grpc.StatusCode.UNAUTHENTICATED
    denied = [e for e in audit_entries(shub, "access.denied") if e.actor in ("node:pole-1", "node:pole-2")]
    assert {e.actor for e in denied} == {"node:pole-1", "node:pole-2"}


# -- the audit chain: keyed, and anchored outside Cassandra ----------------------------------


def _chain_rows(cql: Session, ks: str, chain: str) -> list[Row]:
    return list(cql.execute(f"SELECT * FROM {ks}.audit_log WHERE chain = %s AND bucket = 0", (chain,)))


def _put_rows(cql: Session, ks: str, rows: list[Row]) -> None:
    for r in rows:
        cql.execute(
            f"INSERT INTO {ks}.audit_log (chain, bucket, seq, time, actor, role, action, purpose, case_number, "
            "details_json, result_count, outcome, prev_hash, entry_hash) "
            "VALUES (%s, 0, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (r.chain, r.seq, r.time, r.actor, r.role, r.action, r.purpose, r.case_number, r.details_json,
             r.result_count, r.outcome, r.prev_hash, r.entry_hash),
        )  # fmt: skip


def _set_head(cql: Session, ks: str, chain: str, seq: int, entry_hash: str) -> None:
    cql.execute(
        f"UPDATE {ks}.audit_chains SET head_seq = %s, head_hash = %s WHERE chain = %s", (seq, entry_hash, chain)
    )


def test_the_audit_chain_is_keyed_and_anchored_outside_cassandra(
    cassandra: tuple[list[str], int], cql: Session, pki: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from alpr_common.operator_cli import main as alpr_cli
    from hub.audit import CheckpointSink, _row_record

    anchors_dir = tmp_path / "checkpoints"  # this deployment's own (the module's other hub has its own)
    one = AuthHub(cassandra, cql, hub_id="hub-one",
                  **secured(pki, audit_checkpoint_interval_s=0.2, audit_checkpoint_dir=str(anchors_dir)))  # fmt: skip
    ks, chain = one.keyspace, "hub-one"
    one.channel.close()
    one.channel = channel(one, pki, "console")
    admin = admin_pb2_grpc.AdminServiceStub(one.channel)
    for i in range(4):
        call(
            admin.AddUser, admin_pb2.AddUserRequest(user_id=f"aud-disp-{i}", role=admin_pb2.ROLE_DISPATCHER), one.admin
        )
    one.thread.stop()  # the final checkpoint is written at shutdown
    one.channel.close()
    head = cql.execute(f"SELECT head_seq, head_hash FROM {ks}.audit_chains WHERE chain = %s", (chain,)).one()
    key = (pki / "audit.key").read_bytes().strip()
    anchors, bad = CheckpointSink(anchors_dir, key).latest()
    assert not bad and anchors[chain].seq == head.head_seq >= 5 and anchors[chain].entry_hash == head.head_hash
    original = _chain_rows(cql, ks, chain)
    # Keyed: the stored hash is not the plain SHA-256 anyone could recompute, and the key is not stored.
    rec = _row_record(original[-1])
    assert rec.entry_hash == rec.compute_hash(key) != rec.compute_hash(None)
    assert key.decode() not in repr(original)

    # `alpr-hub add-user` (the bootstrap without a hub) writes to its own chain, keyed and anchored too.
    from hub.cli import main as alpr_hub

    cfg_file = tmp_path / "hub.yaml"
    cfg_file.write_text(yaml.safe_dump(one.config.model_dump(mode="json")))
    assert alpr_hub(["add-user", "--config", str(cfg_file), "--user", "chief", "--role", "admin"]) == 0
    cli_anchor = CheckpointSink(anchors_dir, key).latest()[0]["cli-hub-one"]
    assert cli_anchor.seq == 1 and cli_anchor.entry_hash == _chain_rows(cql, ks, "cli-hub-one")[0].entry_hash

    # A second hub on the same keyspace and checkpoint directory answers `alpr audit verify`.
    two = HubThread(one.config.model_copy(update={"hub_id": "hub-two"})).start()
    try:
        auditor = one.token("sec-aud", "auditor")
        for name, value in (("ALPR_TLS_CA", pki / "ca" / "ca.crt"), ("ALPR_TLS_CERT", pki / "console.crt"),
                            ("ALPR_TLS_KEY", pki / "console.key")):  # fmt: skip
            monkeypatch.setenv(name, str(value))
        cli = ["--hub", two.target, "--token", auditor, "--json", "audit", "verify"]
        creds = tls.channel_credentials(str(pki / "ca" / "ca.crt"), str(pki / "console.crt"), str(pki / "console.key"))
        with grpc.secure_channel(two.target, creds) as ch, LatencyProbe(two.target, creds) as probe:
            stub = audit_pb2_grpc.AuditServiceStub(ch)

            def problems() -> list[str]:
                rep = call(stub.VerifyAudit, audit_pb2.VerifyAuditRequest(), auditor)
                return [p for c in rep.chains for p in c.problems]

            assert problems() == [] and alpr_cli(cli) == 0

            # 1. Rewritten by someone with Cassandra access: an entry changed, every later hash
            #    recomputed (plain SHA-256, the only hash without the key), the head row too.
            forged, prev = [], original[0].prev_hash
            for r in original:
                fr = _row_record(r)
                fr.prev_hash = prev
                if fr.seq == 2:
                    fr.actor = "someone-else"
                if fr.seq >= 2:
                    fr.entry_hash = fr.compute_hash(None)
                prev = fr.entry_hash
                forged.append(fr)
            for fr in forged:
                cql.execute(
                    f"UPDATE {ks}.audit_log SET actor = %s, prev_hash = %s, entry_hash = %s "
                    "WHERE chain = %s AND bucket = 0 AND seq = %s",
                    (fr.actor, fr.prev_hash, fr.entry_hash, chain, fr.seq),
                )
            _set_head(cql, ks, chain, forged[-1].seq, forged[-1].entry_hash)
            found = problems()
            assert any("seq 2: contents changed" in p for p in found), found
            assert any("differs from the signed checkpoint" in p for p in found), found
            assert alpr_cli(cli) == 1
            _put_rows(cql, ks, original)
            _set_head(cql, ks, chain, head.head_seq, head.head_hash)
            assert problems() == []

            # 2. Truncated: the newest entries deleted and the head row moved back to match.
            for r in original[-2:]:
                cql.execute(f"DELETE FROM {ks}.audit_log WHERE chain = %s AND bucket = 0 AND seq = %s", (chain, r.seq))
            _set_head(cql, ks, chain, original[-3].seq, original[-3].entry_hash)
            found = problems()
            assert any("chain truncated" in p for p in found), found
            _put_rows(cql, ks, original[-2:])
            _set_head(cql, ks, chain, head.head_seq, head.head_hash)
            assert problems() == []

            # 3. Deleted: every entry and the head row.
            cql.execute(f"DELETE FROM {ks}.audit_log WHERE chain = %s AND bucket = 0", (chain,))
            cql.execute(f"DELETE FROM {ks}.audit_chains WHERE chain = %s", (chain,))
            found = problems()
            assert any(p.startswith("chain deleted") for p in found), found
            assert alpr_cli(cli) == 1

            # 4. A checkpoint forged in the file (without the key) is reported, not believed.
            with open(anchors_dir / "hub-one.jsonl", "a") as f:
                f.write(
                    '{"chain": "hub-one", "seq": 1, "entry_hash": "00", "time": "now", "hub_id": "x", "mac": "00"}\n'
                )
            assert any("signature invalid" in p for p in problems())
        probe.assert_responsive("verifying forged, truncated and deleted chains")
    finally:
        two.stop()
        one.thread.hub = None
        one.stop()
