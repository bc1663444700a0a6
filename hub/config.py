"""Hub configuration: YAML file + ``ALPR_HUB__*`` environment overrides, unknown keys rejected."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from alpr_common.cassandra import CassandraConfig
from alpr_common.config import StrictModel, load_config

SIXTY_DAYS_S = 60 * 24 * 3600  # 5,184,000 s: policy §5.4-5.5


class RetentionConfig(StrictModel):
    """How long captured data lives. Policy: exactly 60 days, then it expires on its own."""

    read_ttl_seconds: int = Field(SIXTY_DAYS_S, ge=1)

    def twcs_window(self) -> tuple[str, int]:
        """TimeWindowCompactionStrategy window giving ~20-30 windows per TTL."""
        target = self.read_ttl_seconds / 25
        for unit, seconds in (("DAYS", 86400), ("HOURS", 3600), ("MINUTES", 60)):
            if target >= seconds:
                return unit, max(1, round(target / seconds))
        return "MINUTES", 1


class IngestConfig(StrictModel):
    """Validation limits and back-pressure for the read stream."""

    max_in_flight_per_stream: int = Field(256, ge=1)
    max_in_flight_total: int = Field(4096, ge=1)
    # Bytes of reads (images included) being stored at once, hub-wide. A read that does not fit
    # waits and its stream is not read further, so HTTP/2 flow control slows the node instead
    # of the hub buffering: memory stays bounded under large reads. A read larger than this is
    # stored alone. Small reads (~10 KB) never reach it at normal rates.
    max_bytes_in_flight: int = Field(2 * 1024 * 1024, ge=64 * 1024)
    # Grow HTTP/2 flow-control windows with the measured bandwidth-delay product. Off: a paused
    # stream buffers only the default window and the message being received, so back-pressure
    # bounds memory (on: ~50 MB more under 300 reads of 500 KB at once).
    http2_bdp_probe: bool = False
    max_crop_bytes: int = Field(256 * 1024, ge=1024)
    max_frame_bytes: int = Field(512 * 1024, ge=1024)
    # The largest gRPC message the hub receives. A read with images up to this size gets a
    # per-read error (image_too_large) and the stream goes on; a larger message ends the stream
    # (RESOURCE_EXHAUSTED), as the transport cannot skip it.
    max_message_bytes: int = Field(32 * 1024 * 1024, ge=1024 * 1024, le=256 * 1024 * 1024)
    # A stream that sends nothing (no read, no heartbeat, or half a message and then silence)
    # for this long is closed, so stalled clients do not hold memory. Nodes heartbeat every 10 s.
    idle_timeout_s: float = Field(60.0, gt=0)
    # Reads stamped further in the future than this are refused (node clock wrong).
    max_future_skew_s: float = Field(300.0, ge=0)
    plate_min_length: int = Field(1, ge=1)
    plate_max_length: int = Field(8, ge=1, le=16)
    require_location: bool = True


class SearchConfig(StrictModel):
    """Bounds on one search, so no query can stall the hub or read the whole keyspace."""

    # A partial (wildcard) pattern after runs of '*' are collapsed: characters and wildcards.
    max_pattern_length: int = Field(16, ge=1, le=64)
    max_wildcards: int = Field(4, ge=0, le=16)
    max_cameras: int = Field(50, ge=1, le=1000)
    # Partitions (plate-day or camera-hour) one query may read; 1,440 is one camera for 60 days.
    max_partitions: int = Field(5000, ge=1, le=100_000)


class MatchConfig(StrictModel):
    """How reads are matched against the hot list (``alpr_common.matching.MatchOptions``)."""

    lookalike: bool = True  # O/0/D/Q, I/1/L, B/8, S/5, Z/2, G/6
    one_char: bool = True  # one missing or extra character
    one_char_min_length: int = Field(5, ge=2, le=16)
    lookalike_penalty: float = Field(0.05, ge=0, le=1)
    one_char_penalty: float = Field(0.25, ge=0, le=1)
    state_mismatch_penalty: float = Field(0.3, ge=0, le=1)
    state_unknown_penalty: float = Field(0.05, ge=0, le=1)
    min_score: float = Field(0.4, ge=0, le=1)


class FleetConfigSettings(StrictModel):
    """The fleet configuration log (FleetConfigService): how each hub follows it."""

    # How often each hub looks for new versions written by other hubs.
    poll_interval_s: float = Field(0.2, gt=0)
    # A subscribed node hears the current version at least this often.
    notice_interval_s: float = Field(10.0, gt=0)


class ModelReleaseSettings(StrictModel):
    """Model releases and their rollout (ModelReleaseService)."""

    # Public keys (PEM) of the release keys whose signed releases this hub accepts; without
    # one, uploads are refused. Nodes trust their own copy (fleet.models.release_key_file).
    release_public_keys: list[Path] = Field(default_factory=list)
    # Size of the stored chunks of a release's files.
    chunk_bytes: int = Field(512 * 1024, ge=16 * 1024, le=2 * 1024 * 1024)
    # Chunks kept in memory for downloads (a rollout sends the same bytes to every unit).
    cache_bytes: int = Field(256 * 1024 * 1024, ge=0)
    # How often each hub looks for rollout changes written by other hubs.
    poll_interval_s: float = Field(0.5, gt=0)


class HotListConfig(StrictModel):
    """Hot-list log, node subscriptions and manual entries."""

    # A manual entry states its own expiry (policy 4.5: an officer's entry is for a
    # deployment); it may not be set further ahead than this many days.
    manual_max_expiry_days: float = Field(365.0, gt=0)
    # An import (a full replacement of its source) that would remove more than this share of
    # the source's current entries, or that has no entries, is refused unless the importer
    # says --allow-mass-removal: a truncated or failed download must not wipe a list.
    max_removal_share: float = Field(0.2, ge=0, le=1)
    # How often each hub looks for new versions in the change log.
    poll_interval_s: float = Field(0.1, gt=0)
    # A node further behind than this many changes gets a snapshot instead of deltas.
    snapshot_threshold_changes: int = Field(50_000, ge=1)
    chunk_size: int = Field(2000, ge=1, le=20_000)
    # Concurrent Cassandra writes while committing a version.
    write_concurrency: int = Field(32, ge=1)
    # Idle subscriptions get a version notice this often (also a liveness check).
    notice_interval_s: float = Field(15.0, gt=0)
    match: MatchConfig = Field(default_factory=MatchConfig)


class AlertsConfig(StrictModel):
    """Alert feed tailing, Watch streams, unattended alerts."""

    # Every hub reads the shared alert feed this often to serve its Watch streams.
    feed_poll_interval_s: float = Field(0.075, gt=0)
    # Each poll re-reads this far back, so events written late by another hub are not missed.
    feed_lookback_s: float = Field(5.0, gt=0)
    # PENDING alerts older than this are unattended (policy 4.3).
    unattended_after_s: float = Field(300.0, gt=0)
    # Watch can resume from an event at most this old.
    watch_resume_max_s: float = Field(86_400.0, gt=0, le=172_800)
    watch_queue_size: int = Field(10_000, ge=10)
    # How often the pending / unattended gauges are recomputed.
    pending_scan_interval_s: float = Field(30.0, gt=0)
    # Events this hub writes to the feed go to its own Watch streams at once and are pushed to
    # the peer replicas below; off: every watcher hears of an event only by polling the feed.
    push: bool = True
    # The other hub replicas on this keyspace, as gRPC targets ("hub-b.example:50051"). Called
    # with this hub's TLS identity (tls.cert_file / key_file, trusting tls.ca_file); each peer
    # must list this hub's certificate CN as `hub` in its auth.services.
    peers: list[str] = Field(default_factory=list)
    # One push waits at most this long for a peer; a failed push is not retried (the peer
    # finds the events on its next feed poll).
    push_timeout_s: float = Field(1.0, gt=0)
    # Events waiting to be pushed to one peer; when a peer falls this far behind the oldest are
    # dropped (it reads them from the feed).
    push_queue_size: int = Field(10_000, ge=10)


class AgenciesConfig(StrictModel):
    """Agency exchange (policy 3.4-3.6, 4.7): who this hub's agency is and the sharing rules."""

    # This agency's id (as other agencies register it) and home state: agencies of the home
    # state may receive; others need an approval.
    agency_id: str = ""
    home_state: str = Field("IL", pattern=r"^[A-Z]{2}$")
    # Longest an out-of-state approval may run.
    max_approval_days: int = Field(366, ge=1, le=3660)


