"""Wires issue 7 into the hub: auth interceptor, audit log, admin/audit/search/evidence
services, TLS (mutual, node identity = certificate CN) and the oldest-read-age metric.

``create_server`` calls :meth:`Access.create` before building the gRPC server (the
interceptor must exist first), then :meth:`Access.register` and :meth:`Access.bind`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from alpr.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    evidence_pb2,
    evidence_pb2_grpc,
    reads_pb2,
    search_pb2,
    search_pb2_grpc,
)
from prometheus_client import CollectorRegistry, Gauge

from alpr_common.timestamps import utc
from alpr_common.tls import server_credentials
from hub.audit import AuditLog, AuditServicer
from hub.auth import AdminServicer, Authenticator, AuthInterceptor, UserStore, peer_certificate
from hub.config import HubConfig
from hub.evidence import EvidenceServicer
from hub.search import SearchServicer

log = logging.getLogger(__name__)

ACCESS_SERVICE_NAMES = (
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
    search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name,
    evidence_pb2.DESCRIPTOR.services_by_name["EvidenceService"].full_name,
)
OLDEST_READ_INTERVAL_S = 60.0


NODE_RECHECK_S = 5.0  # how stale a stream's view of the node registry may get (revocation, cameras)


@dataclass
class NodeGate:
    """What one authenticated node stream may submit: its own node id and registered cameras.

    The registry is read again every :data:`NODE_RECHECK_S` while the stream is open, so a
    node revoked mid-stream is refused within seconds, not at its next reconnect.
    """

    node_id: str
    cameras: frozenset[str]
    registered: bool
    users: UserStore | None = None
    checked_at: float = 0.0
    revoked: str | None = None  # the reason, once revoked

    async def refresh(self, now: float | None = None) -> None:
        """Re-read this node's registration when the last look is older than NODE_RECHECK_S."""
        now = time.monotonic() if now is None else now
        if self.users is None or now - self.checked_at < NODE_RECHECK_S:
            return
        self.checked_at = now
        reg = await self.users.get_node(self.node_id)
        self.registered = reg is not None
        self.cameras = frozenset(reg.camera_ids or ()) if reg else frozenset()
        if reg is not None and reg.revoked:
            self.revoked = reg.reason or "no reason given"

    def read_problem(self, read: reads_pb2.PlateRead) -> tuple[str, str] | None:
        """(field, message) when the read is not this node's to submit."""
        if self.revoked is not None:
            return "node_id", f"node {self.node_id!r} has been revoked ({self.revoked}): reads are refused"
        if read.node_id != self.node_id:
            return "node_id", (
                f"node_id {read.node_id!r} is not this node: the client certificate is for {self.node_id!r}"
            )
        if not self.registered:
            return "node_id", f"node {self.node_id!r} is not registered: alpr nodes register {self.node_id} --camera ID"
        if read.camera_id not in self.cameras:
            return "camera_id", f"camera {read.camera_id!r} is not registered to node {self.node_id!r}"
        return None


class NodeIdentity:
    """Checks, per Ingest stream, that the peer is a known, unrevoked node (mutual TLS)."""

    def __init__(self, users: UserStore) -> None:
        self.users = users

    async def open_stream(self, context: Any) -> NodeGate:
        cert = peer_certificate(context)
        if cert is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "no client certificate: nodes must connect with mutual TLS"
            )
            raise AssertionError("unreachable")
        cn, _ou = cert
        reg = await self.users.get_node(cn)
        if reg is not None and reg.revoked:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"node {cn!r} has been revoked ({reg.reason or 'no reason given'}): streams are refused",
            )
        cameras = frozenset(reg.camera_ids or ()) if reg else frozenset()
        return NodeGate(cn, cameras, reg is not None, self.users, time.monotonic())


