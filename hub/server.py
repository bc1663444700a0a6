"""Builds and runs the hub's gRPC server (``create_server``), with health and reflection.

Every part is built with what it needs (keyword-only constructors); each resource opened
during start-up is registered on an ``AsyncExitStack`` as soon as it exists, so a start-up
that fails part-way (a part's ``start()``, a taken port) closes what it opened, in reverse
order, and raises. ``Hub.stop`` drains streams first, then closes the same stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import signal
from dataclasses import dataclass, field
from typing import Protocol

import grpc
from alpr.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    agency_pb2,
    agency_pb2_grpc,
    alert_pb2,
    alert_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    evidence_pb2,
    evidence_pb2_grpc,
    fleet_config_pb2,
    fleet_config_pb2_grpc,
    fleet_models_pb2,
    fleet_models_pb2_grpc,
    fleet_pb2,
    fleet_pb2_grpc,
    hotlist_pb2,
    hotlist_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)
from cassandra.cluster import Cluster
from grpc_health.v1 import _async as health_aio  # the asyncio servicer (grpc_health.v1.health.aio)
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from alpr_common.cassandra import connect
from alpr_common.config import refuse_insecure
from alpr_common.lifecycle import cancel_task, in_thread, metrics_endpoint
from alpr_common.tls import server_credentials
from hub.agencies import AgencyExchangeServicer, AgencyStore, BridgeAdminServicer
from hub.alert_replicas import AlertReplicaServicer, PeerPusher
from hub.alerts import Alerter, AlertFeedTailer, AlertServicer, AlertStore
from hub.audit import AuditCheckpointer, AuditLog, AuditServicer, CheckpointSink, load_audit_key
from hub.auth import AdminServicer, Authenticator, AuthInterceptor
from hub.config import HubConfig
from hub.evidence import EvidenceServicer, EvidenceStore
from hub.fleet import FleetServicer, restore_heartbeat_gauge
from hub.fleet_config import FleetConfigMetrics, FleetConfigMirror, FleetConfigServicer, FleetConfigStore
from hub.hotlists.mirror import HotListMirror
from hub.hotlists.service import HotListServicer
from hub.hotlists.store import HotListStore
from hub.ingest import IngestServicer
from hub.loop_lag import LoopLagProbe
from hub.metrics import AgencyMetrics, HotListMetrics, HubMetrics
from hub.model_releases import ModelReleaseMetrics, ModelReleaseServicer, ReleaseStore, RolloutMirror
from hub.node_identity import NodeIdentity
from hub.request_rules import RequestRulesInterceptor
from hub.retention import RetentionMonitor
from hub.schema import migrate
from hub.search import ReadIndex, SearchServicer
from hub.storage import ReadStore
from hub.storage_errors import StorageErrorsInterceptor
from hub.users import UserStore

log = logging.getLogger(__name__)

SERVICE_NAMES = tuple(
    d.DESCRIPTOR.services_by_name[name].full_name
    for d, name in (
        (ingest_pb2, "IngestService"),
        (hotlist_pb2, "HotListService"),
        (alert_pb2, "AlertService"),
        (alert_pb2, "AlertReplicaService"),
        (agency_pb2, "AgencyExchangeService"),
        (agency_pb2, "BridgeAdminService"),
        (admin_pb2, "AdminService"),
        (audit_pb2, "AuditService"),
        (search_pb2, "SearchService"),
        (evidence_pb2, "EvidenceService"),
        (fleet_pb2, "FleetService"),
        (fleet_config_pb2, "FleetConfigService"),
        (fleet_models_pb2, "ModelReleaseService"),
    )
)


class Part(Protocol):
    """A background part of the hub: started once serving, stopped on shutdown."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Hub:
    """A running hub: gRPC server, Cassandra session, metrics endpoint, background parts."""

    config: HubConfig
    server: grpc.aio.Server
    port: int
    cluster: Cluster
    store: ReadStore
    ingest: IngestServicer
    health: health_aio.HealthServicer
    metrics: HubMetrics
    metrics_port: int | None
    hotlists: HotListServicer
    alerts: AlertServicer
    mirror: HotListMirror
    feed: AlertFeedTailer
    retention: RetentionMonitor
    resources: contextlib.AsyncExitStack
    fleet_config: FleetConfigServicer | None = None
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def stop(self, grace: float | None = None) -> None:
        """Ordered shutdown: refuse new streams, drain accepted reads, stop the parts, close Cassandra."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.config.shutdown_grace_s if grace is None else grace
        log.info("hub stopping: draining streams (grace %.1f s)", grace)
        await self.health.enter_graceful_shutdown()
        await self.feed.stop()  # ends Watch streams: watchers resume on another hub
        self.hotlists.closing.set()  # ends Subscribe streams: nodes resubscribe elsewhere
        if self.fleet_config is not None:
            self.fleet_config.closing.set()
        await asyncio.gather(self.server.stop(grace), self.ingest.shutdown())
        await self.resources.aclose()  # the parts, the server, the metrics endpoint, Cassandra
        log.info("hub stopped")


def _bind(server: grpc.aio.Server, config: HubConfig) -> int:
    """Bind the gRPC port (TLS, mutual with a CA, when configured); the bound port."""
    address = f"{config.listen_host}:{config.grpc_port}"
    tls = config.tls
    if tls.enabled:
        creds = server_credentials(tls.cert_file, tls.key_file, tls.ca_file, tls.require_client_cert)
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind the hub's gRPC port {address} (in use?)")
    return port


async def _record_start(audit: AuditLog, config: HubConfig) -> None:
    """Audit the hub's start with a digest of its effective configuration (config changes show up)."""
    cfg = config.model_dump(mode="json")
    details = {
        "config_sha256": hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest(),
        "auth_enabled": config.auth.enabled,
        "tls_enabled": config.tls.enabled,
        "insecure_dev": config.insecure_dev,
        "audit_keyed": audit.key is not None,
        "read_ttl_seconds": config.retention.read_ttl_seconds,
    }
    try:
        await audit.record(f"hub:{config.hub_id}", "hub.start", details=details)
    except Exception as exc:
        log.error("audit of the hub start failed: %r", exc)


