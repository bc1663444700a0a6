"""Access control (policy §3): users, roles, hashed tokens, and one table of who may call what.

Every RPC of every service is listed in :data:`METHOD_ROLES`; with ``auth.enabled`` the
:class:`AuthInterceptor` refuses any method that is not in it (deny by default), except
health checking and reflection (:data:`PUBLIC_METHODS`, which return no read data).

Callers are people with a token (``authorization: Bearer <token>``; the hub stores only its
SHA-256) or machines with a client certificate (mutual TLS): edge nodes (certificate OU
``node``, CN = node id) and services such as the dispatch bridge (OU ``service``). Missing,
unknown or revoked credentials → UNAUTHENTICATED; a role the method does not allow →
PERMISSION_DENIED. Both say why.
"""

from __future__ import annotations

import contextvars
import hashlib
import inspect
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from alpr.v1 import admin_pb2, admin_pb2_grpc

from alpr_common.timestamps import to_timestamp_or_none
from hub.audit import AuditLog
from hub.storage import await_response

log = logging.getLogger(__name__)

OFFICER, DISPATCHER, SUPERVISOR, INVESTIGATOR, ADMIN, AUDITOR = (
    "officer", "dispatcher", "supervisor", "investigator", "admin", "auditor",
)  # fmt: skip
ROLES = (OFFICER, DISPATCHER, SUPERVISOR, INVESTIGATOR, ADMIN, AUDITOR)
# Machine principals, authenticated by client certificate only.
NODE, SERVICE = "node", "service"
HUMANS = frozenset(ROLES)
OPERATIONAL = frozenset({OFFICER, DISPATCHER, SUPERVISOR, INVESTIGATOR})

# Method → roles allowed. Deny by default: a method missing here is refused once auth is on.
METHOD_ROLES: dict[str, frozenset[str]] = {
    # Edge nodes
    "/alpr.v1.IngestService/Ingest": frozenset({NODE}),
    "/alpr.v1.HotListService/Subscribe": frozenset({NODE}),
    "/alpr.v1.HotListService/GetVersion": frozenset({NODE, *HUMANS}),
    # Hot lists (policy 4.5): maintained by supervisors and admins, read by operations
    "/alpr.v1.HotListService/AddEntry": frozenset({SUPERVISOR, ADMIN}),
    "/alpr.v1.HotListService/RemoveEntry": frozenset({SUPERVISOR, ADMIN}),
    "/alpr.v1.HotListService/ImportList": frozenset({SUPERVISOR, ADMIN}),
    "/alpr.v1.HotListService/GetEntry": OPERATIONAL | {ADMIN},
    "/alpr.v1.HotListService/ListEntries": OPERATIONAL | {ADMIN},
    # Alerts (policy 4.2-4.6)
    "/alpr.v1.AlertService/Watch": OPERATIONAL | {SERVICE},
    "/alpr.v1.AlertService/ListAlerts": OPERATIONAL | {SERVICE, AUDITOR},
    "/alpr.v1.AlertService/GetAlert": OPERATIONAL | {SERVICE, AUDITOR},
    "/alpr.v1.AlertService/DecideAlert": frozenset({OFFICER, SUPERVISOR}),
    # Agency exchange (policy 3.4-3.6, 4.7)
    "/alpr.v1.AgencyExchangeService/RegisterAgency": frozenset({SUPERVISOR, ADMIN}),
    "/alpr.v1.AgencyExchangeService/ListAgencies": frozenset({DISPATCHER, SUPERVISOR, ADMIN, AUDITOR, SERVICE}),
    "/alpr.v1.AgencyExchangeService/ApproveAgency": frozenset({SUPERVISOR, ADMIN}),
    "/alpr.v1.AgencyExchangeService/AuthorizeShare": frozenset({SERVICE, SUPERVISOR}),
    "/alpr.v1.AgencyExchangeService/ListShareAudit": frozenset({SUPERVISOR, ADMIN, AUDITOR}),
    "/alpr.v1.AgencyExchangeService/ReceiveSharedAlert": frozenset({SERVICE}),
    "/alpr.v1.AgencyExchangeService/ListSharedAlerts": frozenset({OFFICER, DISPATCHER, SUPERVISOR, INVESTIGATOR}),
    "/alpr.v1.BridgeAdminService/ListDeadLetters": frozenset({SUPERVISOR, ADMIN}),
    "/alpr.v1.BridgeAdminService/RetryDeadLetters": frozenset({SUPERVISOR, ADMIN}),
    "/alpr.v1.DispatchReceiverService/Deliver": frozenset({SERVICE}),
    # Search and evidence (policy §1, 3.1, 5.4-5.5)
    "/alpr.v1.SearchService/Search": frozenset({OFFICER, SUPERVISOR, INVESTIGATOR}),
    "/alpr.v1.EvidenceService/ExportEvidence": frozenset({INVESTIGATOR, SUPERVISOR}),
    "/alpr.v1.EvidenceService/GetEvidence": frozenset({INVESTIGATOR, SUPERVISOR, AUDITOR}),
    # Audit log
    "/alpr.v1.AuditService/ListAudit": frozenset({AUDITOR, ADMIN}),
    "/alpr.v1.AuditService/VerifyAudit": frozenset({AUDITOR, ADMIN}),
    # Users, tokens, nodes
    "/alpr.v1.AdminService/AddUser": frozenset({ADMIN}),
    "/alpr.v1.AdminService/RevokeUser": frozenset({ADMIN}),
    "/alpr.v1.AdminService/ListUsers": frozenset({ADMIN, AUDITOR}),
    "/alpr.v1.AdminService/WhoAmI": HUMANS | {NODE, SERVICE},
    "/alpr.v1.AdminService/RegisterNode": frozenset({ADMIN}),
    "/alpr.v1.AdminService/RevokeNode": frozenset({ADMIN}),
    "/alpr.v1.AdminService/ListNodes": frozenset({ADMIN, AUDITOR}),
}

