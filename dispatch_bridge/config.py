"""Bridge configuration: YAML file + ``ALPR_BRIDGE__*`` environment overrides, unknown keys rejected."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from alpr_common.cassandra import CassandraConfig
from alpr_common.config import StrictModel, load_config

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class TlsConfig(StrictModel):
    """TLS for a gRPC or HTTPS connection; client cert + key make it mutual (mTLS)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # Expected server identity when it differs from the host name (gRPC target name override).
    server_name: str | None = None

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (client certificate for mTLS)")
        for p in (self.ca_file, self.cert_file, self.key_file):
            if p is not None and not p.exists():
                raise ValueError(f"{p}: file not found")
        return self


class SinkConfig(StrictModel):
    """One destination. ``kind`` says which keys apply:

    webhook: url, secret / secret_env (HMAC-SHA256 key), timeout_s, tls;
    grpc: target (HOST:PORT of an alpr.v1.DispatchReceiverService), timeout_s, tls;
    smtp (tickets): smtp_host, smtp_port, mail_from, mail_to, starttls, username, password_env;
    file (tickets): path (JSON lines, appended).
    """

    name: str
    kind: Literal["webhook", "grpc", "smtp", "file"]
    url: str | None = None
    secret: str | None = None
    # Name of an environment variable holding the secret (keeps it out of the file).
    secret_env: str | None = None
    target: str | None = None
    timeout_s: float = Field(5.0, gt=0)
    tls: TlsConfig | None = None
    # grpc: environment variable with a bearer token sent to the receiver.
    token_env: str | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(25, ge=1, le=65535)
    mail_from: str | None = None
    mail_to: list[str] = Field(default_factory=list)
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None
    path: Path | None = None

    @model_validator(mode="after")
    def _by_kind(self) -> SinkConfig:
        if not _NAME.match(self.name):
            raise ValueError("name: lower-case letters, digits, '.', '_' or '-' (at most 64)")
        if self.kind == "webhook":
            if not self.url or not re.match(r"^https?://", self.url):
                raise ValueError("a webhook sink needs url: http(s)://...")
            if not (self.secret or self.secret_env):
                raise ValueError("a webhook sink needs secret or secret_env (HMAC-SHA256 signing key)")
        elif self.kind == "grpc":
            if not self.target or ":" not in self.target:
                raise ValueError("a grpc sink needs target: HOST:PORT")
        elif self.kind == "smtp":
            if not (self.smtp_host and self.mail_from and self.mail_to):
                raise ValueError("an smtp sink needs smtp_host, mail_from and mail_to")
        elif self.kind == "file" and self.path is None:
            raise ValueError("a file sink needs path")
        return self

    def signing_secret(self) -> bytes:
        """The HMAC key (from ``secret`` or the environment variable ``secret_env``)."""
        if self.secret:
            return self.secret.encode()
        value = os.environ.get(self.secret_env or "")
        if not value:
            raise ValueError(f"sink {self.name}: environment variable {self.secret_env} (secret_env) is not set")
        return value.encode()


class NeighbourConfig(StrictModel):
    """A neighbouring agency registered on the hub (alpr agencies add); relays go to its hub."""

    agency_id: str
    # TLS (mTLS with cert/key) for the connection to the agency's hub.
    tls: TlsConfig | None = None
    # Environment variable with the bearer token the agency's hub issued to us.
    token_env: str | None = None
    timeout_s: float = Field(5.0, gt=0)


class RelayConfig(StrictModel):
    """What is relayed (policy 4.4, 4.6D) and how the crop travels."""

    @model_validator(mode="before")
    @classmethod
    def _one_unattended_clock(cls, data: Any) -> Any:
        if isinstance(data, dict) and "unattended_after_s" in data:
            raise ValueError(
                "relay.unattended_after_s is gone: the hub decides when a pending alert is unattended "
                "(alerts.unattended_after_s in the hub's config); remove it here"
            )
        return data

    # PENDING alerts the hub calls unattended (its alerts.unattended_after_s, the one
    # threshold) are relayed as unattended to dispatch and neighbours.
    # How often the hub is asked for unattended alerts.
    pending_scan_interval_s: float = Field(10.0, gt=0)
    pending_scan_hours: int = Field(24, ge=1, le=1440)
    # Safety net: accepted alerts decided between reconcile_after_s and reconcile_window_s ago
    # that the stream did not bring are relayed by the scan (0 turns it off).
    reconcile_after_s: float = Field(30.0, ge=0)
    reconcile_window_s: float = Field(3600.0, ge=0)
    # inline: base64 JPEG in the payload; link: crop_url from crop_url_template; none.
    crop: Literal["inline", "link", "none"] = "inline"
    crop_url_template: str = ""

    @model_validator(mode="after")
    def _link(self) -> RelayConfig:
        if self.crop == "link" and "{alert_id}" not in self.crop_url_template:
            raise ValueError("crop: link needs crop_url_template containing {alert_id}")
        return self


class DeliveryConfig(StrictModel):
    """Retries of the outbox: exponential backoff, then the dead-letter list."""

    initial_backoff_s: float = Field(0.5, gt=0)
    max_backoff_s: float = Field(60.0, gt=0)
    # A relay is dead-lettered after this many failed attempts or this long undelivered.
    max_attempts: int = Field(30, ge=1)
    max_age_s: float = Field(6 * 3600.0, gt=0)
    # Relays in flight per sink.
    concurrency: int = Field(8, ge=1, le=256)
    # The outbox is re-read this often (picks up operator retries and anything missed).
    rescan_interval_s: float = Field(10.0, gt=0)


