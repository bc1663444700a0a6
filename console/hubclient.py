"""The console's gRPC connection to the hub: one channel, the person's token on every call."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from alpr.v1 import (
    admin_pb2_grpc,
    agency_pb2_grpc,
    alert_pb2_grpc,
    audit_pb2_grpc,
    evidence_pb2_grpc,
    fleet_models_pb2_grpc,
    fleet_pb2_grpc,
    hotlist_pb2_grpc,
    search_pb2_grpc,
)

from alpr_common.operator.common import SERVICE_CONFIG
from alpr_common.tls import channel_credentials
from console.settings import HubTls

Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class HubFailure:
    """A refused or failed hub call, as the console shows it."""

    http_status: int
    code: str
    message: str


# How a hub refusal reaches the browser: the hub's own message, with the HTTP status that
# means the same thing.
_HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
}


def failure(e: grpc.aio.AioRpcError, hub: str) -> HubFailure:
    code = e.code()
    details = e.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return HubFailure(503, code.name, f"the hub at {hub} is not reachable right now ({details}); try again")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return HubFailure(504, code.name, f"the hub at {hub} did not answer in time; try again")
    return HubFailure(_HTTP.get(code, 502), code.name, details or code.name)


class HubClient:
    def __init__(self, target: str, tls: HubTls | None) -> None:
        self.target = target
        options: list[tuple[str, str | int]] = [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", SERVICE_CONFIG),  # read-only calls retried on UNAVAILABLE, as the CLI
        ]
        if tls is not None:
            creds = channel_credentials(str(tls.ca), str(tls.cert or ""), str(tls.key or ""))
            self.channel = grpc.aio.secure_channel(target, creds, options=options)
        else:
            self.channel = grpc.aio.insecure_channel(target, options=options)
        ch = self.channel
        self.alerts = alert_pb2_grpc.AlertServiceStub(ch)
        self.admin = admin_pb2_grpc.AdminServiceStub(ch)
        self.fleet = fleet_pb2_grpc.FleetServiceStub(ch)
        self.models = fleet_models_pb2_grpc.ModelReleaseServiceStub(ch)
        self.search = search_pb2_grpc.SearchServiceStub(ch)
        self.evidence = evidence_pb2_grpc.EvidenceServiceStub(ch)
        self.hotlists = hotlist_pb2_grpc.HotListServiceStub(ch)
        self.audit = audit_pb2_grpc.AuditServiceStub(ch)
        self.bridge = agency_pb2_grpc.BridgeAdminServiceStub(ch)

    @staticmethod
    def metadata(token: str) -> Metadata:
        return (("authorization", f"Bearer {token}"),)

    async def close(self) -> None:
        await self.channel.close(None)