# No credentials needed: they return no read data.
PUBLIC_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.health.v1.Health/List",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)


def _first(rows: Any) -> Any:
    """The first row of an awaited result (a list of rows), or None."""
    rows = list(rows)
    return rows[0] if rows else None


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (kind ``user``), an edge node or a service (by certificate)."""

    kind: str
    id: str
    role: str

    @property
    def actor(self) -> str:
        return self.id if self.kind == "user" else f"{self.kind}:{self.id}"


current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("alpr_principal", default=None)


def principal_from(context: Any = None) -> Principal | None:
    """The authenticated caller of the current RPC (None when auth is disabled)."""
    return current_principal.get()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A random 32-byte token, URL-safe."""
    return "alpr_" + secrets.token_urlsafe(32)


def peer_certificate(context: Any) -> tuple[str, str] | None:
    """(CN, OU) of the verified client certificate, or None (no mutual TLS)."""
    try:
        ac = context.auth_context()
    except Exception:
        return None
    cns = ac.get("x509_common_name") or []
    if not cns:
        return None
    cn = cns[0].decode() if isinstance(cns[0], bytes) else str(cns[0])
    ou = NODE
    pems = ac.get("x509_pem_cert") or []
    if pems:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        cert = x509.load_pem_x509_certificate(pems[0] if isinstance(pems[0], bytes) else pems[0].encode())
        ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        if ous:
            ou = str(ous[0].value)
    return cn, ou


