"""The bridge process: alert-stream follower, pending scanner, ticket watcher, one delivery
worker per sink, metrics on :9103; ordered shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import grpc
from alpr.v1 import alert_pb2_grpc
from prometheus_client import CollectorRegistry, start_http_server

from dispatch_bridge.config import BridgeConfig
from dispatch_bridge.delivery import SinkWorker
from dispatch_bridge.metrics import BridgeMetrics
from dispatch_bridge.outbox import Outbox
from dispatch_bridge.relays import AlertFollower, PendingScanner, Relayer
from dispatch_bridge.sinks import AgencySink, Sink, grpc_channel, make_sink, token_from_env
from dispatch_bridge.tickets import TicketWatcher
from hub.storage import connect

log = logging.getLogger(__name__)


@dataclass
class Bridge:
    config: BridgeConfig
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    metrics_port: int | None = None
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    workers: dict[str, SinkWorker] = field(default_factory=dict)
    follower: AlertFollower | None = None
    scanner: PendingScanner | None = None
    tickets: TicketWatcher | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _inputs: list[asyncio.Task[None]] = field(default_factory=list)
    _cluster: Any = None
    _channels: list[grpc.aio.Channel] = field(default_factory=list)
    _metrics_http: Any = None

    async def start(self) -> Bridge:
        cfg = self.config
        metrics = BridgeMetrics(self.registry)
        loop = asyncio.get_running_loop()
        self._cluster, session = await loop.run_in_executor(None, connect, cfg.cassandra)
        try:
            outbox = await loop.run_in_executor(
                None,
                lambda: Outbox(
                    session,
                    cfg.cassandra.keyspace,
                    cfg.bridge_id,
                    cfg.cassandra.write_consistency,
                    cfg.cassandra.read_consistency,
                ),
            )
        except Exception:
            self._cluster.shutdown()
            raise
        self.outbox = outbox
        token = token_from_env(cfg.hub_token_env)
        self._channels = [grpc_channel(h, cfg.hub_tls, token) for h in cfg.hubs]
        sinks: list[Sink] = [make_sink(s) for s in cfg.dispatch]
        sinks += [AgencySink(n, self._channels[0], cfg.bridge_id) for n in cfg.neighbours]
        if cfg.tickets.enabled:
            sinks += [make_sink(s) for s in cfg.tickets.sinks]
        for s in sinks:
            self.workers[s.name] = SinkWorker(s, outbox, cfg.delivery, metrics)

        def notify(key: str, sink_names: list[str], created: datetime) -> None:
            for n in sink_names:
                w = self.workers.get(n)
                if w is not None:
                    w.add(key, created)

        relayer = Relayer(cfg, outbox, alert_pb2_grpc.AlertServiceStub(self._channels[0]), metrics, notify)
        self.relayer = relayer
        self.follower = AlertFollower(cfg, outbox, relayer, self._channels, metrics, self.stop_event)
        self.scanner = PendingScanner(cfg, relayer, self._channels, self.stop_event)
        for w in self.workers.values():
            await w.rescan()  # what a previous run left undelivered goes first
            self._tasks.append(asyncio.create_task(w.run(self.stop_event)))
        self._inputs = [asyncio.create_task(self.follower.run()), asyncio.create_task(self.scanner.run())]
        self._tasks.extend(self._inputs)
        if cfg.tickets.enabled:
            self.tickets = TicketWatcher(cfg, outbox, metrics, notify)
            self._tasks.append(asyncio.create_task(self._ticket_loop()))
        if cfg.metrics_port >= 0:
            self._metrics_http, _t = start_http_server(cfg.metrics_port, addr=cfg.metrics_host, registry=self.registry)
            self.metrics_port = self._metrics_http.server_port
        log.info(
            "bridge %s: following %s; sinks %s; metrics :%s",
            cfg.bridge_id,
            ", ".join(cfg.hubs),
            ", ".join(self.workers) or "(none)",
            self.metrics_port,
        )
        return self

    async def _ticket_loop(self) -> None:
        assert self.tickets is not None
        while not self.stop_event.is_set():
            try:
                await self.tickets.poll()
            except Exception as exc:
                log.warning("ticket poll failed: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), self.config.tickets.poll_interval_s)

    async def stop(self) -> None:
        """Stop taking new events, let in-flight deliveries finish (grace), close everything."""
        if self.stop_event.is_set():
            return
        log.info("bridge stopping")
        self.stop_event.set()
        for w in self.workers.values():
            w.wake.set()
        for t in self._inputs:  # no new relays; what is in the outbox stays there
            t.cancel()
        await asyncio.gather(*(w.drain(self.config.shutdown_grace_s) for w in self.workers.values()))
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for w in self.workers.values():
            with contextlib.suppress(Exception):
                await w.sink.close()
        for ch in self._channels:
            await ch.close(None)
        await asyncio.get_running_loop().run_in_executor(None, self._cluster.shutdown)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        log.info("bridge stopped")


async def serve(config: BridgeConfig) -> None:
    """Run until SIGTERM/SIGINT, then shut down in order."""
    bridge = await Bridge(config).start()
    print(f"alpr-bridge: running (metrics :{bridge.metrics_port})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await bridge.stop()
