"""The fleet page (fleet operators, supervisors, admins): every node and camera from the
hub's FleetService, failing units first."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import grpc
from alpr.v1 import fleet_models_pb2, fleet_pb2, hotlist_pb2, ingest_pb2
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from console.hubclient import Metadata
from console.sessions import Session
from console.web import Console, page

log = logging.getLogger(__name__)

# A node whose last heartbeat is older than this is shown as silent.
SILENT_AFTER_S = 120.0
# Clock skew beyond this is a problem (read times would be off).
SKEW_LIMIT_S = 2.0


def console_of(request: Request) -> Console:
    c: Console = request.app.state.console
    return c


@dataclass
class NodeView:
    n: fleet_pb2.NodeStatus
    age_s: float
    findings: list[str]
    hotlist_lag: int
    synced_age_s: float | None
    # Age of the last position the unit reported (None: never reported one).
    position_age_s: float | None
    # What the unit reported about its model release (None: nothing reported).
    model: fleet_models_pb2.NodeModelStatus | None = None

    @property
    def failing(self) -> bool:
        return bool(self.findings)

    @property
    def off_shift(self) -> bool:
        return self.n.shift_state == ingest_pb2.SHIFT_STATE_OFF_SHIFT


def view(
    n: fleet_pb2.NodeStatus, now: float, current_version: int, model: fleet_models_pb2.NodeModelStatus | None = None
) -> NodeView:
    age = now - n.last_heartbeat_time.seconds - n.last_heartbeat_time.nanos / 1e9
    findings = list(n.problems)
    # A patrol car parked off shift is not expected to report: its silence is no problem.
    if age > SILENT_AFTER_S and n.shift_state != ingest_pb2.SHIFT_STATE_OFF_SHIFT:
        findings.insert(0, f"silent for {fmt_age(age)}")
    if not n.detector_ok:
        findings.append("detector not working")
    for c in n.cameras:
        said = f"camera {c.camera_id}: {c.problem or 'not ok'}"
        if not c.ok and said not in findings:  # a node's own finding may already say it
            findings.append(said)
    if n.HasField("clock_skew_s") and abs(n.clock_skew_s) > SKEW_LIMIT_S:
        findings.append(f"clock off by {n.clock_skew_s:+.1f} s")
    if n.config_error:
        findings.append(f"latest configuration not applied: {n.config_error}")
    if n.HasField("damage"):
        findings.append(f"damage reported by {n.damage.reported_by or 'someone'}: {n.damage.note}")
    if model is not None and model.state == fleet_models_pb2.NODE_MODEL_STATE_FAILED:
        runs = model.running_release_id or "its own models"
        findings.append(f"model release {model.release_id} failed: {model.error or 'no reason given'}; runs {runs}")
    synced = n.hotlist_synced_time.seconds if n.HasField("hotlist_synced_time") else 0
    fix = n.last_position_time.seconds if n.HasField("last_position_time") else 0
    return NodeView(
        n, age, findings, max(0, current_version - n.hotlist_version), now - synced if synced else None,
        now - fix if n.HasField("last_position") and fix else None, model,
    )  # fmt: skip


def fmt_age(s: float | None) -> str:
    if s is None:
        return "never"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.0f} d"


def fmt_bytes(n: int) -> str:
    x = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if x < 1024:
            return f"{x:.0f} {unit}"
        x /= 1024
    return f"{x:.1f} TB"


async def _nodes(c: Console, md: Metadata, problems_only: bool) -> list[fleet_pb2.NodeStatus]:
    nodes: list[fleet_pb2.NodeStatus] = []
    token = ""
    while True:
        resp = await c.hub.fleet.ListNodes(
            fleet_pb2.FleetServiceListNodesRequest(problems_only=problems_only, page_size=1000, page_token=token),
            metadata=md, timeout=c.settings.rpc_timeout_s,
        )  # fmt: skip
        nodes.extend(resp.nodes)
        token = resp.next_page_token
        if not token or len(nodes) >= 10_000:
            return nodes


async def _models(c: Console, md: Metadata) -> tuple[dict[str, fleet_models_pb2.NodeModelStatus], str]:
    """Each unit's model release report, and why there is none ("" when the hub answered)."""
    try:
        resp = await c.hub.models.GetRolloutStatus(
            fleet_models_pb2.GetRolloutStatusRequest(), metadata=md, timeout=c.settings.rpc_timeout_s
        )
    except grpc.aio.AioRpcError as e:  # the page is still useful without it
        log.info("model rollout status unavailable: %s %s", e.code().name, e.details())
        return {}, e.details() or e.code().name
    return {m.node_id: m for m in resp.nodes}, ""


@page(console_of)
async def fleet(request: Request, s: Session) -> Response:
    c = console_of(request)
    md = c.md(s)
    problems_only = request.query_params.get("problems") == "1"
    # Three independent hub calls, at once.
    nodes, got_version, (models, models_problem) = await asyncio.gather(
        _nodes(c, md, problems_only),
        c.hub.hotlists.GetVersion(hotlist_pb2.GetVersionRequest(), metadata=md, timeout=c.settings.rpc_timeout_s),
        _models(c, md),
    )
    version = got_version.version
    now = time.time()
    views = sorted(
        (view(n, now, version, models.get(n.node_id)) for n in nodes), key=lambda v: (not v.failing, v.n.node_id)
    )
    ctx: dict[str, Any] = {
        "views": views, "version": version, "problems_only": problems_only, "models_problem": models_problem,
        "failing": sum(v.failing for v in views), "age": fmt_age, "size": fmt_bytes,
    }  # fmt: skip
    return c.render(request, "fleet.html", **ctx)


ROUTES = [Route("/fleet", fleet)]
