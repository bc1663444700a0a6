"""Help-desk tickets for failing units (policy 4.8).

Every ``tickets.poll_interval_s`` the bridge asks a hub's ``FleetService`` for the latest
heartbeat of every node (failing over between ``hubs``) and decides whether each unit is failing: no heartbeat
for ``no_heartbeat_after_s`` (not for a patrol car off shift), a camera down, the detector
dead, the disk nearly full (``min_disk_free_bytes``), an officer's damage report, or a
self-check problem the node reports (clock skew among them) - each only when
``tickets.open_for`` names its kind for that kind of unit (by default not "no GPS fix" nor
"hot list not confirmed", which the unit's own display and shift-start already tell the
officer). A failing unit without an open incident gets one (``bridge_tickets``) and an
"open" ticket event through the ticket sinks; while it stays open nothing new is sent
(exactly one ticket per unit per incident); when the unit is healthy again the incident
is closed and a "close" event sent. Ticket events go through the durable outbox like
relays (keys ``ticket:<node>:<incident>:open|close``), so a crash or a sink outage
neither loses nor repeats them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import grpc
from alpr.v1 import fleet_pb2, fleet_pb2_grpc, ingest_pb2, reads_pb2
from cassandra.util import uuid_from_time

from alpr_common.timestamps import from_timestamp, now_utc, utc_or_none
from dispatch_bridge.config import BridgeConfig, UnitKind
from dispatch_bridge.metrics import BridgeMetrics
from dispatch_bridge.outbox import Outbox

log = logging.getLogger(__name__)

OPEN, CLOSED = "OPEN", "CLOSED"
MAX_PAGE = 1000
FLEET_TIMEOUT_S = 30.0


# A node's self-check findings by their opening words (node/runtime.py writes them).
_KIND_PREFIXES = (
    ("damage reported", "damage"),
    ("no GPS fix", "gps"),
    ("hot list not confirmed", "hotlist"),
    ("clock off", "clock"),
    ("camera ", "camera"),
    ("detector", "detector"),
    ("disk", "disk"),
)


def problem_kind(problem: str) -> str:
    """The kind of a node's self-check finding, as named in ``tickets.open_for``."""
    return next((kind for prefix, kind in _KIND_PREFIXES if problem.startswith(prefix)), "other")


def damage_text(d: fleet_pb2.DamageReport) -> str:
    """A damage report made at the hub, worded like the unit's own (``damage reported ...``)."""
    when = from_timestamp(d.reported_time).isoformat(timespec="seconds") if d.HasField("reported_time") else "?"
    return f"damage reported by officer {d.reported_by or '?'} at {when}: {d.note}"


def problems_of(node: fleet_pb2.NodeStatus, config: BridgeConfig, now: datetime) -> list[str]:
    """Why a unit needs a ticket (empty: none), from its latest status: only the kinds of
    problem ``tickets.open_for`` names for its kind of unit; a patrol car off shift is
    expected to be silent."""
    cfg = config.tickets
    unit: UnitKind = "MOBILE" if node.node_kind == reads_pb2.NODE_KIND_MOBILE else "FIXED"
    wanted: set[str] = set(cfg.open_for.get(unit, ()))
    off_shift = unit == "MOBILE" and node.shift_state == ingest_pb2.SHIFT_STATE_OFF_SHIFT
    # An officer's report through the hub stands whatever the unit says (or does not say).
    reported = [damage_text(node.damage)] if node.HasField("damage") and "damage" in wanted else []
    last = from_timestamp(node.last_heartbeat_time) if node.HasField("last_heartbeat_time") else None
    if last is None or (now - last).total_seconds() > cfg.no_heartbeat_after_s:
        if "no_heartbeat" in wanted and not off_shift:
            return [f"no heartbeat for more than {cfg.no_heartbeat_after_s / 60:g} min", *reported]
        return reported  # the rest of the status is stale
    found: list[tuple[str, str]] = []
    if not node.detector_ok:
        found.append(("detector", "detector not working"))
    for c in node.cameras:
        if not c.ok:
            found.append(("camera", f"camera {c.camera_id or '?'} down" + (f": {c.problem}" if c.problem else "")))
    if node.disk_free_bytes < cfg.min_disk_free_bytes:
        found.append(("disk", f"disk full ({node.disk_free_bytes / 2**20:.0f} MiB free)"))
    for p in node.problems:
        if not any(p == text or p in text for _, text in found):
            found.append((problem_kind(p), p))  # node self-check findings (e.g. clock skew)
    return [*reported, *(text for kind, text in found if kind in wanted)]