class AuthConfig(StrictModel):
    """Access control (policy §3): tokens and roles on every RPC. On unless ``insecure_dev``."""

    enabled: bool = True
    # The audit chain this hub appends to (default: hub_id). Each hub should have its own.
    audit_chain: str = ""
    # Service certificates (OU service) by CN → their service role, e.g. {bridge: bridge}; the
    # other hub replicas (alerts.peers) as `hub`: {hub-b: hub}.
    # A service certificate not listed here may call no method that returns people's data.
    services: dict[str, Literal["bridge", "hub"]] = Field(default_factory=dict)
    # The audit chain's HMAC key: a file only the hub can read (or ALPR_AUDIT_KEY). Never in
    # Cassandra: who can write there cannot recompute the chain. Required unless insecure_dev.
    audit_key_file: str = ""
    # Signed checkpoints of the chain head, outside Cassandra (a directory on other storage);
    # `alpr audit verify` holds every chain against them. Required unless insecure_dev.
    audit_checkpoint_dir: str = ""
    audit_checkpoint_interval_s: float = Field(60.0, gt=0)
    # Password sign-in (AdminService.SignIn, for the web console): the longest session one
    # sign-in gives, and how many failed attempts per user id within the window before
    # sign-in is refused for that user id for the rest of the window.
    password_session_max_s: int = Field(12 * 3600, gt=0, le=7 * 86400)
    signin_failures_allowed: int = Field(5, ge=1)
    signin_failure_window_s: int = Field(900, gt=0, le=86400)


