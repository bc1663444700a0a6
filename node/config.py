"""Edge-node configuration: YAML + ``ALPR_NODE__*`` environment overrides, unknown keys rejected."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from alpr_common.config import ConfigError, StrictModel, load_config

if TYPE_CHECKING:
    import grpc


class LocationConfig(StrictModel):
    """Where a fixed camera is (WGS-84)."""

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    accuracy_m: float = Field(5.0, ge=0)
    heading_deg: float | None = Field(None, ge=0, lt=360)


class CameraConfig(StrictModel):
    camera_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
    # video file, image, image folder, or rtsp:// / http:// stream
    source: str
    loop: bool = False
    # 0 = as fast as frames come (files) / every frame (streams)
    max_fps: float = Field(0.0, ge=0)
    # fixed nodes: overrides the node's location for this camera
    location: LocationConfig | None = None


class GpsConfig(StrictModel):
    """Mobile nodes: NMEA source ``file:PATH``, ``serial:/dev/ttyUSB0`` or ``gpsd:HOST:PORT``."""

    source: str = Field(pattern=r"^(file|serial|gpsd):.+")
    max_age_s: float = Field(10.0, gt=0)


class HubLinkConfig(StrictModel):
    # one or more hubs; the node fails over between them
    targets: list[str] = Field(default_factory=lambda: ["127.0.0.1:50051"], min_length=1)
    window: int = Field(128, ge=1, le=4096)
    heartbeat_interval_s: float = Field(10.0, gt=0)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    # Mutual TLS (policy §3: no public access path): the deployment CA and this node's certificate (CN = node id) from
    # ``alpr certs issue NODE_ID``. Empty: plaintext (only where the hub allows it).
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""

    def credentials(self) -> grpc.ChannelCredentials | None:
        """Mutual-TLS credentials for the hub link (None: plaintext); a file that cannot be read
        is a ConfigError naming the setting and the path."""
        if not self.tls_ca_file:
            return None
        for name in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
            path = getattr(self, name)
            if path:
                try:
                    Path(path).read_bytes()
                except OSError as e:
                    raise ConfigError(f"hub.{name}: cannot read {path}: {e.strerror or e}") from None
        from alpr_common.tls import channel_credentials

        return channel_credentials(self.tls_ca_file, self.tls_cert_file, self.tls_key_file)


class QueueConfig(StrictModel):
    # default: <state_dir>/queue.sqlite
    path: str | None = None
    # disk budget for queued reads; the oldest are evicted (and counted) beyond it
    budget_bytes: int = Field(2 * 1024**3, ge=1024 * 1024)


class ImagesConfig(StrictModel):
    crop_quality: int = Field(90, ge=10, le=100)
    send_frame: bool = True
    frame_max_width: int = Field(640, ge=64)
    frame_quality: int = Field(70, ge=10, le=100)


class PlateFormatsConfig(StrictModel):
    """Per-jurisdiction plate patterns; a read matching none is junk and dropped."""

    enabled: bool = True
    patterns: dict[str, list[str]] = Field(
        default_factory=lambda: {
            # Generic US: 2-8 letters/digits. Narrow it per jurisdiction, e.g. IL: ["^[A-Z]{1,3}[0-9]{1,5}$", ...]
            "US": [r"^[A-Z0-9]{2,8}$"],
        }
    )
    min_confidence: float = Field(0.3, ge=0, le=1)

    @field_validator("patterns")
    @classmethod
    def _compile(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for region, pats in v.items():
            for p in pats:
                try:
                    re.compile(p)
                except re.error as e:
                    raise ValueError(f"plate_formats.patterns.{region}: bad regex {p!r}: {e}") from e
        return v


class TrackerConfig(StrictModel):
    emit_delay_s: float = Field(0.6, gt=0, le=10)
    max_track_s: float = Field(20.0, gt=0)
    min_hits: int = Field(2, ge=1)
    iou_min: float = Field(0.05, ge=0, le=1)
    text_similarity_min: float = Field(0.6, ge=0, le=1)
    settle_reads: int = Field(
        4, ge=0, description="reads after which a confident track needs no more OCR; 0 = OCR every frame"
    )
    settle_confidence: float = Field(0.9, ge=0, le=1)
    settle_max_reads: int = Field(8, ge=0, description="OCR a track at most this often (0 = no limit)")


class GatingConfig(StrictModel):
    """Detector only where a plate can be (node/motion_gate.py): changed regions + followed plates."""

    enabled: bool = True
    downscale: int = Field(8, ge=1, le=32, description="motion mask at 1/downscale of the frame")
    threshold: int = Field(14, ge=1, le=255, description="grey-level change that counts as motion")
    background_alpha: float = Field(0.1, gt=0, le=1)
    margin_px: int = Field(48, ge=0)
    min_region_px: int = Field(192, ge=32)
    max_region_fraction: float = Field(0.5, gt=0, le=1, description="beyond this share: the whole frame")
    max_regions: int = Field(6, ge=1)
    full_frame_interval_s: float = Field(1.0, gt=0, description="the whole frame at least this often")
    settled_interval_s: float = Field(
        0.2, ge=0, description="a plate whose text is settled is looked at this often (below tracker.emit_delay_s)"
    )


class AlertsConfig(StrictModel):
    # command run on a local hot-list hit, e.g. ["aplay", "/usr/share/sounds/alert.wav"];
    # the alert is passed as JSON on stdin
    command: list[str] | None = None
    # a command still running after this is killed (with what it started)
    timeout_s: float = Field(5.0, gt=0, le=300)
    # commands run at the same time, off the pipeline thread
    workers: int = Field(2, ge=1, le=16)
    # alerts waiting for a worker; beyond this a new one is dropped and counted
    max_pending: int = Field(16, ge=1, le=1024)


class HotListConfig(StrictModel):
    """Local copy of the hot lists (kept current from the hub), matched against every read."""

    enabled: bool = True
    # default: <state_dir>/hotlist.sqlite
    path: str | None = None
    # a copy not confirmed current for this long is reported by the self-check (policy 4.1)
    max_age_s: float = Field(8 * 3600.0, gt=0)


class SelfCheckConfig(StrictModel):
    camera_timeout_s: float = Field(30.0, gt=0)
    min_free_disk_bytes: int = Field(512 * 1024**2, ge=0)
    max_clock_skew_s: float = Field(2.0, gt=0)


class ModelRolloutConfig(StrictModel):
    """Model releases from the hub (ModelReleaseService): checked with the release key this unit
    trusts, self-tested on the release's samples, watched against the unit's own read rate."""

    enabled: bool = True
    # Public key (PEM) of the release key; without it the unit runs no release (it reports why).
    release_key_file: Path | None = None
    # Read rate (reads per processed frame) compared over this many frames before and after a switch.
    rate_window_frames: int = Field(600, ge=10)
    # Switch back when the rate falls by more than this share of the baseline...
    max_read_rate_drop: float = Field(0.5, gt=0, le=1)
    # ...and the baseline had at least this many reads (too few say nothing).
    min_baseline_reads: int = Field(10, ge=1)
    # A download that fails is resumed from the bytes already on disk, at most this many times.
    download_attempts: int = Field(20, ge=1)


class FleetLinkConfig(StrictModel):
    """Central configuration (FleetConfigService): the hub's overlays for this unit's groups and
    for the unit itself apply on top of this file. Local-only: never set by the hub."""

    enabled: bool = True
    # The unit's groups, in the order their overlays apply (e.g. [patrol, district-3]).
    groups: list[str] = Field(default_factory=list)
    # How often the node looks for an edit of its own configuration file (0: never).
    local_file_check_s: float = Field(2.0, ge=0)
    models: ModelRolloutConfig = Field(default_factory=ModelRolloutConfig)

    @field_validator("groups")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for g in v:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", g):
                raise ValueError(f"group {g!r}: letters, digits and . _ : - only (at most 64)")
        return v


class NodeConfig(StrictModel):
    node_id: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
    kind: Literal["FIXED", "MOBILE"] = "FIXED"
    state_dir: str = ".run/node"
    cameras: list[CameraConfig] = Field(min_length=1)
    location: LocationConfig | None = None
    gps: GpsConfig | None = None
    hub: HubLinkConfig = Field(default_factory=HubLinkConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    plate_formats: PlateFormatsConfig = Field(default_factory=PlateFormatsConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    gating: GatingConfig = Field(default_factory=GatingConfig)
    # detector / OCR / state models: see node/recognition/loading.py (RecognizerConfig)
    recognizer: dict[str, Any] = Field(default_factory=dict)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    hotlist: HotListConfig = Field(default_factory=HotListConfig)
    self_check: SelfCheckConfig = Field(default_factory=SelfCheckConfig)
    fleet: FleetLinkConfig = Field(default_factory=FleetLinkConfig)
    # Loopback unless configured (a Prometheus elsewhere: 0.0.0.0 or an address).
    metrics_host: str = "127.0.0.1"
    # 0 picks a free port; -1 disables
    metrics_port: int = Field(9102, ge=-1, le=65535)
    # Development only: the hub link may be plain text and without the node's certificate.
    # Logged loudly at start; without it the node refuses to start so.
    insecure_dev: bool = False

    def security_problems(self) -> list[str]:
        """Why this node may not start (empty: it may): mutual TLS to the hub unless ``insecure_dev``."""
        if self.insecure_dev:
            return []
        if not self.hub.tls_ca_file:
            return [
                "hub.tls_ca_file is empty: reads would go to the hub in plain text, without the node's certificate "
                "(set hub.tls_ca_file, tls_cert_file and tls_key_file: alpr certs issue NODE_ID), "
                "or insecure_dev: true for development"
            ]
        if not (self.hub.tls_cert_file and self.hub.tls_key_file):
            return [
                "hub.tls_cert_file and hub.tls_key_file are required: the node's certificate, which a secured hub "
                "asks for (alpr certs issue NODE_ID), or insecure_dev: true for development"
            ]
        return []

    def insecure_parts(self) -> list[str]:
        """What is switched off (for the loud start-up warning of an ``insecure_dev`` node)."""
        if not self.hub.tls_ca_file:
            return ["TLS to the hub"]
        return [] if self.hub.tls_cert_file and self.hub.tls_key_file else ["the node's certificate (mutual TLS)"]

    @model_validator(mode="after")
    def _position_source(self) -> NodeConfig:
        if self.kind == "FIXED":
            missing = [c.camera_id for c in self.cameras if c.location is None and self.location is None]
            if missing:
                raise ValueError(f"a FIXED node needs `location` (or a location per camera); missing for {missing}")
        elif self.gps is None:
            raise ValueError("a MOBILE node needs `gps.source` (file:PATH, serial:DEVICE or gpsd:HOST:PORT)")
        if self.gating.settled_interval_s >= self.tracker.emit_delay_s:
            raise ValueError(
                "gating.settled_interval_s must be below tracker.emit_delay_s, or a followed plate is read twice"
            )
        ids = [c.camera_id for c in self.cameras]
        if len(ids) != len(set(ids)):
            raise ValueError(f"camera_id values must be unique: {ids}")
        return self

    @model_validator(mode="after")
    def _recognizer_settings(self) -> NodeConfig:
        try:
            from node.recognition.loading import RecognizerConfig
        except ImportError:  # models package not installed: checked when the node starts
            return self
        RecognizerConfig.model_validate(self.recognizer)
        return self

    def hotlist_path(self) -> Path:
        return Path(self.hotlist.path) if self.hotlist.path else Path(self.state_dir) / "hotlist.sqlite"

    def queue_path(self) -> Path:
        return Path(self.queue.path) if self.queue.path else Path(self.state_dir) / "queue.sqlite"


ENV_PREFIX = "ALPR_NODE"


def load_node_config(path: str | Path | None) -> NodeConfig:
    return load_config(NodeConfig, path, ENV_PREFIX)
