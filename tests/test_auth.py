"""Tokens, roles, the central access table, and the audit log's hash chain (policy §3)."""

from __future__ import annotations

import importlib
import itertools
import pkgutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import alpr.v1
import grpc
import pytest
from alpr.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    agency_pb2,
    agency_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    hotlist_pb2,
    hotlist_pb2_grpc,
)
from cassandra.cluster import Session
from grpc_health.v1 import health_pb2, health_pb2_grpc

from alpr_common.operator_cli import main as alpr_cli
from alpr_common.timestamps import timestamp_in
from hub import auth, principal, users
from tests.access_support import AuthHub, call, rpc_code


@pytest.fixture(scope="module")
def ahub(cassandra: tuple[list[str], int], cql: Session) -> Iterator[AuthHub]:
    h = AuthHub(cassandra, cql)
    yield h
    h.stop()


def test_every_rpc_of_every_service_is_in_the_access_table() -> None:
    missing = []
    for mod in pkgutil.iter_modules(alpr.v1.__path__):
        if not mod.name.endswith("_pb2"):
            continue
        pb = importlib.import_module(f"alpr.v1.{mod.name}")
        for svc in pb.DESCRIPTOR.services_by_name.values():
            for m in svc.methods:
                name = f"/{svc.full_name}/{m.name}"
                if name not in auth.METHOD_ROLES and name not in auth.PUBLIC_METHODS:
                    missing.append(name)
    assert missing == [], "add these methods to hub/auth.py METHOD_ROLES (denied by default until then)"
    for roles in auth.METHOD_ROLES.values():
        assert roles <= {*principal.ROLES, principal.NODE, principal.SERVICE, *principal.SERVICE_ROLES}


