"""Mutual TLS: certificates from ``alpr certs``, node identity = certificate CN on ingest,
registered cameras only, revoked nodes refused, unknown CAs and cert-less clients refused."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc
import pytest
from alpr.v1 import admin_pb2, admin_pb2_grpc, ingest_pb2, ingest_pb2_grpc
from cassandra.cluster import Session

from alpr_common.operator_cli import main as alpr
from alpr_common.retry import Backoff
from alpr_common.simulation import make_read
from alpr_common.tls import channel_credentials, init_ca
from tests.access_support import AuthHub, call
from tests.support import PacedStream, StreamResult, _record


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    assert alpr(["certs", "init", "--dir", str(d / "ca")]) == 0
    assert alpr(["certs", "issue", "hub-1", "--kind", "service", "--ca-dir", str(d / "ca"), "--out", str(d),
                 "--host", "127.0.0.1", "--host", "localhost"]) == 0  # fmt: skip
    for name, kind in (("pole-1", "node"), ("pole-2", "node"), ("console", "service")):
        assert alpr(["certs", "issue", name, "--kind", kind, "--ca-dir", str(d / "ca"), "--out", str(d)]) == 0
    init_ca(d / "rogue-ca")
    assert alpr(["certs", "issue", "pole-1", "--ca-dir", str(d / "rogue-ca"), "--out", str(d / "rogue")]) == 0
    assert alpr(["certs", "init", "--dir", str(d / "ca")]) == 1  # never overwrites a CA
    return d


@pytest.fixture(scope="module")
def thub(cassandra: tuple[list[str], int], cql: Session, pki: Path) -> Iterator[AuthHub]:
    tls = {
        "enabled": True,
        "cert_file": str(pki / "hub-1.crt"),
        "key_file": str(pki / "hub-1.key"),
        "ca_file": str(pki / "ca" / "ca.crt"),
    }
    h = AuthHub(cassandra, cql, tls=tls)
    h.channel.close()
    h.channel = grpc.secure_channel(h.thread.target, secure(pki, "console"))
    call(
        admin_pb2_grpc.AdminServiceStub(h.channel).RegisterNode,
        admin_pb2.RegisterNodeRequest(node_id="pole-1", camera_ids=["pole-1-east", "pole-1-west"]),
        h.admin,
    )
    yield h
    h.stop()


def secure(pki: Path, name: str, ca: str = "ca", certdir: Path | None = None) -> grpc.ChannelCredentials:
    d = certdir or pki
    creds = channel_credentials(str(pki / ca / "ca.crt"), str(d / f"{name}.crt"), str(d / f"{name}.key"))
    return creds


def stream(
    target: str, creds: grpc.ChannelCredentials, requests: Iterable[ingest_pb2.IngestRequest], timeout: float = 30
) -> StreamResult:
    result = StreamResult()
    with grpc.secure_channel(target, creds) as ch:
        try:
            for resp in ingest_pb2_grpc.IngestServiceStub(ch).Ingest(iter(requests), timeout=timeout):
                _record(result, resp)
        except grpc.RpcError as e:
            result.status = e.code()
    return result


def test_a_node_submits_only_its_own_reads_and_cameras(thub: AuthHub, pki: Path) -> None:
    own = make_read("pole-1", "pole-1-east", "OWN1234")
    posing = make_read("pole-2", "pole-2-east", "POS1234")  # pole-1 posing as pole-2
    other_cam = make_read("pole-1", "pole-9", "CAM1234")
    hb_other = ingest_pb2.IngestRequest(heartbeat=ingest_pb2.Heartbeat(node_id="pole-2"))
    res = stream(
        thub.thread.target,
        secure(pki, "pole-1"),
        [ingest_pb2.IngestRequest(read=r) for r in (own, posing, other_cam)] + [hb_other],
    )
    assert res.status == grpc.StatusCode.OK, res
    assert list(res.acks) == [own.read_id]
    for r, fld in ((posing, "node_id"), (other_cam, "camera_id")):
        err = res.errors[r.read_id]
        assert err.code == grpc.StatusCode.PERMISSION_DENIED.value[0] and err.field == fld, err
    assert res.errors[""].field == "heartbeat.node_id" and not res.heartbeat_acks
    stored = [
        r.read_id
        for r in (own, posing, other_cam)
        if thub.cql.execute(
            f"SELECT read_id FROM {thub.keyspace}.reads_by_id WHERE read_id = %s", (uuid.UUID(r.read_id),)
        ).one()
    ]
    assert stored == [own.read_id]


def test_unregistered_node_and_foreign_ca_and_no_certificate(thub: AuthHub, pki: Path) -> None:
    r = make_read("pole-2", "pole-2-east", "UNR1234")
    res = stream(thub.thread.target, secure(pki, "pole-2"), [ingest_pb2.IngestRequest(read=r)])
    assert res.errors[r.read_id].code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert "not registered" in res.errors[r.read_id].message
    rogue = secure(pki, "pole-1", certdir=pki / "rogue")
    r2 = make_read("pole-1", "pole-1-east", "ROG1234")
    assert stream(thub.thread.target, rogue, [ingest_pb2.IngestRequest(read=r2)], timeout=10).status in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNAUTHENTICATED,
    )
    no_cert = grpc.ssl_channel_credentials(root_certificates=(pki / "ca" / "ca.crt").read_bytes())
    assert stream(thub.thread.target, no_cert, [ingest_pb2.IngestRequest(read=r2)], timeout=10).status in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNAUTHENTICATED,
    )


def test_revoked_node_is_refused(thub: AuthHub, pki: Path) -> None:
    call(
        admin_pb2_grpc.AdminServiceStub(thub.channel).RegisterNode,
        admin_pb2.RegisterNodeRequest(node_id="pole-3", camera_ids=["pole-3-a"]),
        thub.admin,
    )
    assert alpr(["certs", "issue", "pole-3", "--ca-dir", str(pki / "ca"), "--out", str(pki)]) == 0
    ok = make_read("pole-3", "pole-3-a", "REV1111")
    assert list(stream(thub.thread.target, secure(pki, "pole-3"), [ingest_pb2.IngestRequest(read=ok)]).acks) == [
        ok.read_id
    ]
    call(
        admin_pb2_grpc.AdminServiceStub(thub.channel).RevokeNode,
        admin_pb2.RevokeNodeRequest(node_id="pole-3", reason="stolen unit"),
        thub.admin,
    )
    again = make_read("pole-3", "pole-3-a", "REV2222")
    res = stream(thub.thread.target, secure(pki, "pole-3"), [ingest_pb2.IngestRequest(read=again)])
    assert res.status in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED) and not res.acks


def test_operator_cli_over_mutual_tls(
    thub: AuthHub, pki: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ALPR_TLS_CA", str(pki / "ca" / "ca.crt"))
    monkeypatch.setenv("ALPR_TLS_CERT", str(pki / "console.crt"))
    monkeypatch.setenv("ALPR_TLS_KEY", str(pki / "console.key"))
    assert alpr(["--hub", thub.thread.target, "--token", thub.admin, "--json", "nodes", "list"]) == 0
    assert "pole-1" in capsys.readouterr().out


def test_node_uplink_delivers_over_mutual_tls(thub: AuthHub, pki: Path, tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from node.metrics import NodeMetrics
    from node.queue import ReadQueue
    from node.uplink import Uplink, UplinkSettings

    queue = ReadQueue(tmp_path / "queue.sqlite", budget_bytes=10**7)
    creds = channel_credentials(str(pki / "ca" / "ca.crt"), str(pki / "pole-1.crt"), str(pki / "pole-1.key"))
    uplink = Uplink(
        UplinkSettings([thub.thread.target], window=8, heartbeat_interval_s=1.0, backoff=Backoff(0.1, 30.0)),
        queue,
        lambda: ingest_pb2.Heartbeat(node_id="pole-1"),
        NodeMetrics(CollectorRegistry()),
        credentials=creds,
    )
    reads = [make_read("pole-1", "pole-1-west", f"UPL{i:04d}") for i in range(5)]
    for r in reads:
        queue.put(r.read_id, ingest_pb2.IngestRequest(read=r).SerializeToString())
    uplink.start()
    try:
        deadline = time.monotonic() + 30
        while queue.depth() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert queue.depth() == 0 and not queue.rejected()
    finally:
        uplink.stop()
        queue.close()


def test_node_hotlist_sync_over_mutual_tls(thub: AuthHub, pki: Path, tmp_path: Path) -> None:
    from node.hotlist_sync import HotListSync

    sync = HotListSync(tmp_path / "hotlist.sqlite", [thub.thread.target], "pole-1", backoff=Backoff(0.1, 30.0))
    sync.credentials = channel_credentials(str(pki / "ca" / "ca.crt"), str(pki / "pole-1.crt"), str(pki / "pole-1.key"))
    sync.start()
    try:
        assert sync.wait_current(30)
    finally:
        sync.stop()


def test_node_revoked_mid_stream_is_cut_off(thub: AuthHub, pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Revocation reaches an open stream within the recheck interval, not at the next reconnect."""
    import hub.node_identity

    monkeypatch.setattr(hub.node_identity, "NODE_RECHECK_S", 0.2)
    admin = admin_pb2_grpc.AdminServiceStub(thub.channel)
    call(admin.RegisterNode, admin_pb2.RegisterNodeRequest(node_id="pole-4", camera_ids=["pole-4-a"]), thub.admin)
    assert alpr(["certs", "issue", "pole-4", "--ca-dir", str(pki / "ca"), "--out", str(pki)]) == 0
    s = PacedStream(thub.thread.target, secure(pki, "pole-4"))
    first = make_read("pole-4", "pole-4-a", "MID1111")
    s.send(ingest_pb2.IngestRequest(read=first))
    deadline = time.time() + 30
    while first.read_id not in s.result.acks and time.time() < deadline:
        time.sleep(0.05)
    assert first.read_id in s.result.acks
    call(admin.RevokeNode, admin_pb2.RevokeNodeRequest(node_id="pole-4", reason="unit stolen"), thub.admin)
    time.sleep(0.5)
    second = make_read("pole-4", "pole-4-a", "MID2222")
    s.send(ingest_pb2.IngestRequest(read=second))
    res = s.close()
    assert second.read_id not in res.acks
    assert res.errors[second.read_id].code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert "revoked" in res.errors[second.read_id].message
    assert res.status == grpc.StatusCode.PERMISSION_DENIED


