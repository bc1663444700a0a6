"""Access control (policy §3): users, roles, hashed tokens, and one table of who may call what.

Every RPC of every service is listed in :data:`METHOD_ROLES`; with ``auth.enabled`` the
:class:`AuthInterceptor` refuses any method that is not in it (deny by default), except
health checking and reflection (:data:`PUBLIC_METHODS`, which return no read data).

Callers are people with a token (``authorization: Bearer <token>``; the hub stores only its
SHA-256: made by ``AddUser``, or by a password sign-in, ``SignIn``, for a session that expires
and ends when the password changes) or machines with a client certificate (mutual TLS): edge nodes (certificate OU
``node``, CN = node id) and services (OU ``service``). A certificate identifies a machine,
not a person: people's data (alerts, reads, plates) needs a user's token. A service
certificate gets a named service role only when ``auth.services`` lists its CN (the bridge:
:data:`~hub.principal.BRIDGE`, the least methods it needs); any other gets ``service``,
which reads nothing. Missing, unknown or revoked credentials → UNAUTHENTICATED; a role the
method does not allow → PERMISSION_DENIED. Both say why.

The principal is the identity: fields that name who acts (the officer deciding an alert,
who enters, removes or imports hot-list entries, who approves an agency, who asks for a
share) are set from the principal (:data:`IDENTITY_FIELDS`): left empty they are filled in,
naming anyone else is refused (PERMISSION_DENIED, audited); a node subscribes to the hot list
only as its certificate's registered node id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, NoReturn

import grpc
from alpr.v1 import admin_pb2, admin_pb2_grpc

from alpr_common.cassandra import Row
from alpr_common.timestamps import now_utc, to_timestamp, utc
from hub.audit import AuditLog
from hub.config import AuthConfig
from hub.handlers import Handler, guarded
from hub.passwords import hash_password, password_problem, verify_password
from hub.principal import (
    ADMIN,
    AUDITOR,
    BRIDGE,
    DISPATCHER,
    FLEET_OPERATOR,
    HUB,
    INVESTIGATOR,
    NODE,
    OFFICER,
    ROLES,
    SERVICE,
    SERVICE_ROLES,
    SUPERVISOR,
    Context,
    Principal,
    current_principal,
    peer_certificate,
)
from hub.users import UserStore, hash_token, node_proto, user_proto

log = logging.getLogger(__name__)

HUMANS = frozenset(ROLES)
OPERATIONAL = frozenset({OFFICER, DISPATCHER, SUPERVISOR, INVESTIGATOR})

# Method → roles allowed. Deny by default: a method missing here is refused once auth is on.
METHOD_ROLES: dict[str, frozenset[str]] = {
    # Edge nodes
    "/alpr.v1.IngestService/Ingest": frozenset({NODE}),
    "/alpr.v1.HotListService/Subscribe": frozenset({NODE}),
    "/alpr.v1.HotListService/GetVersion": frozenset({NODE, *HUMANS}),
    # Manual entries an officer made at the unit, handed over by the node (policy 4.5)
    "/alpr.v1.HotListService/SubmitLocalEntries": frozenset({NODE}),
    # Hot lists: any sworn member may add a plate by hand, with a reason and an expiry (policy
    # §2, 4.5); removals and imports are for supervisors and admins; operations read them.
    "/alpr.v1.HotListService/AddEntry": frozenset({OFFICER, INVESTIGATOR, SUPERVISOR, ADMIN}),
    "/alpr.v1.HotListService/RemoveEntry": frozenset({SUPERVISOR, ADMIN}),
    "/alpr.v1.HotListService/ImportList": frozenset({SUPERVISOR, ADMIN}),
    "/alpr.v1.HotListService/GetEntry": OPERATIONAL | {ADMIN},
    "/alpr.v1.HotListService/ListEntries": OPERATIONAL | {ADMIN},
    # Alerts (policy 4.2-4.6): people's data; of the machines, only the bridge (it relays them)
    "/alpr.v1.AlertService/Watch": OPERATIONAL | {BRIDGE},
    "/alpr.v1.AlertService/ListAlerts": OPERATIONAL | {BRIDGE, AUDITOR},
    "/alpr.v1.AlertService/GetAlert": OPERATIONAL | {BRIDGE, AUDITOR},
    "/alpr.v1.AlertService/DecideAlert": frozenset({OFFICER, SUPERVISOR}),
    # Hub replicas push the alert events they wrote to each other (the feed stays the durable path)
    "/alpr.v1.AlertReplicaService/PushEvents": frozenset({HUB}),
    # Agency exchange (policy 3.4-3.6, 4.7)
    "/alpr.v1.AgencyExchangeService/RegisterAgency": frozenset({SUPERVISOR, ADMIN}),
    "/alpr.v1.AgencyExchangeService/ListAgencies": frozenset({DISPATCHER, SUPERVISOR, ADMIN, AUDITOR}),
    "/alpr.v1.AgencyExchangeService/ApproveAgency": frozenset({SUPERVISOR, ADMIN}),
    "/alpr.v1.AgencyExchangeService/AuthorizeShare": frozenset({BRIDGE, SUPERVISOR}),
    "/alpr.v1.AgencyExchangeService/ListShareAudit": frozenset({SUPERVISOR, ADMIN, AUDITOR}),
    # Another agency's service certificate; the servicer accepts it only from the TLS identity
    # registered for the sending agency.
    "/alpr.v1.AgencyExchangeService/ReceiveSharedAlert": frozenset({SERVICE}),
    "/alpr.v1.AgencyExchangeService/ListSharedAlerts": frozenset({OFFICER, DISPATCHER, SUPERVISOR, INVESTIGATOR}),
    "/alpr.v1.BridgeAdminService/ListDeadLetters": frozenset({SUPERVISOR, ADMIN}),
    "/alpr.v1.BridgeAdminService/RetryDeadLetters": frozenset({SUPERVISOR, ADMIN}),
    "/alpr.v1.DispatchReceiverService/Deliver": frozenset({BRIDGE}),
    # Search and evidence (policy §1, 3.1, 5.4-5.5)
    # Dispatchers run the LEADS/dispatch check on a plate (policy 4.2B); purpose and case still required
    "/alpr.v1.SearchService/Search": frozenset({OFFICER, DISPATCHER, SUPERVISOR, INVESTIGATOR}),
    "/alpr.v1.EvidenceService/ExportEvidence": frozenset({INVESTIGATOR, SUPERVISOR}),
    "/alpr.v1.EvidenceService/GetEvidence": frozenset({INVESTIGATOR, SUPERVISOR, AUDITOR}),
    # Audit log
    "/alpr.v1.AuditService/ListAudit": frozenset({AUDITOR, ADMIN}),
    "/alpr.v1.AuditService/VerifyAudit": frozenset({AUDITOR, ADMIN}),
    # Users, tokens, nodes
    "/alpr.v1.AdminService/AddUser": frozenset({ADMIN}),
    "/alpr.v1.AdminService/RevokeUser": frozenset({ADMIN}),
    "/alpr.v1.AdminService/ListUsers": frozenset({ADMIN, AUDITOR}),
    "/alpr.v1.AdminService/WhoAmI": HUMANS | {NODE, SERVICE, *SERVICE_ROLES},
    "/alpr.v1.AdminService/RegisterNode": frozenset({ADMIN}),
    "/alpr.v1.AdminService/RevokeNode": frozenset({ADMIN}),
    "/alpr.v1.AdminService/ListNodes": frozenset({ADMIN, AUDITOR}),
    "/alpr.v1.AdminService/SetPassword": frozenset({ADMIN}),
    "/alpr.v1.AdminService/EndSession": HUMANS,
    # Node health (policy 4.1, 4.8): fleet operators, supervisors, admins, the bridge's tickets
    "/alpr.v1.FleetService/ListNodes": frozenset({FLEET_OPERATOR, SUPERVISOR, ADMIN, BRIDGE}),
    # A sworn member reports a damaged unit (policy 4.8); fleet operators withdraw it when fixed
    "/alpr.v1.FleetService/ReportDamage": frozenset({OFFICER, SUPERVISOR, INVESTIGATOR, FLEET_OPERATOR, ADMIN}),
    # Fleet configuration: changed by fleet operators and admins (audited), read by supervisors
    # and auditors too; nodes subscribe to their own.
    "/alpr.v1.FleetConfigService/SetOverlay": frozenset({FLEET_OPERATOR, ADMIN}),
    "/alpr.v1.FleetConfigService/GetConfig": frozenset({FLEET_OPERATOR, SUPERVISOR, ADMIN, AUDITOR}),
    "/alpr.v1.FleetConfigService/ListHistory": frozenset({FLEET_OPERATOR, SUPERVISOR, ADMIN, AUDITOR}),
    "/alpr.v1.FleetConfigService/Subscribe": frozenset({NODE}),
    # Model releases: uploaded and rolled out by fleet operators and admins (audited), watched by
    # supervisors and auditors too; units fetch the releases they are told to run.
    "/alpr.v1.ModelReleaseService/Upload": frozenset({FLEET_OPERATOR, ADMIN}),
    "/alpr.v1.ModelReleaseService/Rollout": frozenset({FLEET_OPERATOR, ADMIN}),
    "/alpr.v1.ModelReleaseService/PauseRollout": frozenset({FLEET_OPERATOR, ADMIN}),
    "/alpr.v1.ModelReleaseService/Rollback": frozenset({FLEET_OPERATOR, ADMIN}),
    "/alpr.v1.ModelReleaseService/ListReleases": frozenset({FLEET_OPERATOR, SUPERVISOR, ADMIN, AUDITOR}),
    "/alpr.v1.ModelReleaseService/GetRolloutStatus": frozenset({FLEET_OPERATOR, SUPERVISOR, ADMIN, AUDITOR}),
    "/alpr.v1.ModelReleaseService/GetRelease": frozenset({NODE, FLEET_OPERATOR, ADMIN}),
    "/alpr.v1.ModelReleaseService/Download": frozenset({NODE, FLEET_OPERATOR, ADMIN}),
}

# Request fields that name who acts, by method: (path to the field, in the request or in a
# streamed message). With auth on they hold the principal's id: empty is filled in, another name refused.
IDENTITY_FIELDS: dict[str, tuple[str, ...]] = {
    "/alpr.v1.AlertService/DecideAlert": ("officer_id",),
    "/alpr.v1.HotListService/AddEntry": ("entered_by",),
    "/alpr.v1.HotListService/RemoveEntry": ("removed_by",),
    "/alpr.v1.HotListService/ImportList": ("header", "imported_by"),
    "/alpr.v1.AgencyExchangeService/RegisterAgency": ("agency", "registered_by"),
    "/alpr.v1.AgencyExchangeService/ApproveAgency": ("approver_id",),
    "/alpr.v1.AgencyExchangeService/AuthorizeShare": ("requested_by",),
    "/alpr.v1.FleetConfigService/SetOverlay": ("changed_by",),
    "/alpr.v1.FleetService/ReportDamage": ("reported_by",),
    "/alpr.v1.ModelReleaseService/Upload": ("header", "uploaded_by"),
    "/alpr.v1.ModelReleaseService/Rollout": ("changed_by",),
    "/alpr.v1.ModelReleaseService/PauseRollout": ("changed_by",),
    "/alpr.v1.ModelReleaseService/Rollback": ("changed_by",),
}
# A node calling these must be registered, and may name only itself (certificate CN).
NODE_ID_FIELDS: dict[str, tuple[str, ...]] = {
    "/alpr.v1.HotListService/Subscribe": ("start", "node_id"),
    "/alpr.v1.HotListService/SubmitLocalEntries": ("node_id",),
    "/alpr.v1.FleetConfigService/Subscribe": ("start", "node_id"),
}

# No credentials needed: they return no read data. SignIn is how a person without a token
# gets one (a password; failures limited and audited by the servicer).
PUBLIC_METHODS = frozenset(
    {
        "/alpr.v1.AdminService/SignIn",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.health.v1.Health/List",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)


def _token_from(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            v = value.decode() if isinstance(value, bytes) else str(value)
            return v[7:].strip() if v.lower().startswith("bearer ") else v.strip()
    return None


class Authenticator:
    """Turns a call's credentials into a :class:`Principal` or an abort with a reason."""

    def __init__(self, *, users: UserStore, audit: AuditLog | None, services: dict[str, str] | None = None) -> None:
        self.users = users
        self.audit = audit
        self.services = dict(services or {})  # service certificate CN → service role
        self._seen_tokens: set[str] = set()  # token hashes already audited as a login here

    async def _deny(self, context: Context, code: grpc.StatusCode, message: str, actor: str, method: str) -> NoReturn:
        if self.audit is not None:
            try:
                action = "auth.failed" if code == grpc.StatusCode.UNAUTHENTICATED else "access.denied"
                await self.audit.record(actor, action, details={"method": method, "reason": message}, outcome="denied")
            except Exception as exc:  # never let an audit outage hide the refusal
                log.warning("audit of a refused call failed: %r", exc)
        await context.abort(code, message)

    async def check(self, method: str, context: Context) -> Principal:
        token = _token_from(context.invocation_metadata())
        principal: Principal | None = None
        if token:
            found = await self.users.user_for_token(token)
            if found is None:
                await self._deny(
                    context, grpc.StatusCode.UNAUTHENTICATED,
                    "unknown access token: ask an admin for a token (alpr users add)", "?", method,
                )  # fmt: skip
            trow, user = found
            if user is None or user.revoked or (user.created_time and trow.created_time < user.created_time):
                await self._deny(
                    context, grpc.StatusCode.UNAUTHENTICATED,
                    f"access token of user {trow.user_id!r} has been revoked", trow.user_id, method,
                )  # fmt: skip
            if trow.expire_time is not None:  # a password sign-in's session
                why = session_ended(trow, user)
                if why:
                    await self._deny(context, grpc.StatusCode.UNAUTHENTICATED, why, trow.user_id, method)
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
                if ou == SERVICE:
                    principal = Principal(SERVICE, cn, self.services.get(cn, SERVICE))
                else:
                    principal = Principal(NODE, cn, NODE)
                    if method in NODE_ID_FIELDS and reg is None:
                        await self._deny(
                            context, grpc.StatusCode.PERMISSION_DENIED,
                            f"node {cn!r} is not registered: alpr nodes register {cn} --camera ID", principal.actor,
                            method,
                        )  # fmt: skip
        if principal is None:
            await self._deny(
                context, grpc.StatusCode.UNAUTHENTICATED,
                "no credentials: send 'authorization: Bearer <token>' (alpr --token / ALPR_TOKEN) "
                "or connect with a client certificate", "?", method,
            )  # fmt: skip
        allowed = METHOD_ROLES.get(method)
        if allowed is None:
            await self._deny(
                context, grpc.StatusCode.PERMISSION_DENIED,
                f"{method} is not in the hub's access table: denied by default", principal.actor, method,
            )  # fmt: skip
        elif principal.role not in allowed:
            hint = ""
            if principal.kind != "user" and allowed & HUMANS:
                hint = " (a certificate identifies a machine, not a person: send a user's token, alpr --token)"
            await self._deny(
                context, grpc.StatusCode.PERMISSION_DENIED,
                f"role {principal.role!r} ({principal.actor}) may not call {method}; "
                f"allowed: {', '.join(sorted(allowed))}{hint}", principal.actor, method,
            )  # fmt: skip
        return principal

    async def stamp(self, method: str, message: Any, principal: Principal, context: Context) -> None:
        """Put the principal's identity into ``message`` (:data:`IDENTITY_FIELDS`), and refuse a
        node naming another node (:data:`NODE_ID_FIELDS`)."""
        path = IDENTITY_FIELDS.get(method)
        where = _field(message, path) if path else None
        if where is not None:
            holder, name = where
            typed = getattr(holder, name).strip()
            if typed and typed != principal.id:
                await self._deny(
                    context, grpc.StatusCode.PERMISSION_DENIED,
                    f"{'.'.join(path or ())} {typed[:64]!r} is not the signed-in {principal.actor}: who acts is "
                    f"taken from the credentials; leave {name} empty (or give {principal.id!r})", principal.actor,
                    method,
                )  # fmt: skip
            setattr(holder, name, principal.id)
        path = NODE_ID_FIELDS.get(method)
        where = _field(message, path) if path else None
        if where is not None and principal.kind == NODE:
            holder, name = where
            if getattr(holder, name).strip() != principal.id:
                await self._deny(
                    context, grpc.StatusCode.PERMISSION_DENIED,
                    f"{'.'.join(path or ())} {getattr(holder, name)!r} is not this node: the client certificate is "
                    f"for {principal.id!r}", principal.actor, method,
                )  # fmt: skip