def test_missing_and_unknown_tokens_are_unauthenticated(ahub: AuthHub) -> None:
    stub = admin_pb2_grpc.AdminServiceStub(ahub.channel)
    code, msg = rpc_code(lambda: call(stub.WhoAmI, admin_pb2.WhoAmIRequest()))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "no credentials" in msg
    code, msg = rpc_code(lambda: call(stub.WhoAmI, admin_pb2.WhoAmIRequest(), "alpr_not-a-real-token"))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "unknown access token" in msg
    # Other services are closed too: no read data without credentials.
    hl = hotlist_pb2_grpc.HotListServiceStub(ahub.channel)
    code, _ = rpc_code(lambda: call(hl.ListEntries, hotlist_pb2.ListEntriesRequest()))
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_health_stays_public(ahub: AuthHub) -> None:
    resp = health_pb2_grpc.HealthStub(ahub.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_roles_and_revocation(ahub: AuthHub) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(ahub.channel)
    added = call(admin.AddUser, admin_pb2.AddUserRequest(user_id="ofc-1", role=admin_pb2.ROLE_OFFICER), ahub.admin)
    token = added.token
    assert token and added.user.role == admin_pb2.ROLE_OFFICER
    stored = {r.token_sha256 for r in ahub.cql.execute(f"SELECT token_sha256 FROM {ahub.keyspace}.auth_tokens")}
    assert users.hash_token(token) in stored and token not in stored  # only the hash is kept

    me = call(admin.WhoAmI, admin_pb2.WhoAmIRequest(), token)
    assert me.user.user_id == "ofc-1"

    code, msg = rpc_code(
        lambda: call(admin.AddUser, admin_pb2.AddUserRequest(user_id="x", role=admin_pb2.ROLE_OFFICER), token)
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED and "'officer'" in msg and "AddUser" in msg
    audit = audit_pb2_grpc.AuditServiceStub(ahub.channel)
    code, _ = rpc_code(lambda: call(audit.VerifyAudit, audit_pb2.VerifyAuditRequest(), token))
    assert code == grpc.StatusCode.PERMISSION_DENIED

    call(admin.RevokeUser, admin_pb2.RevokeUserRequest(user_id="ofc-1", reason="left"), ahub.admin)
    code, msg = rpc_code(lambda: call(admin.WhoAmI, admin_pb2.WhoAmIRequest(), token))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "revoked" in msg
    # Re-adding the user gives a new token; the old one stays dead.
    new = call(admin.AddUser, admin_pb2.AddUserRequest(user_id="ofc-1", role=admin_pb2.ROLE_OFFICER), ahub.admin)
    assert call(admin.WhoAmI, admin_pb2.WhoAmIRequest(), new.token).user.user_id == "ofc-1"
    code, _ = rpc_code(lambda: call(admin.WhoAmI, admin_pb2.WhoAmIRequest(), token))
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_a_method_missing_from_the_table_is_denied(ahub: AuthHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(auth.METHOD_ROLES, "/alpr.v1.AdminService/ListUsers")
    admin = admin_pb2_grpc.AdminServiceStub(ahub.channel)
    code, msg = rpc_code(lambda: call(admin.ListUsers, admin_pb2.ListUsersRequest(), ahub.admin))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "denied by default" in msg


def test_audit_chain_records_and_detects_tampering(ahub: AuthHub) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(ahub.channel)
    auditor = ahub.token("aud-1", "auditor")
    for i in range(3):
        call(admin.AddUser, admin_pb2.AddUserRequest(user_id=f"disp-{i}", role=admin_pb2.ROLE_DISPATCHER), ahub.admin)
    stub = audit_pb2_grpc.AuditServiceStub(ahub.channel)
    ok = call(stub.VerifyAudit, audit_pb2.VerifyAuditRequest(), auditor)
    assert ok.ok, ok
    cli = ["--hub", ahub.thread.target, "--token", auditor, "--json", "audit"]
    assert alpr_cli([*cli, "verify"]) == 0
    assert alpr_cli([*cli, "list", "--action", "user.add"]) == 0
    entries = call(stub.ListAudit, audit_pb2.ListAuditRequest(limit=1000), auditor).entries
    actions = [e.action for e in entries]
    assert "user.add" in actions and "login" in actions and "auth.failed" in actions
    adds = [e for e in entries if e.action == "user.add"]
    assert adds[-1].actor == "root" and '"disp-2"' in adds[-1].details_json
    for a, b in itertools.pairwise(entries):
        assert b.prev_hash == a.entry_hash and b.seq == a.seq + 1

    ks, chain, victim = ahub.keyspace, adds[-2].chain, adds[-2].seq
    # 1. A changed row.
    ahub.cql.execute(
        f"UPDATE {ks}.audit_log SET actor = 'someone-else' WHERE chain = %s AND bucket = 0 AND seq = %s",
        (chain, victim),
    )
    bad = call(stub.VerifyAudit, audit_pb2.VerifyAuditRequest(), auditor)
    assert not bad.ok and any(f"seq {victim}: contents changed" in p for c in bad.chains for p in c.problems)
    ahub.cql.execute(
        f"UPDATE {ks}.audit_log SET actor = 'root' WHERE chain = %s AND bucket = 0 AND seq = %s", (chain, victim)
    )
    assert call(stub.VerifyAudit, audit_pb2.VerifyAuditRequest(), auditor).ok
    # 2. A removed row.
    row = ahub.cql.execute(
        f"SELECT * FROM {ks}.audit_log WHERE chain = %s AND bucket = 0 AND seq = %s", (chain, victim)
    ).one()
    ahub.cql.execute(f"DELETE FROM {ks}.audit_log WHERE chain = %s AND bucket = 0 AND seq = %s", (chain, victim))
    bad = call(stub.VerifyAudit, audit_pb2.VerifyAuditRequest(), auditor)
    assert not bad.ok and any("missing" in p for c in bad.chains for p in c.problems)
    # 3. An inserted row (a forged entry squeezed in, later ones renumbered is impossible
    # without rewriting every hash): put a forged entry in the gap.
    ahub.cql.execute(
        f"INSERT INTO {ks}.audit_log (chain, bucket, seq, time, actor, role, action, details_json, "
        "result_count, outcome, prev_hash, entry_hash) VALUES (%s, 0, %s, %s, 'forger', 'admin', 'user.add', "
        "'{}', 0, 'ok', %s, 'f00')",
        (chain, victim, row.time, row.prev_hash),
    )
    bad = call(stub.VerifyAudit, audit_pb2.VerifyAuditRequest(), auditor)
    assert not bad.ok
    # 4. The newest entries cut off.
    head = ahub.cql.execute(f"SELECT head_seq FROM {ks}.audit_chains WHERE chain = %s", (chain,)).one().head_seq
    ahub.cql.execute(f"DELETE FROM {ks}.audit_log WHERE chain = %s AND bucket = 0 AND seq = %s", (chain, head))
    bad = call(stub.VerifyAudit, audit_pb2.VerifyAuditRequest(), auditor)
    assert any("missing at the end" in p for c in bad.chains for p in c.problems), bad
    assert alpr_cli([*cli, "verify"]) == 1


def test_alpr_hub_add_user_bootstraps_an_admin(
    ahub: AuthHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from hub.cli import main as alpr_hub

    cfg = tmp_path / "hub.yaml"
    cfg.write_text(yaml.safe_dump(ahub.config.model_dump(mode="json")))
    assert alpr_hub(["add-user", "--config", str(cfg), "--user", "chief", "--role", "admin"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    me = call(admin_pb2_grpc.AdminServiceStub(ahub.channel).WhoAmI, admin_pb2.WhoAmIRequest(), token)
    assert me.user.user_id == "chief" and me.user.role == admin_pb2.ROLE_ADMIN
    assert alpr_hub(["add-user", "--config", str(cfg), "--user", "x", "--role", "mayor"]) == 2


def test_hotlist_changes_shares_and_hub_start_are_audited(ahub: AuthHub) -> None:
    sup = ahub.token("sup-1", "supervisor")
    hl = hotlist_pb2_grpc.HotListServiceStub(ahub.channel)
    call(
        hl.AddEntry,
        hotlist_pb2.AddEntryRequest(expire_time=timestamp_in(timedelta(days=30)),
            plate="AUD1234", state="IL", category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE, reason="audit test",
            entered_by="sup-1",
        ),
        sup,
    )  # fmt: skip
    ag = agency_pb2_grpc.AgencyExchangeServiceStub(ahub.channel)
    req = agency_pb2.AuthorizeShareRequest(
        agency_id="nowhere-pd", scope=agency_pb2.SHARE_SCOPE_ALERTS, requested_by="sup-1"
    )
    code, _ = rpc_code(lambda: call(ag.AuthorizeShare, req, sup))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    entries = call(
        audit_pb2_grpc.AuditServiceStub(ahub.channel).ListAudit,
        audit_pb2.ListAuditRequest(limit=1000),
        ahub.token("aud-2", "auditor"),
    ).entries
    by_action = {e.action: e for e in entries}
    assert by_action["hotlist.change"].actor == "sup-1" and "AUD1234" not in by_action["hotlist.change"].actor
    assert by_action["share.authorize"].outcome == "refused" and by_action["share.authorize"].role == "supervisor"
    assert by_action["hub.start"].actor == "hub:test-hub" and "config_sha256" in by_action["hub.start"].details_json


def test_sworn_members_add_plates_with_a_reason_and_an_expiry(ahub: AuthHub) -> None:
    """Policy §2, 4.5: any sworn member may hot-list a plate by hand; the entry says why and
    until when, and is entered under the signed-in officer."""
    officer = ahub.token("ofc-manual", "officer")
    dispatcher = ahub.token("dsp-manual", "dispatcher")
    hl = hotlist_pb2_grpc.HotListServiceStub(ahub.channel)

    def add(token: str, days: float | None, reason: str = "seen at a burglary on Main St") -> hotlist_pb2.HotListEntry:
        req = hotlist_pb2.AddEntryRequest(plate="MAN4455", state="IL", reason=reason,
                                          category=hotlist_pb2.HOT_LIST_CATEGORY_WANTED_PERSON)  # fmt: skip
        if days is not None:
            req.expire_time.CopyFrom(timestamp_in(timedelta(days=days)))
        return call(hl.AddEntry, req, token).entry

    entry = add(officer, 3)
    assert entry.entered_by == "ofc-manual" and entry.source == hotlist_pb2.HOT_LIST_SOURCE_MANUAL
    assert entry.reason == "seen at a burglary on Main St" and entry.HasField("expire_time")
    code, msg = rpc_code(lambda: add(officer, None))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "expire_time is required" in msg and "4.5" in msg
    code, msg = rpc_code(lambda: add(officer, 3, reason=" "))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "reason" in msg
    code, msg = rpc_code(lambda: add(officer, 400))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "manual_max_expiry_days" in msg
    code, _ = rpc_code(lambda: add(dispatcher, 3))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    # removing someone's entry stays with supervisors
    remove = hotlist_pb2.RemoveEntryRequest(entry_id=entry.entry_id, reason="vehicle found")
    code, _ = rpc_code(lambda: call(hl.RemoveEntry, remove, officer))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    call(hl.RemoveEntry, remove, ahub.token("sup-manual", "supervisor"))
