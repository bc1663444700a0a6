"""Agency exchange on the hub (policy 3.4-3.6, 4.6D, 4.7) and the bridge's dead letters.

``AgencyExchangeServicer``: registered agencies (name, state, endpoint, expected mTLS
identity), out-of-state approvals, the sharing rules (``AuthorizeShare``: in-state
registered law-enforcement agencies may receive; out-of-state ones only with an active
approval by the Deputy Chief of Investigations or a designee; anything else refused) with
every decision audited in ``agency_share_audit``; and the receiving side
(``ReceiveSharedAlert``): relays from other agencies stored once per idempotency key,
marked with their origin agency.

``BridgeAdminServicer``: the dispatch bridge's dead letters (list, retry), read from the
bridge tables in this hub's keyspace.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta

import grpc
from alpr.v1 import agency_pb2, agency_pb2_grpc
from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from cassandra.util import uuid_from_time

from alpr_common.cassandra import CassandraConfig, CassandraStore, Row, insert_cql
from alpr_common.timestamps import from_timestamp, to_timestamp, utc
from hub.audit import AuditLog
from hub.config import HubConfig
from hub.metrics import AgencyMetrics
from hub.principal import Context, principal_from

log = logging.getLogger(__name__)

_AGENCY_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,63}$")
_STATE = re.compile(r"^[A-Z]{2}$")
_ENDPOINT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
DEFAULT_BRIDGE_ID = "bridge"


def _days(now: datetime, hours: int) -> list[date]:
    start = (now - timedelta(hours=hours)).date()
    out, d = [], now.date()
    while d >= start:
        out.append(d)
        d -= timedelta(days=1)
    return out


def _scope_name(s: int) -> str:
    return agency_pb2.ShareScope.Name(agency_pb2.ShareScope.ValueType(s)).removeprefix("SHARE_SCOPE_").lower()


class AgencyStore(CassandraStore):
    """Agencies, approvals, the share audit, received relays, and the bridge's dead letters."""

    def __init__(self, *, session: Session, cassandra: CassandraConfig) -> None:
        super().__init__(session=session, cassandra=cassandra)
        ks = self.keyspace
        w, r = self.writer, self.reader
        agency = ("agency_id", "record", "registered_at")
        self.ins_agency = w(insert_cql(f"{ks}.agencies", agency))
        self.ins_agency_new = w(insert_cql(f"{ks}.agencies", agency, if_not_exists=True))
        self.get_agency = r(f"SELECT record FROM {ks}.agencies WHERE agency_id = :agency_id")
        self.all_agencies = r(f"SELECT record FROM {ks}.agencies")
        self.ins_approval = w(
            insert_cql(f"{ks}.agency_approvals", ("agency_id", "approval_id", "expires_at", "record"))
        )
        self.approvals = r(f"SELECT record, expires_at FROM {ks}.agency_approvals WHERE agency_id = :agency_id")
        self.ins_audit = w(
            insert_cql(f"{ks}.agency_share_audit", ("day", "audit_id", "agency_id", "allowed", "record"))
        )
        self.audit_day = r(f"SELECT record FROM {ks}.agency_share_audit WHERE day = :day")
        serial = ConsistencyLevel.LOCAL_SERIAL if cassandra.local_dc else ConsistencyLevel.SERIAL
        self.ins_shared = w(
            insert_cql(
                f"{ks}.shared_alerts_in",
                ("idempotency_key", "origin_agency_id", "received_at", "record"),
                if_not_exists=True,
            ),
            serial_consistency=serial,
        )
        self.ins_shared_day = w(
            insert_cql(f"{ks}.shared_alerts_by_day", ("day", "received_at", "idempotency_key", "origin_agency_id"))
        )
        self.shared_day = r(f"SELECT idempotency_key, origin_agency_id FROM {ks}.shared_alerts_by_day WHERE day = :day")
        self.get_shared = r(f"SELECT record FROM {ks}.shared_alerts_in WHERE idempotency_key = :idempotency_key")
        self.dead_day = r(
            f"SELECT failed_at, sink, relay_key, kind, attempts, last_error FROM {ks}.bridge_dead_letters "
            "WHERE bridge_id = :bridge_id AND day = :day"
        )
        self.del_dead = w(
            f"DELETE FROM {ks}.bridge_dead_letters WHERE bridge_id = :bridge_id AND day = :day "
            "AND failed_at = :failed_at AND sink = :sink AND relay_key = :relay_key"
        )
        self.ins_outbox = w(
            f"INSERT INTO {ks}.bridge_outbox (bridge_id, sink, relay_key, created_at, attempts, last_error) "
            "VALUES (:bridge_id, :sink, :relay_key, :created_at, 0, :last_error)"
        )
        self.del_delivery = w(
            f"DELETE FROM {ks}.bridge_deliveries WHERE bridge_id = :bridge_id AND relay_key = :relay_key "
            "AND sink = :sink"
        )