class UserStore:
    """Users, token hashes and the node registry in Cassandra (prepared statements)."""

    def __init__(self, session: Any, keyspace: str) -> None:
        self.session = session
        ks = keyspace
        p = session.prepare
        self._get_user = p(f"SELECT * FROM {ks}.users WHERE user_id = ?")
        self._all_users = p(f"SELECT * FROM {ks}.users")
        self._ins_user = p(
            f"INSERT INTO {ks}.users (user_id, role, display_name, revoked, created_time, created_by) "
            "VALUES (?, ?, ?, false, ?, ?)"
        )
        self._revoke_user = p(
            f"UPDATE {ks}.users SET revoked = true, revoked_time = ?, revoked_by = ? WHERE user_id = ?"
        )
        self._get_token = p(f"SELECT user_id, created_time FROM {ks}.auth_tokens WHERE token_sha256 = ?")
        self._ins_token = p(f"INSERT INTO {ks}.auth_tokens (token_sha256, user_id, created_time) VALUES (?, ?, ?)")
        self._get_node = p(f"SELECT * FROM {ks}.node_registry WHERE node_id = ?")
        self._all_nodes = p(f"SELECT * FROM {ks}.node_registry")
        self._upsert_node = p(
            f"UPDATE {ks}.node_registry SET camera_ids = ?, revoked = false, updated_time = ?, updated_by = ?, "
            "reason = '' WHERE node_id = ?"
        )
        self._revoke_node = p(
            f"UPDATE {ks}.node_registry SET revoked = true, updated_time = ?, updated_by = ?, reason = ? "
            "WHERE node_id = ?"
        )

    async def _exec(self, stmt: Any, params: Any = None) -> Any:
        return await await_response(self.session.execute_async(stmt, params))

    # -- users and tokens ------------------------------------------------------------
    def add_user_sync(self, user_id: str, role: str, display_name: str = "", created_by: str = "") -> str:
        """Create/replace the user and return a new token (also for bootstrapping an admin)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if not user_id:
            raise ValueError("user id is empty")
        token = new_token()
        now = datetime.now(UTC)
        existing = self.session.execute(self._get_user, (user_id,)).one()
        if existing is None or existing.revoked or existing.role != role:
            self.session.execute(self._ins_user, (user_id, role, display_name, now, created_by))
            # A re-added user starts unrevoked; old tokens of a revoked user stay dead
            # because tokens are checked against the user's creation time.
        self.session.execute(self._ins_token, (hash_token(token), user_id, now))
        return token

    async def add_user(self, user_id: str, role: str, display_name: str, created_by: str) -> str:
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(
            None, self.add_user_sync, user_id, role, display_name, created_by
        )

    async def get_user(self, user_id: str) -> Any:
        return _first(await self._exec(self._get_user, (user_id,)))

    async def list_users(self) -> list[Any]:
        return sorted(await self._exec(self._all_users), key=lambda r: r.user_id)

    async def revoke_user(self, user_id: str, by: str) -> Any:
        await self._exec(self._revoke_user, (datetime.now(UTC), by, user_id))
        return await self.get_user(user_id)

    async def user_for_token(self, token: str) -> tuple[Any, Any] | None:
        """(token row, user row) for a presented token, or None if unknown."""
        trow = _first(await self._exec(self._get_token, (hash_token(token),)))
        if trow is None:
            return None
        return trow, await self.get_user(trow.user_id)

    # -- nodes ---------------------------------------------------------------------------
    async def get_node(self, node_id: str) -> Any:
        return _first(await self._exec(self._get_node, (node_id,)))

    async def list_nodes(self) -> list[Any]:
        return sorted(await self._exec(self._all_nodes), key=lambda r: r.node_id)

    async def register_node(self, node_id: str, cameras: list[str], by: str) -> Any:
        await self._exec(self._upsert_node, (set(cameras) or None, datetime.now(UTC), by, node_id))
        return await self.get_node(node_id)

    async def revoke_node(self, node_id: str, by: str, reason: str) -> Any:
        await self._exec(self._revoke_node, (datetime.now(UTC), by, reason, node_id))
        return await self.get_node(node_id)


def user_proto(r: Any) -> admin_pb2.User:
    return admin_pb2.User(
        user_id=r.user_id,
        role=admin_pb2.Role.Value("ROLE_" + (r.role or "unspecified").upper()),  # type: ignore[arg-type]
        display_name=r.display_name or "",
        revoked=bool(r.revoked),
        created_time=to_timestamp_or_none(r.created_time),
        created_by=r.created_by or "",
        revoked_time=to_timestamp_or_none(r.revoked_time),
        revoked_by=r.revoked_by or "",
    )


def node_proto(r: Any) -> admin_pb2.NodeRegistration:
    return admin_pb2.NodeRegistration(
        node_id=r.node_id,
        camera_ids=sorted(r.camera_ids or ()),
        revoked=bool(r.revoked),
        updated_time=to_timestamp_or_none(r.updated_time),
        updated_by=r.updated_by or "",
        reason=r.reason or "",
    )


def _token_from(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            v = value.decode() if isinstance(value, bytes) else str(value)
            return v[7:].strip() if v.lower().startswith("bearer ") else v.strip()
    return None


class Authenticator:
    """Turns a call's credentials into a :class:`Principal` or an abort with a reason."""

    def __init__(self, users: UserStore, audit: AuditLog | None) -> None:
        self.users = users
        self.audit = audit
        self._seen_tokens: set[str] = set()  # token hashes already audited as a login here

    async def _deny(self, context: Any, code: grpc.StatusCode, message: str, actor: str, method: str) -> None:
        if self.audit is not None:
            try:
                action = "auth.failed" if code == grpc.StatusCode.UNAUTHENTICATED else "access.denied"
                await self.audit.record(actor, action, details={"method": method, "reason": message}, outcome="denied")
            except Exception as exc:  # never let an audit outage hide the refusal
                log.warning("audit of a refused call failed: %r", exc)
        await context.abort(code, message)

    async def check(self, method: str, context: Any) -> Principal:
        token = _token_from(context.invocation_metadata())
        principal: Principal | None = None
        if token:
            found = await self.users.user_for_token(token)
            if found is None:
                await self._deny(
                    context, grpc.StatusCode.UNAUTHENTICATED,
                    "unknown access token: ask an admin for a token (alpr users add)", "?", method,
                )  # fmt: skip
                raise AssertionError("unreachable")
            trow, user = found
            if user is None or user.revoked or (user.created_time and trow.created_time < user.created_time):
                await self._deny(
                    context, grpc.StatusCode.UNAUTHENTICATED,
                    f"access token of user {trow.user_id!r} has been revoked", trow.user_id, method,
                )  # fmt: skip
            principal = Principal("user", user.user_id, user.role)
            th = hash_token(token)
            if th not in self._seen_tokens and self.audit is not None:
                self._seen_tokens.add(th)
                await self.audit.record(principal.actor, "login", role=principal.role, details={"method": method})
        else:
            cert = peer_certificate(context)
            if cert is not None:
                cn, ou = cert
                reg = await self.users.get_node(cn)
                if reg is not None and reg.revoked:
                    await self._deny(
                        context, grpc.StatusCode.UNAUTHENTICATED,
                        f"certificate of {cn!r} has been revoked ({reg.reason or 'no reason given'})", cn, method,
                    )  # fmt: skip
                principal = Principal(SERVICE if ou == SERVICE else NODE, cn, SERVICE if ou == SERVICE else NODE)
        if principal is None:
            await self._deny(
                context, grpc.StatusCode.UNAUTHENTICATED,
                "no credentials: send 'authorization: Bearer <token>' (alpr --token / ALPR_TOKEN) "
                "or connect with a client certificate", "?", method,
            )  # fmt: skip
            raise AssertionError("unreachable")
        allowed = METHOD_ROLES.get(method)
        if allowed is None:
            await self._deny(
                context, grpc.StatusCode.PERMISSION_DENIED,
                f"{method} is not in the hub's access table: denied by default", principal.actor, method,
            )  # fmt: skip
        elif principal.role not in allowed:
            await self._deny(
                context, grpc.StatusCode.PERMISSION_DENIED,
                f"role {principal.role!r} ({principal.actor}) may not call {method}; "
                f"allowed: {', '.join(sorted(allowed))}", principal.actor, method,
            )  # fmt: skip
        return principal


