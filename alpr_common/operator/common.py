"""Shared plumbing of the operator CLI: hub connection, token metadata, output, errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from alpr_common.cli_support import version_line

DEFAULT_HUB = "127.0.0.1:50051"

# gRPC itself retries the read-only calls when a hub is briefly unavailable (a restart, a
# failover): up to 4 attempts, exponential backoff with jitter from 0.2 s to 2 s. Calls that
# change something (add, decide, import, ...) are never repeated behind the person's back.
READ_ONLY_METHODS = {
    "alpr.v1.HotListService": ("GetVersion", "GetEntry", "ListEntries"),
    "alpr.v1.AlertService": ("ListAlerts", "GetAlert"),
    "alpr.v1.AgencyExchangeService": ("ListAgencies", "ListShareAudit", "ListSharedAlerts"),
    "alpr.v1.BridgeAdminService": ("ListDeadLetters",),
    "alpr.v1.AdminService": ("ListUsers", "WhoAmI", "ListNodes"),
    "alpr.v1.AuditService": ("ListAudit", "VerifyAudit"),
    "alpr.v1.FleetService": ("ListNodes",),
    "alpr.v1.FleetConfigService": ("GetConfig", "ListHistory"),
    "alpr.v1.ModelReleaseService": ("ListReleases", "GetRolloutStatus"),
    "alpr.v1.SearchService": ("Search",),
    "alpr.v1.EvidenceService": ("GetEvidence",),
}
RETRY_POLICY = {
    "maxAttempts": 4,
    "initialBackoff": "0.2s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": s, "method": m} for s, methods in READ_ONLY_METHODS.items() for m in methods],
                "retryPolicy": RETRY_POLICY,
            }
        ]
    }
)


class CliError(Exception):
    """A refusal or failure to report to the person (exit status 1)."""


@dataclass
class Context:
    hub: str
    token: str | None
    json: bool
    timeout: float

    def channel(self) -> grpc.Channel:
        options: list[tuple[str, str | int]] = [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", SERVICE_CONFIG),
        ]
        if os.environ.get("ALPR_TLS_CA"):  # mutual TLS (ALPR_TLS_CA, ALPR_TLS_CERT, ALPR_TLS_KEY)
            from alpr_common.tls import channel_credentials

            env = os.environ
            try:
                creds = channel_credentials(
                    env["ALPR_TLS_CA"], env.get("ALPR_TLS_CERT", ""), env.get("ALPR_TLS_KEY", "")
                )
            except OSError as e:
                raise CliError(
                    f"cannot read TLS file {e.filename}: {e.strerror} (ALPR_TLS_CA, ALPR_TLS_CERT, ALPR_TLS_KEY)"
                ) from None
            return grpc.secure_channel(self.hub, creds, options=options)
        return grpc.insecure_channel(self.hub, options=options)

    def metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        # The hub checks it when auth is enabled (hub/auth.py); harmless when it is not.
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


ACTING_AS_HELP = "only for a hub without access control; with a token the hub records the token's user"


def acting_as(ctx: Context, typed: str, flag: str) -> str:
    """Who acts, for the request field that names them: with a token the hub takes it from
    the token (empty is sent; a different name is refused there), without one ``flag`` says."""
    if not typed.strip() and not ctx.token:
        raise CliError(
            f"{flag} ID is needed without a token; with a token (--token / ALPR_TOKEN) the hub records its user"
        )
    return typed.strip()


def add_global_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--hub",
        default=os.environ.get("ALPR_HUB", DEFAULT_HUB),
        help=f"hub address HOST:PORT (env ALPR_HUB, default {DEFAULT_HUB})",
    )
    p.add_argument("--token", default=os.environ.get("ALPR_TOKEN"), help="access token (env ALPR_TOKEN)")
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the hub (default 30)")


def leaf_options() -> argparse.ArgumentParser:
    """The global options again, for use after the subcommand (``alpr alerts list --json``)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--hub", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--token", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable JSON output")
    p.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--version", action="version", version=version_line("alpr"), help=argparse.SUPPRESS)
    return p


def context_from(args: argparse.Namespace) -> Context:
    return Context(args.hub, args.token, args.json, args.timeout)


def to_dict(msg: Message) -> dict[str, Any]:
    return MessageToDict(msg, preserving_proto_field_name=True)


def output(ctx: Context, msg: Message, text: str) -> int:
    """Print ``msg`` as JSON (``--json``) or ``text``; exit status 0."""
    if ctx.json:
        emit_json(to_dict(msg))
    else:
        print(text)
    return 0


def emit_json(obj: Any) -> None:
    print(json.dumps(obj, sort_keys=True), flush=True)


def rpc_error(ctx: Context, e: grpc.RpcError) -> CliError:
    code = e.code()
    details = e.details()
    if code == grpc.StatusCode.UNAVAILABLE and ("connect" in (details or "").lower() or "failed" in (details or "")):
        hint = "check --hub / ALPR_HUB"
        if not os.environ.get("ALPR_TLS_CA"):
            hint += "; a hub with mutual TLS needs ALPR_TLS_CA, ALPR_TLS_CERT and ALPR_TLS_KEY (ops/local: source .run/local/env)"
        return CliError(f"cannot reach the hub at {ctx.hub} ({details}); {hint}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CliError(f"the hub at {ctx.hub} did not answer in time (--timeout)")
    return CliError(f"{code.name}: {details}")


def enum_arg(name: str) -> str:
    """``stolen_vehicle`` / ``stolen-vehicle`` → ``STOLEN_VEHICLE``."""
    return name.strip().upper().replace("-", "_")


def fail(msg: str) -> int:
    print(f"alpr: {msg}", file=sys.stderr)
    return 1