class AgencyExchangeServicer(agency_pb2_grpc.AgencyExchangeServiceServicer):
    """Registered agencies, approvals, sharing rules with audit, received relays."""

    def __init__(self, *, store: AgencyStore, config: HubConfig, metrics: AgencyMetrics, audit: AuditLog) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.audit = audit

    # --- registry -------------------------------------------------------------------

    async def _agency(self, agency_id: str) -> agency_pb2.Agency | None:
        rows = await self.store.run(self.store.get_agency, {"agency_id": agency_id})
        return agency_pb2.Agency.FromString(rows[0].record) if rows else None

    async def _approvals(self, agency_id: str, now: datetime) -> list[agency_pb2.AgencyApproval]:
        rows = await self.store.run(self.store.approvals, {"agency_id": agency_id})
        return [agency_pb2.AgencyApproval.FromString(r.record) for r in rows if utc(r.expires_at) > now]

    async def RegisterAgency(
        self, request: agency_pb2.RegisterAgencyRequest, context: Context
    ) -> agency_pb2.RegisterAgencyResponse:
        a = agency_pb2.Agency()
        a.CopyFrom(request.agency)
        a.agency_id = a.agency_id.strip().lower()
        a.state = a.state.strip().upper()
        a.name = a.name.strip()
        a.endpoint = a.endpoint.strip()
        problem = None
        if not _AGENCY_ID.match(a.agency_id):
            problem = "agency.agency_id must be 2-64 characters: lower-case letters, digits, '.', '_' or '-'"
        elif not a.name:
            problem = "agency.name is required"
        elif not _STATE.match(a.state):
            problem = "agency.state must be a two-letter state code, e.g. IL"
        elif not _ENDPOINT.match(a.endpoint):
            problem = "agency.endpoint must be HOST:PORT of the agency's hub"
        elif not a.registered_by.strip():
            problem = "agency.registered_by is required: who registers the agency"
        elif a.agency_id == self.config.agencies.agency_id:
            problem = f"{a.agency_id} is this hub's own agency"
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        now = datetime.now(UTC)
        a.registered_time.CopyFrom(to_timestamp(now))
        del a.approvals[:]
        blob = a.SerializeToString()
        if request.replace:
            await self.store.run(
                self.store.ins_agency, {"agency_id": a.agency_id, "record": blob, "registered_at": now}
            )
        else:
            rows = await self.store.run(
                self.store.ins_agency_new, {"agency_id": a.agency_id, "record": blob, "registered_at": now}
            )
            if not rows[0][0]:
                await context.abort(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"agency {a.agency_id} is already registered; use replace (--replace) to update it",
                )
        log.info("agency %s (%s, %s) registered by %s", a.agency_id, a.name, a.state, a.registered_by)
        # Configuration changes are audited (policy 3.2).
        details = {"agency_id": a.agency_id, "state": a.state}
        await self.audit.record_call("agency.register", a.registered_by, details=details)
        return agency_pb2.RegisterAgencyResponse(agency=a)

    async def ListAgencies(
        self, request: agency_pb2.ListAgenciesRequest, context: Context
    ) -> agency_pb2.ListAgenciesResponse:
        now = datetime.now(UTC)
        rows = await self.store.run(self.store.all_agencies)
        out = sorted((agency_pb2.Agency.FromString(r.record) for r in rows), key=lambda x: x.agency_id)
        approvals = await asyncio.gather(*(self._approvals(a.agency_id, now) for a in out))
        for a, ap in zip(out, approvals, strict=True):
            a.approvals.extend(ap)
        return agency_pb2.ListAgenciesResponse(agencies=out)

    async def ApproveAgency(
        self, request: agency_pb2.ApproveAgencyRequest, context: Context
    ) -> agency_pb2.ApproveAgencyResponse:
        now = datetime.now(UTC)
        agency_id = request.agency_id.strip().lower()
        problem = None
        if not request.approver_id.strip():
            problem = "approver_id is required: who approves (policy 4.7)"
        elif request.approver_role == agency_pb2.APPROVER_ROLE_UNSPECIFIED:
            problem = (
                "approver_role is required: policy 4.7 needs the Deputy Chief of Investigations "
                "(APPROVER_ROLE_DEPUTY_CHIEF_OF_INVESTIGATIONS) or a designee (APPROVER_ROLE_DESIGNEE)"
            )
        elif request.approver_role not in agency_pb2.ApproverRole.values():
            problem = f"approver_role {request.approver_role} is unknown"
        elif request.approver_role == agency_pb2.APPROVER_ROLE_DESIGNEE and not request.designated_by.strip():
            problem = "designated_by is required for a designee: who designated the approver"
        elif not request.scopes or any(s == 0 or s not in agency_pb2.ShareScope.values() for s in request.scopes):
            problem = "scopes is required: one or more of SHARE_SCOPE_ALERTS, SHARE_SCOPE_READS"
        elif not request.HasField("expires_time"):
            problem = "expires_time is required: approvals are time-limited"
        else:
            exp = from_timestamp(request.expires_time)
            if exp <= now:
                problem = "expires_time is in the past"
            elif exp > now + timedelta(days=self.config.agencies.max_approval_days):
                problem = f"expires_time is more than {self.config.agencies.max_approval_days} days ahead"
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        agency = await self._agency(agency_id)
        if agency is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"agency {agency_id!r} is not registered; register it first (alpr agencies add)",
            )
        assert agency is not None
        if agency.state == self.config.agencies.home_state:
            log.info("approval for in-state agency %s recorded (not needed for sharing)", agency_id)
        aid = uuid_from_time(time.time())
        ap = agency_pb2.AgencyApproval(
            approval_id=str(aid),
            agency_id=agency_id,
            approver_id=request.approver_id.strip(),
            approver_role=request.approver_role,
            designated_by=request.designated_by.strip(),
            scopes=sorted(set(request.scopes)),
            approved_time=to_timestamp(now),
            expires_time=request.expires_time,
            note=request.note.strip(),
        )
        await self.store.run(
            self.store.ins_approval,
            {"agency_id": agency_id, "approval_id": aid, "expires_at": from_timestamp(request.expires_time),
             "record": ap.SerializeToString()},
        )  # fmt: skip
        # Configuration changes are audited (policy 3.2).
        details = {"agency_id": agency_id, "approval_id": ap.approval_id}
        await self.audit.record_call("agency.approve", ap.approver_id, details=details)
        return agency_pb2.ApproveAgencyResponse(approval=ap)

    # --- sharing rules ------------------------------------------------------------------

    async def _audit(
        self, req: agency_pb2.AuthorizeShareRequest, allowed: bool, detail: str, approval_id: str = ""
    ) -> str:
        now = datetime.now(UTC)
        aid = uuid_from_time(now.timestamp())
        e = agency_pb2.ShareAuditEntry(
            audit_id=str(aid),
            time=to_timestamp(now),
            agency_id=req.agency_id,
            scope=req.scope,
            subject=req.subject,
            requested_by=req.requested_by,
            allowed=allowed,
            detail=detail,
            approval_id=approval_id,
        )
        await self.store.run(
            self.store.ins_audit,
            {"day": now.date(), "audit_id": aid, "agency_id": req.agency_id, "allowed": allowed,
             "record": e.SerializeToString()},
        )  # fmt: skip
        self.metrics.share_decisions.labels("allowed" if allowed else "refused").inc()
        # Every share decision is in the hash-chained audit log (policy 3.2, 3.5).
        details = {"agency_id": req.agency_id, "scope": req.scope, "subject": req.subject, "detail": detail}
        outcome = "allowed" if allowed else "refused"
        await self.audit.record_call("share.authorize", req.requested_by, details=details, outcome=outcome)
        return str(aid)

    async def AuthorizeShare(
        self, request: agency_pb2.AuthorizeShareRequest, context: Context
    ) -> agency_pb2.AuthorizeShareResponse:
        home = self.config.agencies.home_state
        now = datetime.now(UTC)
        agency = await self._agency(request.agency_id.strip().lower())

        async def refuse(code: grpc.StatusCode, detail: str) -> None:
            await self._audit(request, False, detail)
            log.warning("share refused: %s", detail)
            await context.abort(code, detail)

        if agency is None:
            await refuse(
                grpc.StatusCode.PERMISSION_DENIED,
                f"agency {request.agency_id!r} is not registered: data may only go to registered "
                "law-enforcement agencies (policy 3.5); register it with `alpr agencies add`",
            )
        assert agency is not None
        if not agency.law_enforcement:
            await refuse(
                grpc.StatusCode.PERMISSION_DENIED,
                f"agency {agency.agency_id} is not registered as a law-enforcement agency: no data may be "
                "disseminated to it (policy 3.4-3.5)",
            )
        if agency.state == home:
            audit = await self._audit(request, True, f"in-state ({home}) law-enforcement agency (policy 4.7)")
            return agency_pb2.AuthorizeShareResponse(agency=agency, audit_id=audit)
        approvals = await self._approvals(agency.agency_id, now)
        agency.approvals.extend(approvals)
        fit = [a for a in approvals if request.scope in a.scopes]
        if not fit:
            expired_hint = ""
            rows = await self.store.run(self.store.approvals, {"agency_id": agency.agency_id})
            if rows and not approvals:
                expired_hint = " (its earlier approval has expired)"
            elif approvals:
                expired_hint = f" (its approval does not cover the {_scope_name(request.scope)} scope)"
            await refuse(
                grpc.StatusCode.PERMISSION_DENIED,
                f"agency {agency.agency_id} is out of state ({agency.state}): sharing needs an active approval "
                f"by the Deputy Chief of Investigations or designee for scope {_scope_name(request.scope)} "
                f"(policy 4.7){expired_hint}; record one with `alpr agencies approve {agency.agency_id} ...`",
            )
        best = max(fit, key=lambda a: from_timestamp(a.expires_time))
        audit = await self._audit(
            request,
            True,
            f"out-of-state ({agency.state}) agency, approved by {best.approver_id} until "
            f"{from_timestamp(best.expires_time).isoformat()} (policy 4.7)",
            best.approval_id,
        )
        return agency_pb2.AuthorizeShareResponse(agency=agency, approval_id=best.approval_id, audit_id=audit)

    async def ListShareAudit(
        self, request: agency_pb2.ListShareAuditRequest, context: Context
    ) -> agency_pb2.ListShareAuditResponse:
        hours = request.hours or 24
        now = datetime.now(UTC)
        since = now - timedelta(hours=hours)
        out: list[agency_pb2.ShareAuditEntry] = []
        for day in _days(now, hours):
            for r in await self.store.run(self.store.audit_day, {"day": day}):
                e = agency_pb2.ShareAuditEntry.FromString(r.record)
                if from_timestamp(e.time) < since or (request.agency_id and e.agency_id != request.agency_id):
                    continue
                out.append(e)
        return agency_pb2.ListShareAuditResponse(entries=out)

    # --- receiving side -----------------------------------------------------------------

    async def ReceiveSharedAlert(
        self, request: agency_pb2.ReceiveSharedAlertRequest, context: Context
    ) -> agency_pb2.ReceiveSharedAlertResponse:
        r = request.relay
        problem = None
        if not r.idempotency_key or len(r.idempotency_key) > 200:
            problem = "relay.idempotency_key is required (at most 200 characters)"
        elif not r.origin_agency_id:
            problem = "relay.origin_agency_id is required: which agency sends"
        elif not r.plate:
            problem = "relay.plate is required"
        elif r.reason == agency_pb2.RELAY_REASON_UNSPECIFIED:
            problem = "relay.reason is required"
        elif len(r.crop_jpeg) > 512 * 1024:
            problem = "relay.crop_jpeg is larger than 512 KiB; send a crop_url instead"
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        now = datetime.now(UTC)
        peer = ""
        auth = context.auth_context() or {}
        for key in ("x509_subject_alternative_name", "x509_common_name"):
            if auth.get(key):
                peer = b",".join(auth[key]).decode(errors="replace")
                break
        if principal_from() is not None:  # access control on: only the sending agency's own identity
            await self._check_sender(r.origin_agency_id, auth, context)
        shared = agency_pb2.SharedAlert(relay=r, received_time=to_timestamp(now), peer_identity=peer)
        rows = await self.store.run(
            self.store.ins_shared,
            {"idempotency_key": r.idempotency_key, "origin_agency_id": r.origin_agency_id, "received_at": now,
             "record": shared.SerializeToString()},
        )  # fmt: skip
        if not rows[0][0]:
            self.metrics.shared_received.labels("duplicate").inc()
            prev = agency_pb2.SharedAlert.FromString(rows[0].record) if getattr(rows[0], "record", None) else None
            return agency_pb2.ReceiveSharedAlertResponse(
                duplicate=True, received_time=prev.received_time if prev else to_timestamp(now)
            )
        await self.store.run(
            self.store.ins_shared_day,
            {"day": now.date(), "received_at": now, "idempotency_key": r.idempotency_key,
             "origin_agency_id": r.origin_agency_id},
        )  # fmt: skip
        self.metrics.shared_received.labels("stored").inc()
        log.info("shared alert %s from %s stored", r.idempotency_key, r.origin_agency_id)
        return agency_pb2.ReceiveSharedAlertResponse(duplicate=False, received_time=to_timestamp(now))

    async def _check_sender(self, agency_id: str, auth: Mapping[str, Iterable[bytes]], context: Context) -> None:
        """Refuse (PERMISSION_DENIED, audited) unless the peer's certificate is the TLS identity
        registered for ``agency_id``: no one may store an alert claiming another agency."""
        names = {v.decode(errors="replace") for k in ("x509_common_name", "x509_subject_alternative_name")
                 for v in auth.get(k) or ()}  # fmt: skip
        agency = await self._agency(agency_id)
        if agency is None:
            problem = f"agency {agency_id!r} is not registered here: alpr agencies register (policy 3.4)"
        elif not agency.tls_identity:
            problem = f"agency {agency_id!r} has no registered TLS identity: shared alerts from it are refused"
        elif agency.tls_identity not in names:
            problem = (
                f"the client certificate ({', '.join(sorted(names)) or 'none'}) is not agency {agency_id!r}'s "
                f"registered TLS identity {agency.tls_identity!r}"
            )
        else:
            return
        self.metrics.shared_received.labels("refused").inc()
        await self.audit.record_call(
            "shared.receive", details={"origin_agency_id": agency_id, "reason": problem}, outcome="refused"
        )
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, problem)

    async def ListSharedAlerts(
        self, request: agency_pb2.ListSharedAlertsRequest, context: Context
    ) -> agency_pb2.ListSharedAlertsResponse:
        hours = request.hours or 24
        now = datetime.now(UTC)
        keys: list[str] = []
        for day in _days(now, hours):
            for r in await self.store.run(self.store.shared_day, {"day": day}):
                if request.origin_agency_id and r.origin_agency_id != request.origin_agency_id:
                    continue
                keys.append(r.idempotency_key)
        rows = await asyncio.gather(*(self.store.run(self.store.get_shared, {"idempotency_key": k}) for k in keys))
        since = now - timedelta(hours=hours)
        out = [agency_pb2.SharedAlert.FromString(r[0].record) for r in rows if r]
        out = [s for s in out if from_timestamp(s.received_time) >= since]
        return agency_pb2.ListSharedAlertsResponse(alerts=out)