def test_boot_shift_check_passes_against_a_mutual_tls_hub(
    thub: AuthHub, pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The systemd boot check's own command line, with the node's config, is READY against a
    mutual-TLS hub; the same check without the node's certificate cannot be."""
    import shlex

    import yaml

    from node.cli import main as alpr_node
    from tests.support import ROOT

    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({
        "node_id": "pole-1", "state_dir": str(tmp_path / "state"), "location": {"latitude": 41.5, "longitude": -88.1},
        "cameras": [{"camera_id": "pole-1-east", "source": "rtsp://camera.invalid/stream"}],
        "hub": {"targets": [thub.thread.target], "tls_ca_file": str(pki / "ca" / "ca.crt"),
                "tls_cert_file": str(pki / "pole-1.crt"), "tls_key_file": str(pki / "pole-1.key")},
    }))  # fmt: skip
    unit = (ROOT / "ops" / "deploy" / "systemd" / "alpr-node-shift-start.service").read_text()
    exec_start = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart=")).removeprefix("ExecStart=")
    argv = shlex.split(exec_start.replace("/etc/alpr/node.yaml", str(config)))[1:]
    assert alpr_node([*argv, "--timeout", "30"]) == 0, capsys.readouterr().err
    assert "READY: officer system-boot on node pole-1" in capsys.readouterr().out
    assert json.loads((tmp_path / "state" / "shift.json").read_text())["on_shift"] is True

    # plaintext to the same hub: refused, and the verdict says what is missing
    rc = alpr_node(["shift-start", "--officer", "o-1", "--hub", thub.thread.target, "--node-id", "pole-1",
                    "--state-dir", str(tmp_path / "plain"), "--timeout", "2"])  # fmt: skip
    assert rc == 1 and "needs --config with the node's certificate" in capsys.readouterr().err

    # a certificate file that is not there: one line saying which, no traceback
    config.write_text(config.read_text().replace("pole-1.key", "pole-404.key"))
    assert alpr_node(["shift-start", "--officer", "o-1", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "hub.tls_key_file: cannot read" in err and "pole-404.key" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