@dataclass
class Access:
    config: HubConfig
    session: Any
    users: UserStore
    audit: AuditLog
    oldest_read_age: Gauge
    interceptors: list[Any] = field(default_factory=list)  # grpc.aio.ServerInterceptor
    identity: NodeIdentity | None = None
    _task: asyncio.Task[None] | None = None

    @classmethod
    def create(cls, session: Any, config: HubConfig, registry: CollectorRegistry) -> Access:
        ks = config.cassandra.keyspace
        from cassandra import ConsistencyLevel

        audit = AuditLog(
            session, ks, config.auth.audit_chain or config.hub_id,
            getattr(ConsistencyLevel, config.cassandra.write_consistency),
        )  # fmt: skip
        users = UserStore(session, ks)
        gauge = Gauge(
            "alpr_hub_oldest_read_age_seconds",
            "Age of the oldest read still stored (policy 5.4-5.5: stays under the 60-day retention)",
            registry=registry,
        )
        acc = cls(config, session, users, audit, gauge)
        if config.auth.enabled:
            acc.interceptors.append(AuthInterceptor(Authenticator(users, audit)))
        if config.tls.enabled and config.tls.ca_file and config.tls.enforce_node_identity:
            acc.identity = NodeIdentity(users)
        return acc

    def register(self, server: grpc.aio.Server) -> None:
        admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(self.users, self.audit), server)
        audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(self.audit), server)
        search_pb2_grpc.add_SearchServiceServicer_to_server(
            SearchServicer(self.session, self.config, self.audit), server
        )
        evidence_pb2_grpc.add_EvidenceServiceServicer_to_server(
            EvidenceServicer(self.session, self.config, self.audit), server
        )

    def bind(self, server: grpc.aio.Server, address: str) -> int:
        tls = self.config.tls
        if tls.enabled:
            creds = server_credentials(tls.cert_file, tls.key_file, tls.ca_file, tls.require_client_cert)
            return server.add_secure_port(address, creds)
        return server.add_insecure_port(address)

    async def refresh_oldest_read_age(self) -> float | None:
        """Find the oldest stored read (via the camera-hour partitions) and set the gauge."""
        ks = self.config.cassandra.keyspace
        loop = asyncio.get_running_loop()

        def scan() -> datetime | None:
            keys = list(self.session.execute(f"SELECT DISTINCT camera_id, hour FROM {ks}.reads_by_camera"))
            oldest: datetime | None = None
            # Partitions whose rows all expired may still be listed: check the oldest few.
            for k in sorted(keys, key=lambda k: k.hour)[:50]:
                row = self.session.execute(
                    f"SELECT capture_time FROM {ks}.reads_by_camera WHERE camera_id = %s AND hour = %s "
                    "ORDER BY capture_time ASC LIMIT 1",
                    (k.camera_id, k.hour),
                ).one()
                if row is not None:
                    t = utc(row.capture_time)
                    oldest = t if oldest is None or t < oldest else oldest
                    break
            return oldest

        oldest = await loop.run_in_executor(None, scan)
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        self.oldest_read_age.set(age)
        return age if oldest else None

    async def record_start(self) -> None:
        """Audit the hub's start with a digest of its effective configuration (config changes show up)."""
        cfg = self.config.model_dump(mode="json")
        digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()
        details = {
            "config_sha256": digest,
            "auth_enabled": self.config.auth.enabled,
            "tls_enabled": self.config.tls.enabled,
            "read_ttl_seconds": self.config.retention.read_ttl_seconds,
        }
        await self.audit.record(f"hub:{self.config.hub_id}", "hub.start", details=details)

    def start(self) -> None:
        async def loop() -> None:
            try:
                await self.record_start()
            except Exception as exc:
                log.error("audit of the hub start failed: %r", exc)
            while True:
                try:
                    await self.refresh_oldest_read_age()
                except Exception as exc:
                    log.warning("oldest-read scan failed: %r", exc)
                await asyncio.sleep(OLDEST_READ_INTERVAL_S)

        self._task = asyncio.create_task(loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