ProblemKind = Literal["no_heartbeat", "detector", "camera", "disk", "clock", "damage", "gps", "hotlist", "other"]
UnitKind = Literal["FIXED", "MOBILE"]


def _default_open_for() -> dict[UnitKind, list[ProblemKind]]:
    usual: list[ProblemKind] = ["no_heartbeat", "detector", "camera", "disk", "clock", "damage", "other"]
    return {"FIXED": list(usual), "MOBILE": list(usual)}


class TicketsConfig(StrictModel):
    """Help-desk tickets for failing units (policy 4.8)."""

    enabled: bool = False
    poll_interval_s: float = Field(30.0, gt=0)
    # A unit with no heartbeat for this long is failing.
    no_heartbeat_after_s: float = Field(600.0, gt=0)
    min_disk_free_bytes: int = Field(1 << 30, ge=0)
    sinks: list[SinkConfig] = Field(default_factory=list)
    # Which kinds of problem open a ticket, per kind of unit (FIXED, MOBILE). Kinds:
    # no_heartbeat, detector, camera, disk, clock, damage (an officer's report, policy 4.8),
    # gps (no fix), hotlist (not confirmed current), other (any other self-check finding).
    # A mobile unit off shift (alpr-node shift-end) raises no no_heartbeat ticket.
    open_for: dict[UnitKind, list[ProblemKind]] = Field(default_factory=_default_open_for)

    @model_validator(mode="after")
    def _kinds(self) -> TicketsConfig:
        for s in self.sinks:
            if s.kind == "grpc":
                raise ValueError(f"ticket sink {s.name}: kind must be webhook, smtp or file")
        if self.enabled and not self.sinks:
            raise ValueError("tickets.enabled needs at least one ticket sink")
        return self


class BridgeConfig(StrictModel):
    """Everything the bridge process needs."""

    bridge_id: str = "bridge"
    # This agency's id, sent as the origin of relays to neighbours.
    agency_id: str = "local-agency"
    # Hubs to follow the alert stream from (failover in order).
    hubs: list[str] = Field(default_factory=lambda: ["127.0.0.1:50051"], min_length=1)
    hub_tls: TlsConfig | None = None
    # Environment variable with the bridge's service token for the hub (when hub auth is on).
    hub_token_env: str | None = None
    # Loopback unless configured (a Prometheus elsewhere: 0.0.0.0 or an address).
    metrics_host: str = "127.0.0.1"
    # 0 picks a free port; -1 disables the metrics endpoint.
    metrics_port: int = Field(9103, ge=-1, le=65535)
    shutdown_grace_s: float = Field(5.0, ge=0)
    cassandra: CassandraConfig = Field(default_factory=CassandraConfig)
    relay: RelayConfig = Field(default_factory=RelayConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    dispatch: list[SinkConfig] = Field(default_factory=list)
    neighbours: list[NeighbourConfig] = Field(default_factory=list)
    tickets: TicketsConfig = Field(default_factory=TicketsConfig)
    # Development only: the links to the hub and to neighbours may be plain text. Logged
    # loudly at start; without it the bridge refuses to start so.
    insecure_dev: bool = False

    def security_problems(self) -> list[str]:
        """Why this bridge may not start (empty: it may): TLS to the hub with the bridge's
        certificate (or a token), and TLS to every neighbour, unless ``insecure_dev``."""
        if self.insecure_dev:
            return []
        problems = []
        if self.hub_tls is None:
            problems.append(
                "hub_tls is not set: alerts with plates and images would come from the hub in plain text "
                "(hub_tls: ca_file, cert_file, key_file from alpr certs issue BRIDGE_ID --kind service), "
                "or insecure_dev: true for development"
            )
        elif self.hub_tls.cert_file is None and not self.hub_token_env:
            problems.append(
                "hub_tls.cert_file (the bridge's certificate) or hub_token_env is required: a secured hub "
                "answers no one without credentials"
            )
        problems += [
            f"neighbours[{n.agency_id}].tls is not set: relays to that agency would travel in plain text "
            "(or insecure_dev: true for development)"
            for n in self.neighbours
            if n.tls is None
        ]
        return problems

    def insecure_parts(self) -> list[str]:
        """What is switched off (for the loud start-up warning of an ``insecure_dev`` bridge)."""
        off = []
        if self.hub_tls is None:
            off.append("TLS to the hub")
        if (self.hub_tls is None or self.hub_tls.cert_file is None) and not self.hub_token_env:
            off.append("credentials at the hub")
        return off + [f"TLS to {n.agency_id}" for n in self.neighbours if n.tls is None]

    @model_validator(mode="after")
    def _check(self) -> BridgeConfig:
        if not _NAME.match(self.bridge_id):
            raise ValueError("bridge_id: lower-case letters, digits, '.', '_' or '-'")
        for s in self.dispatch:
            if s.kind not in ("webhook", "grpc"):
                raise ValueError(f"dispatch sink {s.name}: kind must be webhook or grpc")
        names = [s.name for s in self.dispatch] + [s.name for s in self.tickets.sinks]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"sink names must be unique: {sorted(dup)}")
        ids = [n.agency_id for n in self.neighbours]
        if len(set(ids)) != len(ids):
            raise ValueError("neighbours: an agency is listed twice")
        return self


ENV_PREFIX = "ALPR_BRIDGE"


def load_bridge_config(path: str | Path | None) -> BridgeConfig:
    """Load the bridge config file (or defaults) with ``ALPR_BRIDGE__*`` overrides."""
    return load_config(BridgeConfig, path, ENV_PREFIX)