def _started(stack: contextlib.AsyncExitStack, part: Part) -> None:
    part.start()
    stack.push_async_callback(part.stop)


async def create_server(config: HubConfig, registry: CollectorRegistry | None = None) -> tuple[Hub, int]:
    """Connect to Cassandra, migrate (if configured), bind the gRPC port and start serving.

    ``config.grpc_port = 0`` binds a free port; the bound port is returned. On any failure
    everything opened so far is closed again (in reverse order) before the error is raised.
    """
    refuse_insecure(
        "hub", config.security_problems(), config.insecure_dev, config.insecure_parts(),
        f"Anyone who can reach {config.listen_host}:{config.grpc_port} can read and change data.", log,
    )  # fmt: skip
    registry = registry if registry is not None else CollectorRegistry()
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        cluster, session = await loop.run_in_executor(None, connect, config.cassandra)
        stack.push_async_callback(in_thread, cluster.shutdown)
        if config.migrate_on_start:
            await loop.run_in_executor(None, migrate, session, config)
        session.set_keyspace(config.cassandra.keyspace)
        cassandra = config.cassandra

        metrics, hl_metrics = HubMetrics(registry), HotListMetrics(registry)
        reads = ReadStore(session=session, config=config)
        users = UserStore(session=session, cassandra=cassandra)
        audit_key = load_audit_key(config.auth.audit_key_file)
        checkpoints = (
            CheckpointSink(config.auth.audit_checkpoint_dir, audit_key) if config.auth.audit_checkpoint_dir else None
        )
        audit = AuditLog(
            session=session, cassandra=cassandra, chain=config.auth.audit_chain or config.hub_id, key=audit_key,
            checkpoints=checkpoints,
        )  # fmt: skip
        hl_store = HotListStore(session=session, config=config)
        mirror = HotListMirror(store=hl_store, config=config, metrics=hl_metrics)
        # Load the list before serving: no read is stored without being matched.
        await mirror.load()
        alert_store = AlertStore(session=session, config=config)

        # Outermost: a database outage during any step (token checks too) is UNAVAILABLE, said plainly.
        interceptors: list[grpc.aio.ServerInterceptor] = [StorageErrorsInterceptor()]  # type: ignore[type-arg]
        if config.auth.enabled:
            authenticator = Authenticator(users=users, audit=audit, services=dict(config.auth.services))
            interceptors.append(AuthInterceptor(authenticator=authenticator))
        # Inside authentication: the rules see the identity fields it stamps.
        interceptors.append(RequestRulesInterceptor())
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", config.ingest.max_message_bytes),
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                # HTTP/2 windows stay at their defaults (plus what one message needs) instead of growing
                # with the link's bandwidth-delay product: a stream the hub pauses (ingest back-pressure)
                # then holds ~64 KB in the transport, not megabytes.
                ("grpc.http2.bdp_probe", int(config.ingest.http2_bdp_probe)),
            ],
        )
        stack.push_async_callback(server.stop, None)

        identity = None
        if config.tls.enabled and config.tls.ca_file and config.tls.enforce_node_identity:
            identity = NodeIdentity(users=users)
        pusher = PeerPusher(config=config, metrics=hl_metrics)
        feed = AlertFeedTailer(store=alert_store, config=config, metrics=hl_metrics, pusher=pusher)
        alerter = Alerter(mirror=mirror, store=alert_store, config=config, metrics=hl_metrics, fanout=feed)
        ingest = IngestServicer(
            store=reads, config=config, metrics=metrics, alerter=alerter, identity=identity, audit=audit
        )
        hotlists = HotListServicer(store=hl_store, mirror=mirror, config=config, metrics=hl_metrics, audit=audit)
        alerts = AlertServicer(store=alert_store, tailer=feed, config=config, metrics=hl_metrics, audit=audit)
        agency_store = AgencyStore(session=session, cassandra=cassandra)
        agencies = AgencyExchangeServicer(
            store=agency_store, config=config, metrics=AgencyMetrics(registry), audit=audit
        )
        retention = RetentionMonitor(reads=reads, registry=registry)
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(ingest, server)
        hotlist_pb2_grpc.add_HotListServiceServicer_to_server(hotlists, server)
        alert_pb2_grpc.add_AlertServiceServicer_to_server(alerts, server)
        alert_pb2_grpc.add_AlertReplicaServiceServicer_to_server(AlertReplicaServicer(deliver=feed), server)
        agency_pb2_grpc.add_AgencyExchangeServiceServicer_to_server(agencies, server)
        agency_pb2_grpc.add_BridgeAdminServiceServicer_to_server(BridgeAdminServicer(store=agency_store), server)
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            AdminServicer(users=users, audit=audit, auth=config.auth), server
        )
        audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(audit=audit), server)
        search_pb2_grpc.add_SearchServiceServicer_to_server(
            SearchServicer(index=ReadIndex(session=session, cassandra=cassandra), config=config, audit=audit), server
        )
        evidence_pb2_grpc.add_EvidenceServiceServicer_to_server(
            EvidenceServicer(store=EvidenceStore(session=session, cassandra=cassandra), audit=audit), server
        )
        fc_store = FleetConfigStore(session=session, config=config)
        fc_mirror = FleetConfigMirror(
            store=fc_store, settings=config.fleet_config, metrics=FleetConfigMetrics(registry)
        )
        await fc_mirror.load()
        release_store = ReleaseStore(session=session, config=config)
        model_metrics = ModelReleaseMetrics(registry)
        rollouts = RolloutMirror(
            store=release_store, poll_interval_s=config.model_releases.poll_interval_s, metrics=model_metrics
        )
        await rollouts.load()
        models = ModelReleaseServicer(
            store=release_store, mirror=rollouts, config=config, audit=audit, metrics=model_metrics
        )
        fleet_models_pb2_grpc.add_ModelReleaseServiceServicer_to_server(models, server)
        fleet_config = FleetConfigServicer(
            mirror=fc_mirror, store=fc_store, config=config, audit=audit, metrics=fc_mirror.metrics, models=models
        )
        fleet_config_pb2_grpc.add_FleetConfigServiceServicer_to_server(fleet_config, server)
        fleet = FleetServicer(
            reads=reads, hotlist_version=lambda: mirror.version, config_version=lambda: fc_mirror.version, audit=audit
        )
        fleet_pb2_grpc.add_FleetServiceServicer_to_server(fleet, server)
        restored = await restore_heartbeat_gauge(reads, lambda n, t: metrics.node_last_heartbeat.labels(n).set(t))
        log.info("last heartbeat of %d node(s) restored from node_status", restored)
        health_servicer = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

        port = _bind(server, config)
        await server.start()
        for part in (mirror, hotlists, pusher, feed, alerts, retention, fc_mirror, LoopLagProbe(metrics.loop_lag)):
            _started(stack, part)
        if checkpoints is not None:  # stopped after the server: the last entries get checkpointed too
            interval = config.auth.audit_checkpoint_interval_s
            _started(stack, AuditCheckpointer(audit=audit, sink=checkpoints, hub_id=config.hub_id, interval_s=interval))
        stack.push_async_callback(cancel_task, asyncio.create_task(_record_start(audit, config)))
        for name in ("", *SERVICE_NAMES):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

        metrics_port = None
        if config.metrics_port >= 0:
            metrics_port = stack.enter_context(metrics_endpoint(config.metrics_port, config.metrics_host, registry))
        hub = Hub(
            config=config,
            server=server,
            port=port,
            cluster=cluster,
            store=reads,
            ingest=ingest,
            health=health_servicer,
            metrics=metrics,
            metrics_port=metrics_port,
            hotlists=hotlists,
            alerts=alerts,
            mirror=mirror,
            feed=feed,
            retention=retention,
            resources=stack.pop_all(),
            fleet_config=fleet_config,
        )
    log.info("hub %s serving gRPC on %s:%d, metrics on %s", config.hub_id, config.listen_host, port, metrics_port)
    return hub, port


async def serve(config: HubConfig) -> None:
    """Run until SIGTERM/SIGINT, then shut down in order."""
    hub, port = await create_server(config)
    print(
        f"alpr-hub: serving on {config.listen_host}:{port} (metrics :{hub.metrics_port})",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await hub.stop()
