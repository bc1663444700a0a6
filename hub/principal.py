"""Who is calling: the authenticated principal of the current RPC and the client certificate.

:class:`hub.auth.AuthInterceptor` sets :data:`current_principal` for every call it admits;
servicers and the audit log read it with :func:`principal_from`.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

import grpc

OFFICER, DISPATCHER, SUPERVISOR, INVESTIGATOR, ADMIN, AUDITOR, FLEET_OPERATOR = (
    "officer", "dispatcher", "supervisor", "investigator", "admin", "auditor", "fleet_operator",
)  # fmt: skip
# The roles people have (a user's role in the users table).
ROLES = (OFFICER, DISPATCHER, SUPERVISOR, INVESTIGATOR, ADMIN, AUDITOR, FLEET_OPERATOR)
# Machine principals, authenticated by client certificate only. A certificate identifies a
# machine, never a person: people's data (alerts, reads, plates) needs a user's token.
NODE, SERVICE = "node", "service"
# Named service roles, given to a service certificate's CN by ``auth.services`` in the hub
# config, each with the least methods that service needs. Any other service certificate gets
# SERVICE, which reads no people's data.
BRIDGE = "bridge"  # the dispatch bridge: watches alerts to relay them, asks share decisions
HUB = "hub"  # another hub replica of the deployment: pushes the alert events it wrote
SERVICE_ROLES = (BRIDGE, HUB)

# The servicer context of any RPC (request and response types vary per method).
Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (kind ``user``), an edge node or a service (by certificate)."""

    kind: str
    id: str
    role: str

    @property
    def actor(self) -> str:
        return self.id if self.kind == "user" else f"{self.kind}:{self.id}"


current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("alpr_principal", default=None)


def principal_from() -> Principal | None:
    """The authenticated caller of the current RPC (None when auth is disabled)."""
    return current_principal.get()


def peer_certificate(context: Context) -> tuple[str, str] | None:
    """(CN, OU) of the verified client certificate, or None (no mutual TLS)."""
    try:
        ac = context.auth_context()
    except Exception:
        return None
    cns = list(ac.get("x509_common_name") or [])
    if not cns:
        return None
    cn = cns[0].decode() if isinstance(cns[0], bytes) else str(cns[0])
    ou = NODE
    pems = list(ac.get("x509_pem_cert") or [])
    if pems:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        cert = x509.load_pem_x509_certificate(pems[0] if isinstance(pems[0], bytes) else pems[0].encode())
        ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        if ous:
            ou = str(ous[0].value)
    return cn, ou