class TlsConfig(StrictModel):
    """gRPC over TLS; with a CA, clients (nodes, services) must present certificates (mutual TLS).

    On unless ``insecure_dev``; the certificate files are checked when the hub starts
    (:meth:`HubConfig.security_problems`), so a config object can be built without them.
    """

    enabled: bool = True
    cert_file: str = ""
    key_file: str = ""
    # CA that signed node/service certificates (``alpr certs init``); empty: no client certificates.
    ca_file: str = ""
    require_client_cert: bool = True
    # A node may submit reads/heartbeats only for its certificate's CN and its registered cameras.
    enforce_node_identity: bool = True


class HubConfig(StrictModel):
    """Everything the hub process needs."""

    hub_id: str = Field(default_factory=socket.gethostname)
    listen_host: str = "0.0.0.0"
    grpc_port: int = Field(50051, ge=0, le=65535)
    # Metrics stay on this machine unless configured (a scraper elsewhere: 0.0.0.0 or an address).
    metrics_host: str = "127.0.0.1"
    # 0 picks a free port; -1 disables the metrics endpoint.
    metrics_port: int = Field(9101, ge=-1, le=65535)
    shutdown_grace_s: float = Field(10.0, ge=0)
    migrate_on_start: bool = True
    cassandra: CassandraConfig = Field(default_factory=CassandraConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    hotlists: HotListConfig = Field(default_factory=HotListConfig)
    fleet_config: FleetConfigSettings = Field(default_factory=FleetConfigSettings)
    model_releases: ModelReleaseSettings = Field(default_factory=ModelReleaseSettings)
    search: SearchConfig = Field(default_factory=SearchConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    agencies: AgenciesConfig = Field(default_factory=AgenciesConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    tls: TlsConfig = Field(default_factory=TlsConfig)
    # Development only: auth and TLS default to off, and may be off. Logged loudly at start.
    insecure_dev: bool = False

    @model_validator(mode="before")
    @classmethod
    def _insecure_defaults(cls, data: Any) -> Any:
        """With ``insecure_dev: true``, auth and TLS default to off (each can still be turned on)."""
        if isinstance(data, dict) and data.get("insecure_dev") in (True, "true", "True", "1", 1):
            for section in ("auth", "tls"):
                value = data.get(section)
                if value is None:
                    data = {**data, section: {"enabled": False}}
                elif isinstance(value, dict) and "enabled" not in value:
                    data = {**data, section: {**value, "enabled": False}}
        return data

    def security_problems(self) -> list[str]:
        """Why this config may not serve (empty: it may). Checked by ``create_server`` and
        ``alpr-hub --validate-config``: secure unless ``insecure_dev: true`` says otherwise."""
        problems: list[str] = []
        if not self.insecure_dev:
            if not self.auth.enabled:
                problems.append("auth.enabled is false: access control is off (allowed only with insecure_dev: true)")
            if not self.tls.enabled:
                problems.append("tls.enabled is false: gRPC in plain text (allowed only with insecure_dev: true)")
        if self.auth.enabled and not self.insecure_dev:
            if not (self.auth.audit_key_file or os.environ.get("ALPR_AUDIT_KEY")):
                problems.append(
                    "auth.audit_key_file (or ALPR_AUDIT_KEY) is required: the audit chain's HMAC key, kept out of "
                    "Cassandra (python -c 'import secrets; print(secrets.token_hex(32))' > audit.key)"
                )
            if not self.auth.audit_checkpoint_dir:
                problems.append(
                    "auth.audit_checkpoint_dir is required: signed audit checkpoints, on storage other than Cassandra"
                )
        if self.tls.enabled and not (self.tls.cert_file and self.tls.key_file):
            problems.append(
                "tls.enabled needs cert_file and key_file (alpr certs issue HUB --kind service --host NAME), "
                "or insecure_dev: true for a development hub without TLS"
            )
        if self.tls.enabled and self.tls.require_client_cert and not self.tls.ca_file:
            problems.append("tls.require_client_cert needs ca_file (the deployment CA: alpr certs init)")
        return problems

    def insecure_parts(self) -> list[str]:
        """What is switched off (for the loud start-up warning of an ``insecure_dev`` hub)."""
        off = [name for name, on in (("access control (auth)", self.auth.enabled), ("TLS", self.tls.enabled)) if not on]
        if self.tls.enabled and not (self.tls.ca_file and self.tls.require_client_cert):
            off.append("client certificates (mutual TLS)")
        return off


ENV_PREFIX = "ALPR_HUB"


def load_hub_config(path: str | Path | None) -> HubConfig:
    """Load the hub config file (or defaults) with ``ALPR_HUB__*`` overrides."""
    return load_config(HubConfig, path, ENV_PREFIX)
