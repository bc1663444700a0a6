"""Password sign-in (policy §3) for people who cannot paste a token: set by an admin, stored as
an scrypt hash, exchanged for a session token that expires, limited per user id and audited."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator

import grpc
import pytest
from alpr.v1 import admin_pb2, admin_pb2_grpc, audit_pb2, audit_pb2_grpc
from cassandra.cluster import Session

from alpr_common.operator import users as users_cli
from alpr_common.operator_cli import main as alpr_cli
from hub.passwords import hash_password, password_problem, verify_password
from tests.access_support import AuthHub, call, rpc_code

PASSWORD = "correct horse 42"
ATTEMPTS = 3


@pytest.fixture(scope="module")
def ahub(cassandra: tuple[list[str], int], cql: Session) -> Iterator[AuthHub]:
    h = AuthHub(
        cassandra, cql,
        auth={"enabled": True, "signin_failures_allowed": ATTEMPTS, "signin_failure_window_s": 60,
              "password_session_max_s": 3600},
    )  # fmt: skip
    yield h
    h.stop()


def admin_stub(ahub: AuthHub) -> admin_pb2_grpc.AdminServiceStub:
    return admin_pb2_grpc.AdminServiceStub(ahub.channel)


def sign_in(ahub: AuthHub, user: str, password: str, session_s: int = 0) -> admin_pb2.SignInResponse:
    req = admin_pb2.SignInRequest(user_id=user, password=password, session_s=session_s)
    resp: admin_pb2.SignInResponse = call(admin_stub(ahub).SignIn, req)
    return resp


def set_password(ahub: AuthHub, user: str, password: str = PASSWORD) -> admin_pb2.SetPasswordResponse:
    req = admin_pb2.SetPasswordRequest(user_id=user, password=password)
    resp: admin_pb2.SetPasswordResponse = call(admin_stub(ahub).SetPassword, req, ahub.admin)
    return resp


def audit_actions(ahub: AuthHub, actor: str) -> list[tuple[str, str, str]]:
    auditor = ahub.token("aud-pw", "auditor")
    stub = audit_pb2_grpc.AuditServiceStub(ahub.channel)
    entries = call(stub.ListAudit, audit_pb2.ListAuditRequest(limit=1000), auditor).entries
    return [(e.action, e.outcome, e.details_json) for e in entries if e.actor == actor]


def test_hashes_are_salted_scrypt_and_the_rules_say_why() -> None:
    a, b = hash_password(PASSWORD), hash_password(PASSWORD)
    assert a != b and a.startswith("scrypt$16384$8$1$") and PASSWORD not in a
    assert verify_password(PASSWORD, a) and not verify_password(PASSWORD + "x", a)
    assert not verify_password(PASSWORD, None) and not verify_password(PASSWORD, "md5$x")
    assert "at least 10" in password_problem("short", "ofc")
    assert "user id" in password_problem("xx-ofc-7-yyyy", "ofc-7")
    assert "different characters" in password_problem("aaaaaaaaaaaa", "ofc")
    assert password_problem(PASSWORD, "ofc-7") == ""
    pw = users_cli.new_password()
    assert len(pw) == 14 and password_problem(pw, "ofc-7") == ""


def test_an_admin_sets_a_password_and_the_user_signs_in_for_a_session(ahub: AuthHub) -> None:
    ahub.token("ofc-pw", "officer")
    user = set_password(ahub, "ofc-pw").user
    assert user.has_password and user.password_set_by == "root"
    stored = ahub.cql.execute(f"SELECT password_hash FROM {ahub.keyspace}.users WHERE user_id = 'ofc-pw'").one()
    assert stored.password_hash.startswith("scrypt$") and PASSWORD not in stored.password_hash

    got = sign_in(ahub, "ofc-pw", PASSWORD, session_s=600)
    assert got.user.user_id == "ofc-pw" and got.user.role == admin_pb2.ROLE_OFFICER
    assert 590 <= got.expire_time.seconds - time.time() <= 600
    assert call(admin_stub(ahub).WhoAmI, admin_pb2.WhoAmIRequest(), got.token).user.user_id == "ofc-pw"
    # More than the hub allows gives the hub's maximum.
    long = sign_in(ahub, "ofc-pw", PASSWORD, session_s=10**6)
    assert long.expire_time.seconds - time.time() <= 3600

    # Sign-out ends that session only.
    call(admin_stub(ahub).EndSession, admin_pb2.EndSessionRequest(), got.token)
    code, msg = rpc_code(lambda: call(admin_stub(ahub).WhoAmI, admin_pb2.WhoAmIRequest(), got.token))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "unknown access token" in msg
    assert call(admin_stub(ahub).WhoAmI, admin_pb2.WhoAmIRequest(), long.token).user.user_id == "ofc-pw"
    # A token made by AddUser is not ended this way.
    code, msg = rpc_code(lambda: call(admin_stub(ahub).EndSession, admin_pb2.EndSessionRequest(), ahub.admin))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "alpr users revoke" in msg

    actions = audit_actions(ahub, "ofc-pw")
    assert ("auth.signin", "ok", '{"session_s":600}') in actions and ("auth.signout", "ok", "{}") in actions
    assert any(a == "user.password_set" for a, _, _ in audit_actions(ahub, "root"))


def test_a_new_password_or_a_revoked_user_ends_the_sessions(ahub: AuthHub) -> None:
    ahub.token("ofc-chg", "officer")
    set_password(ahub, "ofc-chg")
    before = sign_in(ahub, "ofc-chg", PASSWORD).token
    time.sleep(0.01)
    set_password(ahub, "ofc-chg", "another good one 7")
    code, msg = rpc_code(lambda: call(admin_stub(ahub).WhoAmI, admin_pb2.WhoAmIRequest(), before))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "password of 'ofc-chg' was changed" in msg
    after = sign_in(ahub, "ofc-chg", "another good one 7").token
    call(admin_stub(ahub).RevokeUser, admin_pb2.RevokeUserRequest(user_id="ofc-chg", reason="left"), ahub.admin)
    code, msg = rpc_code(lambda: call(admin_stub(ahub).WhoAmI, admin_pb2.WhoAmIRequest(), after))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "revoked" in msg
    code, msg = rpc_code(lambda: sign_in(ahub, "ofc-chg", "another good one 7"))
    assert code == grpc.StatusCode.UNAUTHENTICATED and msg.startswith("wrong user id or password")
    # Re-added, the user starts without a password.
    ahub.token("ofc-chg", "officer")
    code, _ = rpc_code(lambda: sign_in(ahub, "ofc-chg", "another good one 7"))
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_an_expired_session_is_refused(ahub: AuthHub) -> None:
    ahub.token("ofc-exp", "officer")
    set_password(ahub, "ofc-exp")
    got = sign_in(ahub, "ofc-exp", PASSWORD, session_s=1)
    time.sleep(1.2)
    code, msg = rpc_code(lambda: call(admin_stub(ahub).WhoAmI, admin_pb2.WhoAmIRequest(), got.token))
    # Either the hub's clock check or Cassandra's TTL (the row is gone) refuses it.
    assert code == grpc.StatusCode.UNAUTHENTICATED and ("has expired" in msg or "unknown access token" in msg)


def test_failures_are_limited_per_user_and_audited_without_saying_which_part_was_wrong(ahub: AuthHub) -> None:
    ahub.token("ofc-lim", "officer")
    set_password(ahub, "ofc-lim")
    unknown = rpc_code(lambda: sign_in(ahub, "nobody-here", PASSWORD))
    wrong = rpc_code(lambda: sign_in(ahub, "ofc-lim", "not the password"))
    assert unknown[0] == wrong[0] == grpc.StatusCode.UNAUTHENTICATED
    assert unknown[1].split(" (")[0] == wrong[1].split(" (")[0] == "wrong user id or password"
    for _ in range(ATTEMPTS - 1):
        rpc_code(lambda: sign_in(ahub, "ofc-lim", "not the password"))
    # Now even the right password is refused for the rest of the window.
    code, msg = rpc_code(lambda: sign_in(ahub, "ofc-lim", PASSWORD))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "too many failed sign-ins for 'ofc-lim'" in msg
    # Other users are not affected.
    ahub.token("ofc-other", "officer")
    set_password(ahub, "ofc-other")
    assert sign_in(ahub, "ofc-other", PASSWORD).token
    actions = audit_actions(ahub, "ofc-lim")
    assert [o for a, o, _ in actions if a == "auth.signin"] == ["denied"] * ATTEMPTS + ["limited"]
    assert '"wrong password"' in actions[0][2]
    assert '"no such user"' in audit_actions(ahub, "nobody-here")[0][2]


def test_only_admins_set_passwords_and_the_hub_says_what_is_wrong(ahub: AuthHub) -> None:
    officer = ahub.token("ofc-rule", "officer")
    req = admin_pb2.SetPasswordRequest(user_id="ofc-rule", password=PASSWORD)
    code, msg = rpc_code(lambda: call(admin_stub(ahub).SetPassword, req, officer))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "SetPassword" in msg
    code, msg = rpc_code(lambda: set_password(ahub, "ofc-rule", "short"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "at least 10 characters" in msg
    code, msg = rpc_code(lambda: set_password(ahub, "no-such-user"))
    assert code == grpc.StatusCode.NOT_FOUND and "alpr users add" in msg
    code, msg = rpc_code(lambda: call(admin_stub(ahub).SignIn, admin_pb2.SignInRequest(user_id="ofc-rule")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "password" in msg


def test_cli_set_password_generated_from_stdin_and_cleared(
    ahub: AuthHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ahub.token("ofc-cli", "officer")
    base = ["--hub", ahub.thread.target, "--token", ahub.admin]
    assert alpr_cli([*base, "--json", "users", "set-password", "ofc-cli", "--generate"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["user"]["has_password"] is True
    assert sign_in(ahub, "ofc-cli", out["password"]).user.user_id == "ofc-cli"

    monkeypatch.setattr("sys.stdin", io.StringIO("typed on stdin 99\n"))
    assert alpr_cli([*base, "users", "set-password", "ofc-cli"]) == 0
    assert "password set" in capsys.readouterr().out
    assert sign_in(ahub, "ofc-cli", "typed on stdin 99").token

    assert alpr_cli([*base, "users", "list"]) == 0
    assert any(
        line.startswith("ofc-cli") and line.endswith("password") for line in capsys.readouterr().out.splitlines()
    )
    assert alpr_cli([*base, "users", "set-password", "ofc-cli", "--clear"]) == 0
    code, _ = rpc_code(lambda: sign_in(ahub, "ofc-cli", "typed on stdin 99"))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert alpr_cli([*base, "users", "set-password", "ofc-cli"]) != 0
    assert "at least 10 characters" in capsys.readouterr().err