class BridgeAdminServicer(agency_pb2_grpc.BridgeAdminServiceServicer):
    """Dead letters of the dispatch bridge (its tables live in this hub's keyspace)."""

    def __init__(self, *, store: AgencyStore) -> None:
        self.store = store

    async def _dead(self, bridge_id: str, hours: int) -> list[tuple[date, Row]]:
        now = datetime.now(UTC)
        since = now - timedelta(hours=hours)
        out = []
        for day in _days(now, hours):
            for r in await self.store.run(self.store.dead_day, {"bridge_id": bridge_id, "day": day}):
                if utc(r.failed_at) >= since:
                    out.append((day, r))
        return out

    async def _hours(self, hours: int, context: Context) -> int:
        return hours or 24  # the request rules keep it within 0-1440

    async def ListDeadLetters(
        self, request: agency_pb2.ListDeadLettersRequest, context: Context
    ) -> agency_pb2.ListDeadLettersResponse:
        hours = await self._hours(request.hours, context)
        bridge_id = request.bridge_id or DEFAULT_BRIDGE_ID
        out = [
            agency_pb2.DeadLetter(
                bridge_id=bridge_id,
                sink=r.sink,
                key=r.relay_key,
                kind=r.kind or "",
                failed_time=to_timestamp(utc(r.failed_at)),
                attempts=r.attempts or 0,
                last_error=r.last_error or "",
            )
            for _day, r in await self._dead(bridge_id, hours)
        ]
        return agency_pb2.ListDeadLettersResponse(dead_letters=out)

    async def RetryDeadLetters(
        self, request: agency_pb2.RetryDeadLettersRequest, context: Context
    ) -> agency_pb2.RetryDeadLettersResponse:
        hours = await self._hours(request.hours, context)
        bridge_id = request.bridge_id or DEFAULT_BRIDGE_ID
        keys = set(request.keys)
        n = 0
        now = datetime.now(UTC)
        for day, r in await self._dead(bridge_id, hours):
            if keys and r.relay_key not in keys:
                continue
            if request.sink and r.sink != request.sink:
                continue
            # Back in the outbox first, then forget the outcome and the dead letter.
            entry = {"bridge_id": bridge_id, "sink": r.sink, "relay_key": r.relay_key}
            await self.store.run(
                self.store.ins_outbox, {**entry, "created_at": now, "last_error": "requeued by operator"}
            )
            await self.store.run(self.store.del_delivery, entry)
            await self.store.run(self.store.del_dead, {**entry, "day": day, "failed_at": r.failed_at})
            n += 1
        if keys and n == 0:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no dead letter with those keys in the last {hours} h")
        return agency_pb2.RetryDeadLettersResponse(requeued=n)