def _wrap(handler: Any, check: Callable[[Any], Awaitable[Principal]]) -> Any:
    """The same handler, with ``check`` run first and the principal set for the servicer."""

    def unary(behavior: Any) -> Any:
        async def run(request: Any, context: Any) -> Any:
            current_principal.set(await check(context))
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result

        return run

    def streaming(behavior: Any) -> Any:
        async def run(request: Any, context: Any) -> Any:
            current_principal.set(await check(context))
            result = behavior(request, context)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            elif inspect.isawaitable(result):
                await result

        return run

    kw = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **kw)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **kw)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), **kw)
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **kw)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Applies :data:`METHOD_ROLES` to every call (health and reflection stay open)."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method in PUBLIC_METHODS:
            return handler

        async def check(context: Any) -> Principal:
            return await self.authenticator.check(method, context)

        return _wrap(handler, check)


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """Users, tokens and the node registry; every change is audited."""

    def __init__(self, users: UserStore, audit: AuditLog) -> None:
        self.users = users
        self.audit = audit

    async def _actor(self) -> tuple[str, str]:
        p = current_principal.get()
        return (p.actor, p.role) if p else ("anonymous", "")

    async def AddUser(self, request: admin_pb2.AddUserRequest, context: Any) -> admin_pb2.AddUserResponse:
        role = admin_pb2.Role.Name(request.role).removeprefix("ROLE_").lower()
        if role not in ROLES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"role is required: one of {', '.join(ROLES)}")
        if not request.user_id.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "user_id is required")
        actor, arole = await self._actor()
        token = await self.users.add_user(request.user_id.strip(), role, request.display_name, actor)
        await self.audit.record(actor, "user.add", role=arole, details={"user_id": request.user_id, "role": role})
        user = await self.users.get_user(request.user_id.strip())
        return admin_pb2.AddUserResponse(user=user_proto(user), token=token)

    async def RevokeUser(self, request: admin_pb2.RevokeUserRequest, context: Any) -> admin_pb2.RevokeUserResponse:
        if await self.users.get_user(request.user_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no user {request.user_id!r}")
        actor, arole = await self._actor()
        user = await self.users.revoke_user(request.user_id, actor)
        await self.audit.record(
            actor, "user.revoke", role=arole, details={"user_id": request.user_id, "reason": request.reason}
        )
        return admin_pb2.RevokeUserResponse(user=user_proto(user))

    async def ListUsers(self, request: admin_pb2.ListUsersRequest, context: Any) -> admin_pb2.ListUsersResponse:
        return admin_pb2.ListUsersResponse(users=[user_proto(u) for u in await self.users.list_users()])

    async def WhoAmI(self, request: admin_pb2.WhoAmIRequest, context: Any) -> admin_pb2.WhoAmIResponse:
        p = current_principal.get()
        if p is None:
            return admin_pb2.WhoAmIResponse(user=admin_pb2.User(user_id="anonymous (auth disabled)"))
        if p.kind == "user":
            return admin_pb2.WhoAmIResponse(user=user_proto(await self.users.get_user(p.id)))
        return admin_pb2.WhoAmIResponse(user=admin_pb2.User(user_id=p.actor, display_name=p.kind))

    async def RegisterNode(
        self, request: admin_pb2.RegisterNodeRequest, context: Any
    ) -> admin_pb2.RegisterNodeResponse:
        if not request.node_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "node_id is required")
        actor, arole = await self._actor()
        row = await self.users.register_node(request.node_id, list(request.camera_ids), actor)
        await self.audit.record(
            actor, "node.register", role=arole,
            details={"node_id": request.node_id, "camera_ids": sorted(request.camera_ids)},
        )  # fmt: skip
        return admin_pb2.RegisterNodeResponse(node=node_proto(row))

    async def RevokeNode(self, request: admin_pb2.RevokeNodeRequest, context: Any) -> admin_pb2.RevokeNodeResponse:
        if not request.node_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "node_id is required")
        actor, arole = await self._actor()
        row = await self.users.revoke_node(request.node_id, actor, request.reason)
        await self.audit.record(
            actor, "node.revoke", role=arole, details={"node_id": request.node_id, "reason": request.reason}
        )
        return admin_pb2.RevokeNodeResponse(node=node_proto(row))

    async def ListNodes(self, request: admin_pb2.ListNodesRequest, context: Any) -> admin_pb2.ListNodesResponse:
        return admin_pb2.ListNodesResponse(nodes=[node_proto(n) for n in await self.users.list_nodes()])
