"""Builds and runs the hub's gRPC server (``create_server``), with health and reflection."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import Any

import grpc
from alpr.v1 import (
    agency_pb2,
    agency_pb2_grpc,
    alert_pb2,
    alert_pb2_grpc,
    hotlist_pb2,
    hotlist_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
)
from grpc_health.v1 import _async as health_aio  # the asyncio servicer (grpc_health.v1.health.aio)
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from hub.access import ACCESS_SERVICE_NAMES, Access
from hub.agencies import AgencyExchangeServicer, BridgeAdminServicer
from hub.alerts import Alerter, AlertFeedTailer, AlertServicer, AlertStore
from hub.config import HubConfig
from hub.hotlists import HotListMirror, HotListServicer, HotListStore
from hub.ingest import IngestServicer
from hub.metrics import AgencyMetrics, HotListMetrics, HubMetrics
from hub.schema import migrate
from hub.storage import ReadStore, connect

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name,
    hotlist_pb2.DESCRIPTOR.services_by_name["HotListService"].full_name,
    alert_pb2.DESCRIPTOR.services_by_name["AlertService"].full_name,
    agency_pb2.DESCRIPTOR.services_by_name["AgencyExchangeService"].full_name,
    agency_pb2.DESCRIPTOR.services_by_name["BridgeAdminService"].full_name,
)


@dataclass
class Hub:
    """A running hub: gRPC server, Cassandra session, metrics endpoint."""

    config: HubConfig
    server: grpc.aio.Server
    port: int
    cluster: Any
    store: ReadStore
    ingest: IngestServicer
    health: health_aio.HealthServicer
    metrics: HubMetrics
    metrics_port: int | None
    hotlists: HotListServicer | None = None
    alerts: AlertServicer | None = None
    mirror: HotListMirror | None = None
    feed: AlertFeedTailer | None = None
    access: Access | None = None  # issue 7: auth, audit, search, evidence, TLS
    _metrics_http: Any = None
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def stop(self, grace: float | None = None) -> None:
        """Ordered shutdown: refuse new streams, drain accepted reads, close Cassandra."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.config.shutdown_grace_s if grace is None else grace
        log.info("hub stopping: draining streams (grace %.1f s)", grace)
        await self.health.enter_graceful_shutdown()
        if self.feed is not None:
            await self.feed.stop()  # ends Watch streams: watchers resume on another hub
        if self.hotlists is not None:
            self.hotlists.closing.set()  # ends Subscribe streams: nodes resubscribe elsewhere
        await asyncio.gather(self.server.stop(grace), self.ingest.shutdown())
        for part in (self.hotlists, self.alerts, self.mirror):
            if part is not None:
                await part.stop()
        if self.access is not None:
            await self.access.stop()
        await asyncio.get_running_loop().run_in_executor(None, self.cluster.shutdown)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        log.info("hub stopped")

    async def wait_stopped(self) -> None:
        await self.server.wait_for_termination()


async def create_server(config: HubConfig, registry: CollectorRegistry | None = None) -> tuple[Hub, int]:
    """Connect to Cassandra, migrate (if configured), bind the gRPC port and start serving.

    ``config.grpc_port = 0`` binds a free port; the bound port is returned.
    """
    registry = registry if registry is not None else CollectorRegistry()
    metrics = HubMetrics(registry)
    loop = asyncio.get_running_loop()
    cluster, session = await loop.run_in_executor(None, connect, config.cassandra)
    try:
        if config.migrate_on_start:
            await loop.run_in_executor(None, migrate, session, config)
        session.set_keyspace(config.cassandra.keyspace)
        store = ReadStore(session, config)
        hl_metrics = HotListMetrics(registry)
        hl_store = HotListStore(session, config)
        mirror = HotListMirror(hl_store, config, hl_metrics)
        # Load the list before serving: no read is stored without being matched.
        await mirror.load()
        alert_store = AlertStore(session, config)
        access = Access.create(session, config, registry)
    except Exception:
        cluster.shutdown()
        raise

    server = grpc.aio.server(
        interceptors=access.interceptors,
        options=[
            ("grpc.max_receive_message_length", 8 * 1024 * 1024),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ],
    )
    ingest = IngestServicer(store, config, metrics)
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(ingest, server)
    ingest.alerter = Alerter(mirror, alert_store, config, hl_metrics)
    hotlists = HotListServicer(hl_store, mirror, config, hl_metrics)
    hotlist_pb2_grpc.add_HotListServiceServicer_to_server(hotlists, server)
    feed = AlertFeedTailer(alert_store, config, hl_metrics)
    alerts = AlertServicer(alert_store, feed, config, hl_metrics)
    alert_pb2_grpc.add_AlertServiceServicer_to_server(alerts, server)
    agencies = AgencyExchangeServicer(store.session, config, AgencyMetrics(registry))
    agency_pb2_grpc.add_AgencyExchangeServiceServicer_to_server(agencies, server)
    agency_pb2_grpc.add_BridgeAdminServiceServicer_to_server(BridgeAdminServicer(store.session, config), server)
    access.register(server)
    ingest.identity = access.identity
    hotlists.audit = alerts.audit = agencies.audit = access.audit
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, *ACCESS_SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = access.bind(server, f"{config.listen_host}:{config.grpc_port}")
    if port == 0:
        cluster.shutdown()
        raise OSError(f"cannot bind the hub's gRPC port {config.listen_host}:{config.grpc_port} (in use?)")
    await server.start()
    for part in (mirror, hotlists, feed, alerts, access):
        part.start()
    for name in ("", *SERVICE_NAMES, *ACCESS_SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    metrics_http = None
    metrics_port = None
    if config.metrics_port >= 0:
        metrics_http, _thread = start_http_server(config.metrics_port, addr=config.metrics_host, registry=registry)
        metrics_port = metrics_http.server_port
    hub = Hub(
        config=config,
        server=server,
        port=port,
        cluster=cluster,
        store=store,
        ingest=ingest,
        health=health_servicer,
        metrics=metrics,
        metrics_port=metrics_port,
        hotlists=hotlists,
        alerts=alerts,
        mirror=mirror,
        feed=feed,
        access=access,
        _metrics_http=metrics_http,
    )
    log.info(
        "hub %s serving gRPC on %s:%d, metrics on %s",
        config.hub_id,
        config.listen_host,
        port,
        metrics_port,
    )
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