class TicketWatcher:
    """One incident per failing unit; open and close events through the outbox."""

    def __init__(
        self,
        config: BridgeConfig,
        outbox: Outbox,
        metrics: BridgeMetrics,
        notify: Callable[[str, list[str], datetime], None],
        hubs: list[grpc.aio.Channel],
    ) -> None:
        """``hubs``: channels to the hubs whose ``FleetService`` is asked (in order, failover)."""
        self.config = config
        self.outbox = outbox
        self.metrics = metrics
        self.notify = notify
        self.fleets = [fleet_pb2_grpc.FleetServiceStub(ch) for ch in hubs]
        self.sinks = [s.name for s in config.tickets.sinks]

    async def _send(self, key: str, doc: dict[str, Any], event: str) -> None:
        created = await self.outbox.enqueue(key, "ticket", json.dumps(doc, sort_keys=True).encode(), self.sinks)
        if created is not None:
            self.metrics.tickets.labels(event).inc()
            self.metrics.enqueued.labels(f"ticket_{event}").inc()
            self.notify(key, self.sinks, created)
            log.info("ticket %s: %s", key, "; ".join(doc.get("problems", [])) or "recovered")

    async def node_statuses(self) -> list[fleet_pb2.NodeStatus]:
        """Every node's latest status from the first hub that answers (all pages)."""
        last: grpc.aio.AioRpcError | None = None
        for fleet in self.fleets:
            nodes: list[fleet_pb2.NodeStatus] = []
            token = ""
            try:
                while True:
                    req = fleet_pb2.FleetServiceListNodesRequest(page_size=MAX_PAGE, page_token=token)
                    resp = await fleet.ListNodes(req, timeout=FLEET_TIMEOUT_S)
                    nodes.extend(resp.nodes)
                    token = resp.next_page_token
                    if not token:
                        return nodes
            except grpc.aio.AioRpcError as e:
                last = e
        raise RuntimeError(f"no hub answered FleetService.ListNodes: {last.code().name if last else '-'}: "
                           f"{last.details() if last else 'no hubs configured'}")  # fmt: skip

    async def poll(self) -> None:
        now = now_utc()
        nodes = await self.node_statuses()
        tickets = await self.outbox.tickets()
        open_n = 0
        for node in nodes:
            problems = problems_of(node, self.config, now)
            t = tickets.get(node.node_id)
            is_open = t is not None and t.state == OPEN
            if problems and not is_open:
                incident = uuid_from_time(time.time())
                await self.outbox.set_ticket(node.node_id, incident, OPEN, now, None, problems)
                await self._send_open(node.node_id, str(incident), now, problems)
                open_n += 1
            elif problems and t is not None:
                # Still failing: the incident stays open; make sure its ticket went out (crash-safe).
                await self._send_open(
                    node.node_id, str(t.incident_id), utc_or_none(t.opened_at) or now, list(t.problems or [])
                )
                open_n += 1
            elif not problems and is_open and t is not None:
                await self.outbox.set_ticket(node.node_id, t.incident_id, CLOSED, utc_or_none(t.opened_at) or now, now,
                                             list(t.problems or []))  # fmt: skip
                await self._send_close(node.node_id, str(t.incident_id), utc_or_none(t.opened_at) or now, now)
            elif t is not None and t.state == CLOSED:
                await self._send_close(node.node_id, str(t.incident_id), utc_or_none(t.opened_at) or now,
                                       utc_or_none(t.closed_at) or now)  # fmt: skip
        self.metrics.tickets_open.set(open_n)

    async def _send_open(self, node: str, incident: str, opened: datetime, problems: list[str]) -> None:
        doc = {
            "type": "ticket",
            "event": "open",
            "ticket_id": f"{node}:{incident}",
            "node_id": node,
            "problems": problems,
            "opened_at": opened.isoformat(),
            "subject": f"ALPR unit {node} not working: {'; '.join(problems)}",
            "policy": "4.8: a help-desk ticket for a mobile/fixed ALPR unit not working properly",
        }
        await self._send(f"ticket:{node}:{incident}:open", doc, "open")

    async def _send_close(self, node: str, incident: str, opened: datetime, closed: datetime) -> None:
        doc = {
            "type": "ticket",
            "event": "close",
            "ticket_id": f"{node}:{incident}",
            "node_id": node,
            "problems": [],
            "opened_at": opened.isoformat(),
            "closed_at": closed.isoformat(),
            "subject": f"ALPR unit {node} recovered",
        }
        await self._send(f"ticket:{node}:{incident}:close", doc, "close")
