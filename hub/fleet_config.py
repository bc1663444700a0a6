"""``FleetConfigService``: the fleet's desired node configuration, versioned, per group and per
unit, and the nodes' subscriptions to it.

The log (``fleet_config_versions``) has one row per change, holding the scope's whole overlay
after it. A change is computed on top of the latest version, validated with the node's own
configuration model (:mod:`node.fleet_overlay`), and its version claimed with ``INSERT ... IF
NOT EXISTS``; whoever loses the race recomputes on top of the winner's version and tries the
next number. So versions are gap-free and monotonic across hub replicas and two operators
changing one group at once both keep their change. Every hub tails the log into memory
(:class:`FleetConfigMirror`) and pushes new versions to its subscribed nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from alpr.v1 import fleet_config_pb2, fleet_config_pb2_grpc
from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from prometheus_client import CollectorRegistry, Gauge

from alpr_common.cassandra import CassandraStore, Row, insert_cql
from alpr_common.timestamps import now_utc, to_timestamp, utc_or_none
from hub.audit import AuditLog
from hub.config import FleetConfigSettings, HubConfig
from hub.model_releases import ModelReleaseServicer
from hub.principal import Context
from hub.version_log import LogMirror
from node.fleet_overlay import OverlayError, combine, dumps, parse_overlay, patch, validate_overlay

log = logging.getLogger(__name__)

LOG = "main"
GROUP, NODE = "GROUP", "NODE"
_KIND_NAMES = {fleet_config_pb2.OVERLAY_SCOPE_KIND_GROUP: GROUP, fleet_config_pb2.OVERLAY_SCOPE_KIND_NODE: NODE}
_KIND_PROTO = {v: k for k, v in _KIND_NAMES.items()}


Scope = tuple[str, str]  # (GROUP | NODE, name)


@dataclass(frozen=True)
class ConfigVersion:
    version: int
    scope: Scope
    overlay: dict[str, Any]
    change: dict[str, Any]
    replace: bool
    committed_at: datetime
    committed_by: str
    reason: str
    hub_id: str

    def to_proto(self) -> fleet_config_pb2.FleetConfigVersion:
        msg = fleet_config_pb2.FleetConfigVersion(
            version=self.version,
            scope=scope_proto(self.scope),
            overlay_json=dumps(self.overlay),
            change_json=dumps(self.change),
            replace=self.replace,
            changed_by=self.committed_by,
            reason=self.reason,
            hub_id=self.hub_id,
        )
        msg.changed_time.CopyFrom(to_timestamp(self.committed_at))
        return msg


def scope_proto(scope: Scope) -> fleet_config_pb2.OverlayScope:
    return fleet_config_pb2.OverlayScope(kind=_KIND_PROTO[scope[0]], name=scope[1])


def scope_of(msg: fleet_config_pb2.OverlayScope) -> Scope:
    return (_KIND_NAMES[msg.kind], msg.name)


def describe(scope: Scope) -> str:
    return f"{scope[0].lower()} {scope[1]}"


class FleetConfigMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.version = Gauge(
            "alpr_hub_fleet_config_version", "Fleet configuration version this hub has loaded", registry=registry
        )
        self.node_version = Gauge(
            "alpr_hub_node_fleet_config_version",
            "Fleet configuration version each subscribed node applied",
            ["node_id"],
            registry=registry,
        )
        self.node_error = Gauge(
            "alpr_hub_node_fleet_config_error",
            "1 while a subscribed node reports it could not apply its latest configuration",
            ["node_id"],
            registry=registry,
        )
        self.subscribers = Gauge(
            "alpr_hub_fleet_config_subscribers", "Nodes subscribed to fleet configuration here", registry=registry
        )


class FleetConfigStore(CassandraStore):
    def __init__(self, *, session: Session, config: HubConfig) -> None:
        super().__init__(session=session, cassandra=config.cassandra)
        self.hub_id = config.hub_id
        ks = self.keyspace
        cols = (
            "log", "version", "scope_kind", "scope_name", "overlay", "change", "replace", "committed_at",
            "committed_by", "reason", "hub_id",
        )  # fmt: skip
        self._claim = self.writer(insert_cql(f"{ks}.fleet_config_versions", cols, if_not_exists=True))
        select = f"SELECT {', '.join(cols[1:])} FROM {ks}.fleet_config_versions WHERE log = :log"
        self._after = self.reader(f"{select} AND version > :version ORDER BY version ASC LIMIT 500")
        self._after_serial = self.reader(
            f"{select} AND version > :version ORDER BY version ASC LIMIT 500",
            consistency=ConsistencyLevel.LOCAL_SERIAL,
        )
        self._node_state = self.writer(
            insert_cql(f"{ks}.node_fleet_config_state", ("node_id", "version", "error", "acked_at", "hub_id"))
        )

    async def versions_after(self, version: int, serial: bool = False) -> list[ConfigVersion]:
        rows = await self.run(self._after_serial if serial else self._after, {"log": LOG, "version": version})
        return [_version(r) for r in rows]

    async def claim(self, v: ConfigVersion) -> bool:
        values = {
            "log": LOG, "version": v.version, "scope_kind": v.scope[0], "scope_name": v.scope[1],
            "overlay": dumps(v.overlay), "change": dumps(v.change), "replace": v.replace,
            "committed_at": v.committed_at, "committed_by": v.committed_by, "reason": v.reason[:2000],
            "hub_id": v.hub_id,
        }  # fmt: skip
        rows = await self.run(self._claim, values)
        return bool(rows and rows[0][0])

    async def record_node(self, node_id: str, version: int, error: str) -> None:
        await self.run(
            self._node_state,
            {"node_id": node_id, "version": version, "error": error, "acked_at": now_utc(), "hub_id": self.hub_id},
        )


def _version(r: Row) -> ConfigVersion:
    return ConfigVersion(
        version=r.version, scope=(r.scope_kind, r.scope_name), overlay=json.loads(r.overlay or "{}"),
        change=json.loads(r.change or "{}"), replace=bool(r.replace), committed_at=utc_or_none(r.committed_at) or now_utc(),
        committed_by=r.committed_by or "", reason=r.reason or "", hub_id=r.hub_id or "",
    )  # fmt: skip


class FleetConfigMirror(LogMirror[ConfigVersion]):
    """This hub's copy of the whole log (small: one row per change), kept current by tailing it."""

    what = "fleet configuration"

    def __init__(self, *, store: FleetConfigStore, settings: FleetConfigSettings, metrics: FleetConfigMetrics) -> None:
        super().__init__(fetch=store.versions_after, claim=store.claim, poll_interval_s=settings.poll_interval_s)
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.history: list[ConfigVersion] = []
        self.scopes: dict[Scope, ConfigVersion] = {}

    def _apply(self, v: ConfigVersion) -> None:
        self.history.append(v)
        self.scopes[v.scope] = v
        self.metrics.version.set(v.version)

    def scopes_time(self, version: int) -> datetime | None:
        return self.history[version - 1].committed_at if 0 < version <= len(self.history) else None

    def scope_at(self, scope: Scope, version: int = 0) -> ConfigVersion | None:
        if not version or version >= self.version:
            return self.scopes.get(scope)
        return next((v for v in reversed(self.history[:version]) if v.scope == scope), None)

    def node_overlay(self, node_id: str, groups: list[str], version: int = 0) -> tuple[dict[str, Any], int]:
        """The overlay a node gets (its groups in order, then its own) and the last version that changed it."""
        scopes: list[Scope] = [*((GROUP, g) for g in groups), (NODE, node_id)]
        found = [self.scope_at(s, version) for s in scopes]
        present = [f for f in found if f is not None]
        return combine(f.overlay for f in present), max((f.version for f in present), default=0)

    async def change(
        self, scope: Scope, change: dict[str, Any], replace: bool, by: str, reason: str, hub_id: str,
        expected: int | None,
    ) -> ConfigVersion:  # fmt: skip
        """Claim the next version for a change of ``scope``, recomputed on top of whatever won before it."""

        def make(version: int) -> ConfigVersion:
            current = self.scopes.get(scope)
            if expected is not None and (current.version if current else 0) != expected:
                raise StaleScope(current)
            overlay = change if replace else patch(current.overlay if current else {}, change)
            validate_overlay(overlay)
            return ConfigVersion(version, scope, overlay, change, replace, now_utc(), by, reason, hub_id)

        v = await self.commit(make)
        assert v is not None
        return v