Stamp = Callable[[Any, Principal, Context], Awaitable[None]]


def session_ended(trow: Row, user: Row) -> str:
    """Why a password sign-in's session token no longer works, or "" while it does."""
    if utc(trow.expire_time) <= now_utc():
        return f"the sign-in session of {trow.user_id!r} has expired: sign in again"
    set_time = getattr(user, "password_set_time", None)
    if set_time is not None and utc(set_time) > utc(trow.created_time):
        return f"the password of {trow.user_id!r} was changed after this sign-in: sign in again"
    return ""


def _field(message: Any, path: tuple[str, ...]) -> tuple[Any, str] | None:
    """(the message holding the field, its name) along ``path``, or None when a part is unset."""
    for name in path[:-1]:
        if not message.HasField(name):
            return None
        message = getattr(message, name)
    return message, path[-1]


def _wrap(handler: Handler, check: Callable[[Context], Awaitable[Principal]], stamp: Stamp | None) -> Handler:
    """The same handler, with ``check`` run first, the principal set for the servicer, and
    every request message passed through ``stamp`` (identity fields) before the servicer sees it."""

    async def stamped(
        requests: AsyncIterator[Any], apply: Stamp, principal: Principal, context: Context
    ) -> AsyncIterator[Any]:
        async for message in requests:
            await apply(message, principal, context)
            yield message

    async def admit(request: Any, context: Context, streamed: bool) -> Any:
        principal = await check(context)
        current_principal.set(principal)
        if stamp is None:  # most methods: requests pass untouched (no per-message cost on Ingest)
            return request
        if streamed:
            return stamped(request, stamp, principal, context)
        await stamp(request, principal, context)
        return request

    return guarded(handler, admit)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Applies :data:`METHOD_ROLES` to every call (health and reflection stay open)."""

    def __init__(self, *, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method in PUBLIC_METHODS:
            return handler

        async def check(context: Context) -> Principal:
            return await self.authenticator.check(method, context)

        async def stamp(message: Any, principal: Principal, context: Context) -> None:
            await self.authenticator.stamp(method, message, principal, context)

        if method not in IDENTITY_FIELDS and method not in NODE_ID_FIELDS:
            return _wrap(handler, check, None)
        return _wrap(handler, check, stamp)


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """Users, tokens and the node registry; every change is audited."""

    def __init__(self, *, users: UserStore, audit: AuditLog, auth: AuthConfig | None = None) -> None:
        self.users = users
        self.audit = audit
        self.auth = auth or AuthConfig()

    async def _actor(self) -> tuple[str, str]:
        p = current_principal.get()
        return (p.actor, p.role) if p else ("anonymous", "")

    async def AddUser(self, request: admin_pb2.AddUserRequest, context: Context) -> admin_pb2.AddUserResponse:
        role = admin_pb2.Role.Name(request.role).removeprefix("ROLE_").lower()
        if role not in ROLES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"role is required: one of {', '.join(ROLES)}")
        actor, arole = await self._actor()
        token = await self.users.add_user(request.user_id.strip(), role, request.display_name, actor)
        await self.audit.record(actor, "user.add", role=arole, details={"user_id": request.user_id, "role": role})
        user = await self.users.get_user(request.user_id.strip())
        return admin_pb2.AddUserResponse(user=user_proto(user), token=token)

    async def RevokeUser(self, request: admin_pb2.RevokeUserRequest, context: Context) -> admin_pb2.RevokeUserResponse:
        if await self.users.get_user(request.user_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no user {request.user_id!r}")
        actor, arole = await self._actor()
        user = await self.users.revoke_user(request.user_id, actor)
        await self.audit.record(
            actor, "user.revoke", role=arole, details={"user_id": request.user_id, "reason": request.reason}
        )
        return admin_pb2.RevokeUserResponse(user=user_proto(user))

    async def ListUsers(self, request: admin_pb2.ListUsersRequest, context: Context) -> admin_pb2.ListUsersResponse:
        return admin_pb2.ListUsersResponse(users=[user_proto(u) for u in await self.users.list_users()])

    async def WhoAmI(self, request: admin_pb2.WhoAmIRequest, context: Context) -> admin_pb2.WhoAmIResponse:
        p = current_principal.get()
        if p is None:
            return admin_pb2.WhoAmIResponse(user=admin_pb2.User(user_id="anonymous (auth disabled)"))
        if p.kind == "user":
            return admin_pb2.WhoAmIResponse(user=user_proto(await self.users.get_user(p.id)))
        return admin_pb2.WhoAmIResponse(user=admin_pb2.User(user_id=p.actor, display_name=p.kind))

    async def RegisterNode(
        self, request: admin_pb2.RegisterNodeRequest, context: Context
    ) -> admin_pb2.RegisterNodeResponse:
        actor, arole = await self._actor()
        row = await self.users.register_node(request.node_id, list(request.camera_ids), actor)
        await self.audit.record(
            actor, "node.register", role=arole,
            details={"node_id": request.node_id, "camera_ids": sorted(request.camera_ids)},
        )  # fmt: skip
        return admin_pb2.RegisterNodeResponse(node=node_proto(row))

    async def RevokeNode(self, request: admin_pb2.RevokeNodeRequest, context: Context) -> admin_pb2.RevokeNodeResponse:
        actor, arole = await self._actor()
        row = await self.users.revoke_node(request.node_id, actor, request.reason)
        await self.audit.record(
            actor, "node.revoke", role=arole, details={"node_id": request.node_id, "reason": request.reason}
        )
        return admin_pb2.RevokeNodeResponse(node=node_proto(row))

    async def ListNodes(self, request: admin_pb2.ListNodesRequest, context: Context) -> admin_pb2.ListNodesResponse:
        return admin_pb2.ListNodesResponse(nodes=[node_proto(n) for n in await self.users.list_nodes()])

    async def SetPassword(
        self, request: admin_pb2.SetPasswordRequest, context: Context
    ) -> admin_pb2.SetPasswordResponse:
        uid = request.user_id.strip()
        user = await self.users.get_user(uid)
        if user is None or user.revoked:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no {'active ' if user is not None else ''}user {uid!r}: add the user first (alpr users add)",
            )
        if request.clear == bool(request.password):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "give a password, or clear (to remove the user's password): not both"
            )
        if not request.clear:
            bad = password_problem(request.password, uid)
            if bad:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, bad)
        hashed = None if request.clear else await asyncio.get_running_loop().run_in_executor(
            None, hash_password, request.password
        )  # fmt: skip
        actor, arole = await self._actor()
        row = await self.users.set_password(uid, hashed, actor)
        await self.audit.record(
            actor, "user.password_clear" if request.clear else "user.password_set", role=arole, details={"user_id": uid}
        )
        return admin_pb2.SetPasswordResponse(user=user_proto(row))

    async def SignIn(self, request: admin_pb2.SignInRequest, context: Context) -> admin_pb2.SignInResponse:
        uid, cfg = request.user_id.strip(), self.auth
        window_min = max(1, round(cfg.signin_failure_window_s / 60))
        failed = await self.users.failed_signins(uid, cfg.signin_failure_window_s, cfg.signin_failures_allowed)
        if failed >= cfg.signin_failures_allowed:
            await self.audit.record(uid, "auth.signin", details={"reason": "too many failures"}, outcome="limited")
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many failed sign-ins for {uid!r} in the last {window_min} min: wait, or ask an admin "
                "(alpr users set-password)",
            )
        user = await self.users.get_user(uid)
        stored = user.password_hash if user is not None and not user.revoked else None
        ok = await asyncio.get_running_loop().run_in_executor(None, verify_password, request.password, stored)
        if not ok or user is None:
            why = ("no such user" if user is None else "user revoked" if user.revoked
                   else "no password set" if not stored else "wrong password")  # fmt: skip
            await self.users.record_failed_signin(uid, cfg.signin_failure_window_s)
            await self.audit.record(uid, "auth.signin", details={"reason": why}, outcome="denied")
            left = cfg.signin_failures_allowed - failed - 1
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "wrong user id or password"
                + (f" ({left} more failed attempt(s) and sign-in is refused for {window_min} min)" if left < 3 else ""),
            )
        limit = cfg.password_session_max_s
        ttl = min(request.session_s, limit) if request.session_s else limit
        token, expire = await self.users.add_session_token(uid, ttl)
        await self.audit.record(uid, "auth.signin", role=user.role, details={"session_s": ttl})
        return admin_pb2.SignInResponse(token=token, expire_time=to_timestamp(expire), user=user_proto(user))

    async def EndSession(self, request: admin_pb2.EndSessionRequest, context: Context) -> admin_pb2.EndSessionResponse:
        token = _token_from(context.invocation_metadata())
        found = await self.users.user_for_token(token) if token else None
        if token is None or found is None or found[0].expire_time is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "only a password sign-in's session is ended this way; a token from alpr users add is "
                "revoked with alpr users revoke",
            )
        await self.users.end_token(token)
        actor, arole = await self._actor()
        await self.audit.record(actor, "auth.signout", role=arole)
        return admin_pb2.EndSessionResponse()
