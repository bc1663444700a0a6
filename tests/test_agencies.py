"""Agency exchange (policy 3.4-3.6, 4.7) on real hubs: registry, approvals, sharing rules with
audit, the receiving hub de-duplicating relays; out-of-state refused without an approval and
delivered with one, end to end through the bridge."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from alpr.v1 import agency_pb2, agency_pb2_grpc, alert_pb2

from alpr_common.timestamps import to_timestamp
from tests import bridge_support
from tests.bridge_support import (
    BridgeThread,
    Hubs,
    WebhookReceiver,
    accept,
    bridge_config,
    raise_alert,
    wait_for,
    webhook_sink,
)
from tests.support import ROOT

agency_hubs = bridge_support.agency_hubs  # the session fixture
INV, DENIED = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED


def _agency(agency_id: str, state: str, endpoint: str, **kw: Any) -> agency_pb2.Agency:
    base: dict[str, Any] = dict(agency_id=agency_id, name=f"Agency {agency_id}", state=state, endpoint=endpoint,
                                tls_identity=f"{agency_id}.example.gov", law_enforcement=True, registered_by="admin-1")  # fmt: skip
    base.update(kw)
    return agency_pb2.Agency(**base)


def _refused(fn: Any, req: Any, code: grpc.StatusCode, text: str) -> None:
    with pytest.raises(grpc.RpcError) as e:
        fn(req)
    assert e.value.code() == code, e.value.details()
    assert text in (e.value.details() or ""), e.value.details()


def _alpr(hub: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alpr_common.operator_cli", "--hub", hub, *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip


def test_registry_approvals_and_sharing_rules(agency_hubs: Hubs) -> None:
    hubs = agency_hubs
    a = hubs.agency_a()
    ep = hubs.b.target
    reg = a.RegisterAgency
    _refused(reg, agency_pb2.RegisterAgencyRequest(agency=_agency("X", "IL", ep)), INV, "agency_id")
    _refused(reg, agency_pb2.RegisterAgencyRequest(agency=_agency("ok-id", "Illinois", ep)), INV, "two-letter")
    _refused(reg, agency_pb2.RegisterAgencyRequest(agency=_agency("ok-id", "IL", "nohost")), INV, "HOST:PORT")
    _refused(reg, agency_pb2.RegisterAgencyRequest(agency=_agency("ok-id", "IL", ep, registered_by="")), INV,
             "registered_by")  # fmt: skip
    reg(agency_pb2.RegisterAgencyRequest(agency=_agency("lockport-pd", "IL", ep)))
    _refused(reg, agency_pb2.RegisterAgencyRequest(agency=_agency("lockport-pd", "IL", ep)), grpc.StatusCode.ALREADY_EXISTS,
             "replace")  # fmt: skip
    reg(agency_pb2.RegisterAgencyRequest(agency=_agency("gary-pd", "IN", ep)))
    reg(agency_pb2.RegisterAgencyRequest(agency=_agency("press-co", "IL", ep, law_enforcement=False)))

    def share(agency_id: str) -> agency_pb2.AuthorizeShareResponse:
        return a.AuthorizeShare(agency_pb2.AuthorizeShareRequest(
            agency_id=agency_id, scope=agency_pb2.SHARE_SCOPE_ALERTS, subject="alert t", requested_by="test"))  # fmt: skip

    assert share("lockport-pd").agency.endpoint == ep  # in-state law enforcement
    _refused(share, "nobody", DENIED, "not registered")
    _refused(share, "press-co", DENIED, "not registered as a law-enforcement agency")
    _refused(share, "gary-pd", DENIED, "out of state (IN)")
    _refused(a.AuthorizeShare, agency_pb2.AuthorizeShareRequest(agency_id="gary-pd", requested_by="t"), INV, "scope")

    ap = a.ApproveAgency
    week = to_timestamp(datetime.now(UTC) + timedelta(days=7))
    dci = agency_pb2.APPROVER_ROLE_DEPUTY_CHIEF_OF_INVESTIGATIONS
    good: dict[str, Any] = dict(
        agency_id="gary-pd", approver_id="dci-1", scopes=[agency_pb2.SHARE_SCOPE_ALERTS], expires_time=week
    )
    _refused(ap, agency_pb2.ApproveAgencyRequest(**good), INV, "Deputy Chief of Investigations")
    _refused(ap, agency_pb2.ApproveAgencyRequest(**good, approver_role=agency_pb2.APPROVER_ROLE_DESIGNEE), INV,
             "designated_by")  # fmt: skip
    past = {**good, "expires_time": to_timestamp(datetime.now(UTC) - timedelta(days=1))}
    _refused(ap, agency_pb2.ApproveAgencyRequest(**past, approver_role=dci), INV, "past")
    _refused(ap, agency_pb2.ApproveAgencyRequest(**{**good, "agency_id": "nobody"}, approver_role=dci),
             grpc.StatusCode.NOT_FOUND, "not registered")  # fmt: skip
    # Reads scope only: alerts still refused.
    ap(agency_pb2.ApproveAgencyRequest(**{**good, "scopes": [agency_pb2.SHARE_SCOPE_READS]}, approver_role=dci))
    _refused(share, "gary-pd", DENIED, "does not cover the alerts scope")
    approval = ap(agency_pb2.ApproveAgencyRequest(**good, approver_role=agency_pb2.APPROVER_ROLE_DESIGNEE,
                                                  designated_by="dci-1")).approval  # fmt: skip
    ok = share("gary-pd")
    assert ok.approval_id == approval.approval_id
    listed = {x.agency_id: x for x in a.ListAgencies(agency_pb2.ListAgenciesRequest()).agencies}
    assert {"lockport-pd", "gary-pd", "press-co"} <= set(listed) and len(listed["gary-pd"].approvals) == 2
    audit = a.ListShareAudit(agency_pb2.ListShareAuditRequest(hours=1)).entries
    mine = [(e.agency_id, e.allowed) for e in audit if e.subject == "alert t"]
    assert ("gary-pd", False) in mine and ("gary-pd", True) in mine and ("nobody", False) in mine
    assert ("press-co", False) in mine and ("lockport-pd", True) in mine


def test_receiving_hub_dedupes_and_validates(agency_hubs: Hubs) -> None:
    b = agency_hubs.agency_b()
    r = agency_pb2.Relay(idempotency_key="k-dedupe-1", reason=agency_pb2.RELAY_REASON_UNABLE_TO_ACT,
                         origin_agency_id="joliet-pd", plate="ABC123", alert_id="x")  # fmt: skip
    first = b.ReceiveSharedAlert(agency_pb2.ReceiveSharedAlertRequest(relay=r))
    again = b.ReceiveSharedAlert(agency_pb2.ReceiveSharedAlertRequest(relay=r))
    assert not first.duplicate and again.duplicate
    got = [s for s in b.ListSharedAlerts(agency_pb2.ListSharedAlertsRequest()).alerts
           if s.relay.idempotency_key == "k-dedupe-1"]  # fmt: skip
    assert len(got) == 1 and got[0].relay.origin_agency_id == "joliet-pd"
    bad = agency_pb2.Relay(idempotency_key="k2", reason=agency_pb2.RELAY_REASON_VALID_ALERT, plate="ABC")
    _refused(b.ReceiveSharedAlert, agency_pb2.ReceiveSharedAlertRequest(relay=bad), INV, "origin_agency_id")
    _refused(b.ListSharedAlerts, agency_pb2.ListSharedAlertsRequest(hours=2000), INV, "hours")


def test_out_of_state_refused_without_approval_delivered_with_one(
    cassandra: tuple[list[str], int], agency_hubs: Hubs
) -> None:
    hubs = agency_hubs
    target = hubs.a.target
    # Registered through the operator CLI (agency B's hub plays the Indiana agency).
    add = _alpr(target, "agencies", "add", "lake-county-in", "--name", "Lake County Sheriff (IN)", "--state", "IN",
                "--endpoint", hubs.b.target, "--tls-identity", "lake-in.example.gov", "--by", "admin-1", "--json")  # fmt: skip
    assert add.returncode == 0, add.stderr
    assert json.loads(add.stdout)["state"] == "IN"
    cad = WebhookReceiver()
    cfg = bridge_config(cassandra, hubs, "oos", dispatch=[webhook_sink(cad.url)],
                        neighbours=[{"agency_id": "lake-county-in"}])  # fmt: skip
    bridge = BridgeThread(cfg).start()
    sink = "agency:lake-county-in"
    try:
        first, _ = raise_alert(hubs.a.target, "cam-oos")
        accept(hubs, first, alert_pb2.ENFORCEMENT_ACTION_UNABLE_TO_ACT)
        cad.wait_key(f"{first}:unable_to_act")  # dispatch gets it regardless
        wait_for(lambda: bridge.metric("alpr_bridge_dead_letters_total", {"sink": sink}) >= 1, what="refusal")
        dl = _alpr(target, "bridge", "dead-letters", "--bridge-id", "oos", "--json")
        assert dl.returncode == 0, dl.stderr
        dead = json.loads(dl.stdout)["dead_letters"]
        assert [d["key"] for d in dead] == [f"{first}:unable_to_act"] and "policy 4.7" in dead[0]["last_error"]
        audit = json.loads(_alpr(target, "agencies", "audit", "--agency", "lake-county-in", "--json").stdout)
        assert audit["entries"] and not audit["entries"][0].get("allowed", False)
        shared_b = agency_pb2_grpc.AgencyExchangeServiceStub(grpc.insecure_channel(hubs.b.target))

        def on_b(aid: str) -> list[Any]:
            got = shared_b.ListSharedAlerts(agency_pb2.ListSharedAlertsRequest(origin_agency_id="joliet-pd"))
            return [s for s in got.alerts if s.relay.alert_id == aid]

        assert on_b(first) == []
        # The Deputy Chief of Investigations approves; the next relay is delivered, and so is the retried one.
        expires = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
        appr = _alpr(target, "agencies", "approve", "lake-county-in", "--approver", "dci-1", "--role",
                     "deputy-chief-of-investigations", "--scope", "alerts", "--expires", expires, "--json")  # fmt: skip
        assert appr.returncode == 0, appr.stderr
        second, _ = raise_alert(hubs.a.target, "cam-oos")
        accept(hubs, second, alert_pb2.ENFORCEMENT_ACTION_UNABLE_TO_ACT)
        wait_for(lambda: on_b(second), what="approved relay on the IN agency's hub")
        retry = _alpr(target, "bridge", "retry", f"{first}:unable_to_act", "--bridge-id", "oos")
        assert retry.returncode == 0, retry.stderr
        got = wait_for(lambda: on_b(first), timeout=15, what="retried relay")
        assert got[0].relay.origin_agency_id == "joliet-pd" and got[0].relay.plate == "BRG1234"
        # Refusals are explained by the CLI with the hub's message.
        bad = _alpr(target, "agencies", "approve", "lake-county-in", "--approver", "x", "--role", "designee",
                    "--expires", expires)  # fmt: skip
        assert bad.returncode == 1 and "designated_by" in bad.stderr
    finally:
        bridge.stop()
        cad.stop()
