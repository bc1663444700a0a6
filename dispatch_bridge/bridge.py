"""The bridge process: alert-stream follower, pending scanner, ticket watcher, one delivery
worker per sink, metrics on :9103; ordered shutdown on SIGTERM.

Start-up registers every resource it opens (Cassandra, hub channels, sinks, tasks, the
metrics endpoint) on an ``AsyncExitStack``: when a step fails, what was opened is closed
in reverse order and the error raised; ``stop`` drains deliveries, then closes the stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from datetime import datetime
from typing import Any

import grpc
from alpr.v1 import alert_pb2_grpc
from prometheus_client import CollectorRegistry

from alpr_common.cassandra import connect
from alpr_common.config import refuse_insecure
from alpr_common.lifecycle import cancel_task, in_thread, metrics_endpoint
from dispatch_bridge.config import BridgeConfig
from dispatch_bridge.delivery import SinkWorker
from dispatch_bridge.metrics import BridgeMetrics
from dispatch_bridge.outbox import Outbox
from dispatch_bridge.relays import AlertFollower, PendingScanner, Relayer
from dispatch_bridge.sinks import AgencySink, Sink, grpc_channel, make_sink, token_from_env
from dispatch_bridge.tickets import TicketWatcher

log = logging.getLogger(__name__)


async def _close_sink(sink: Sink) -> None:
    with contextlib.suppress(Exception):
        await sink.close()


class Bridge:
    """The running bridge; ``await Bridge(config).start()``, then ``await stop()``."""

    def __init__(self, config: BridgeConfig, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics_port: int | None = None
        self.stop_event = asyncio.Event()
        self.workers: dict[str, SinkWorker] = {}
        self.follower: AlertFollower | None = None
        self.scanner: PendingScanner | None = None
        self.tickets: TicketWatcher | None = None
        self._inputs: list[asyncio.Task[None]] = []
        self._resources = contextlib.AsyncExitStack()

    async def start(self) -> Bridge:
        """Connect and start relaying. Refused (:class:`~alpr_common.config.InsecureConfigError`)
        without TLS to the hub and the neighbours unless the config says ``insecure_dev: true``."""
        cfg = self.config
        refuse_insecure(
            "bridge", cfg.security_problems(), cfg.insecure_dev, cfg.insecure_parts(),
            "Alerts with plates and images travel in plain text.", log,
        )  # fmt: skip
        metrics = BridgeMetrics(self.registry)
        loop = asyncio.get_running_loop()
        async with contextlib.AsyncExitStack() as stack:

            def spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
                task = asyncio.create_task(coro)
                stack.push_async_callback(cancel_task, task)
                return task

            cluster, session = await loop.run_in_executor(None, connect, cfg.cassandra)
            stack.push_async_callback(in_thread, cluster.shutdown)
            outbox = await loop.run_in_executor(
                None, lambda: Outbox(session=session, cassandra=cfg.cassandra, bridge_id=cfg.bridge_id)
            )
            token = token_from_env(cfg.hub_token_env)
            channels: list[grpc.aio.Channel] = []
            for hub in cfg.hubs:
                channels.append(grpc_channel(hub, cfg.hub_tls, token))
                stack.push_async_callback(channels[-1].close, None)
            sinks: list[Sink] = [make_sink(s) for s in cfg.dispatch]
            # A hub with access control records who asks from the bridge's credentials (and refuses
            # another name); only a hub without it is told the bridge's id.
            asker = "" if (cfg.hub_tls or token) else cfg.bridge_id
            sinks += [AgencySink(n, channels[0], asker) for n in cfg.neighbours]
            if cfg.tickets.enabled:
                sinks += [make_sink(s) for s in cfg.tickets.sinks]
            for s in sinks:
                stack.push_async_callback(_close_sink, s)
                self.workers[s.name] = SinkWorker(s, outbox, cfg.delivery, metrics)

            def notify(key: str, sink_names: list[str], created: datetime) -> None:
                for n in sink_names:
                    w = self.workers.get(n)
                    if w is not None:
                        w.add(key, created)

            relayer = Relayer(cfg, outbox, alert_pb2_grpc.AlertServiceStub(channels[0]), metrics, notify)
            self.follower = AlertFollower(cfg, outbox, relayer, channels, metrics, self.stop_event)
            self.scanner = PendingScanner(cfg, relayer, channels, self.stop_event)
            for w in self.workers.values():
                await w.rescan()  # what a previous run left undelivered goes first
                spawn(w.run(self.stop_event))
            self._inputs = [spawn(self.follower.run()), spawn(self.scanner.run())]
            if cfg.tickets.enabled:
                self.tickets = TicketWatcher(cfg, outbox, metrics, notify, channels)
                spawn(self._ticket_loop())
            if cfg.metrics_port >= 0:
                self.metrics_port = stack.enter_context(
                    metrics_endpoint(cfg.metrics_port, cfg.metrics_host, self.registry)
                )
            self._resources = stack.pop_all()
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
        await self._resources.aclose()  # tasks, sinks, channels, Cassandra, metrics: reverse order
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