class StaleScope(Exception):
    def __init__(self, current: ConfigVersion | None) -> None:
        self.current = current


class FleetConfigServicer(fleet_config_pb2_grpc.FleetConfigServiceServicer):
    def __init__(
        self, *, mirror: FleetConfigMirror, store: FleetConfigStore, config: HubConfig, audit: AuditLog,
        metrics: FleetConfigMetrics, models: ModelReleaseServicer | None = None,
    ) -> None:  # fmt: skip
        """``models``: model rollouts, whose assignments and reports share the units' stream."""
        self.models = models
        self.mirror = mirror
        self.store = store
        self.config = config
        self.audit = audit
        self.metrics = metrics
        self.closing = asyncio.Event()
        self._streams: dict[str, int] = {}

    async def SetOverlay(
        self, request: fleet_config_pb2.SetOverlayRequest, context: Context
    ) -> fleet_config_pb2.SetOverlayResponse:
        scope = scope_of(request.scope)
        by = request.changed_by.strip() or "anonymous"
        reason = request.reason.strip()
        try:
            change = parse_overlay(request.settings_json)
            if request.dry_run:
                current = self.mirror.scopes.get(scope)
                overlay = change if request.replace else patch(current.overlay if current else {}, change)
                validate_overlay(overlay)
                return fleet_config_pb2.SetOverlayResponse(overlay_json=dumps(overlay), dry_run=True)
            expected = request.expected_scope_version if request.HasField("expected_scope_version") else None
            v = await self.mirror.change(scope, change, request.replace, by, reason, self.config.hub_id, expected)
        except OverlayError as e:
            await self.audit.record_call(
                "fleet.config_refused", fallback_actor=by, outcome="refused",
                details={"scope": describe(scope), "reason": reason, "refused": str(e)},
            )  # fmt: skip
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"overlay for {describe(scope)} refused, nothing changed: {e}"
            )
        except StaleScope as s:
            cur = s.current
            held = f"version {cur.version} by {cur.committed_by} ({cur.reason})" if cur else "no overlay"
            await context.abort(
                grpc.StatusCode.ABORTED,
                f"{describe(scope)} changed since you read it: it is now at {held}, not version "
                f"{request.expected_scope_version}; review `alpr fleet config get` and retry",
            )
        except Exception as exc:
            log.warning("fleet configuration commit failed: %r", exc)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"storage unavailable ({type(exc).__name__}); check `alpr fleet config history` and retry",
            )
        await self.audit.record_call(
            "fleet.config_change", fallback_actor=by,
            details={"version": v.version, "scope": describe(scope), "reason": reason, "change": v.change,
                     "replace": v.replace},
        )  # fmt: skip
        return fleet_config_pb2.SetOverlayResponse(version=v.version, overlay_json=dumps(v.overlay))

    async def GetConfig(
        self, request: fleet_config_pb2.GetConfigRequest, context: Context
    ) -> fleet_config_pb2.GetConfigResponse:
        await self.mirror.catch_up()
        at = request.at_version
        if at > self.mirror.version:
            await context.abort(
                grpc.StatusCode.OUT_OF_RANGE, f"version {at} does not exist yet (current: {self.mirror.version})"
            )
        version = at or self.mirror.version
        if request.WhichOneof("target") == "scope":
            found = self.mirror.scope_at(scope_of(request.scope), at)
            overlay, scope_version = (found.overlay, found.version) if found else ({}, 0)
        else:
            overlay, scope_version = self.mirror.node_overlay(request.node.node_id, list(request.node.groups), at)
        return fleet_config_pb2.GetConfigResponse(
            overlay_json=dumps(overlay), version=version, scope_version=scope_version
        )

    async def ListHistory(
        self, request: fleet_config_pb2.ListHistoryRequest, context: Context
    ) -> fleet_config_pb2.ListHistoryResponse:
        await self.mirror.catch_up()
        limit = request.limit or 50
        scope = scope_of(request.scope) if request.HasField("scope") else None
        out = []
        for v in reversed(self.mirror.history):
            if scope is None or v.scope == scope:
                out.append(v.to_proto())
                if len(out) >= limit:
                    break
        return fleet_config_pb2.ListHistoryResponse(versions=out, current_version=self.mirror.version)

    async def Subscribe(
        self,
        request_iterator: AsyncIterator[fleet_config_pb2.FleetConfigServiceSubscribeRequest],
        context: Context,
    ) -> AsyncIterator[fleet_config_pb2.FleetConfigServiceSubscribeResponse]:
        try:
            first = await asyncio.wait_for(request_iterator.__anext__(), 30)
        except (StopAsyncIteration, TimeoutError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "send FleetConfigSubscribeStart first, within 30 s")
        if first.WhichOneof("payload") != "start":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a FleetConfigSubscribeStart"
            )
        node_id = first.start.node_id.strip()
        groups = list(first.start.groups)
        have = first.start.have_version
        self._streams[node_id] = self._streams.get(node_id, 0) + 1
        self.metrics.subscribers.inc()
        models = self.models
        if models is not None:
            models.connected(node_id, first.start.model_release_id)
        acks = asyncio.create_task(self._read_acks(node_id, groups, request_iterator))
        sent_model: tuple[str, bool] | None = None
        settings = self.mirror.settings
        try:
            held: dict[str, Any] | None = None
            if have:  # what the node holds: the overlay as it was at its version
                held = self.mirror.node_overlay(node_id, groups, min(have, self.mirror.version))[0]
            while not acks.done():
                if self.closing.is_set():
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "hub is shutting down; resubscribe elsewhere")
                pos = self.mirror.version
                overlay, changed = self.mirror.node_overlay(node_id, groups)
                if held is None or overlay != held or have > pos:
                    upd = fleet_config_pb2.FleetConfigUpdate(version=pos, overlay_json=dumps(overlay))
                    t = self.mirror.scopes_time(changed)
                    if t is not None:
                        upd.changed_time.CopyFrom(to_timestamp(t))
                    yield fleet_config_pb2.FleetConfigServiceSubscribeResponse(update=upd)
                    held, have = overlay, pos
                else:
                    yield fleet_config_pb2.FleetConfigServiceSubscribeResponse(
                        current=fleet_config_pb2.FleetConfigNotice(version=pos, server_time=to_timestamp(now_utc()))
                    )
                    have = pos
                if models is not None:
                    rollout_changed = models.mirror.changed()
                    a = models.assign(node_id, groups)
                    if (a.release_id, a.paused) != sent_model:
                        yield fleet_config_pb2.FleetConfigServiceSubscribeResponse(model=a)
                        sent_model = (a.release_id, a.paused)
                    await self.mirror.wait_newer(pos, settings.notice_interval_s, self.closing, rollout_changed)
                else:
                    await self.mirror.wait_newer(pos, settings.notice_interval_s, self.closing)
        finally:
            acks.cancel()
            self.metrics.subscribers.dec()
            self._streams[node_id] -= 1
            if self._streams[node_id] <= 0:
                del self._streams[node_id]
                if models is not None:
                    models.disconnected(node_id)
                for g in (self.metrics.node_version, self.metrics.node_error):
                    with contextlib.suppress(KeyError):
                        g.remove(node_id)

    async def _read_acks(
        self,
        node_id: str,
        groups: list[str],
        requests: AsyncIterator[fleet_config_pb2.FleetConfigServiceSubscribeRequest],
    ) -> None:
        with contextlib.suppress(Exception):
            async for req in requests:
                kind = req.WhichOneof("payload")
                if kind == "model" and self.models is not None:
                    await self.models.report(node_id, groups, req.model)
                if kind != "ack":
                    continue
                v, err = req.ack.version, req.ack.error
                if not err:
                    self.metrics.node_version.labels(node_id).set(v)
                self.metrics.node_error.labels(node_id).set(1 if err else 0)
                try:
                    await self.store.record_node(node_id, v, err)
                except Exception as exc:
                    log.warning("recording the configuration version of %s failed: %r", node_id, exc)
