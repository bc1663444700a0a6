"""Edge-node identity on the read stream (mutual TLS): a node submits only its own reads and
heartbeats, for its registered cameras, and a revoked node is cut off within seconds.

The node is the CN of its client certificate; its cameras come from the node registry
(``alpr nodes register``). Enabled with ``tls.ca_file`` and ``tls.enforce_node_identity``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc
from alpr.v1 import reads_pb2

from hub.principal import Context, peer_certificate
from hub.users import UserStore

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

    def __init__(self, *, users: UserStore) -> None:
        self.users = users

    async def open_stream(self, context: Context) -> NodeGate:
        cert = peer_certificate(context)
        if cert is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "no client certificate: nodes must connect with mutual TLS"
            )
        cn, _ou = cert
        reg = await self.users.get_node(cn)
        if reg is not None and reg.revoked:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"node {cn!r} has been revoked ({reg.reason or 'no reason given'}): streams are refused",
            )
        cameras = frozenset(reg.camera_ids or ()) if reg else frozenset()
        return NodeGate(cn, cameras, reg is not None, self.users, time.monotonic())
