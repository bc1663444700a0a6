"""The edge-node process: cameras → detect → OCR → track → one read per vehicle →
durable queue → hub. Also heartbeats, self-check, metrics and local hot-list alerts."""

from __future__ import annotations

import contextlib
import json
import logging
import queue as stdqueue
import re
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

import cv2
from alpr.v1 import ingest_pb2, reads_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import CollectorRegistry

from alpr_common.config import refuse_insecure
from alpr_common.lifecycle import metrics_endpoint
from alpr_common.plates import normalize_plate
from alpr_common.retry import Backoff
from node.alert_hooks import AlertHooks
from node.config import CameraConfig, NodeConfig
from node.fleet_config import ConfigManager, FleetConfigSync
from node.fleet_overlay import changed_paths, runtime_changeable
from node.gps import GpsReader
from node.hotlist_sync import HotListSync
from node.metrics import NodeMetrics
from node.model_releases import ModelManager, ReleaseClient
from node.motion_gate import GateSettings, MotionGate
from node.queue import ReadQueue
from node.recognition.types import FrameRecognizer, Image, PlateResult
from node.shift import damage_problem, damage_report, on_shift
from node.sources import Frame, SourceError, describe, open_source
from node.tracker import FinishedTrack, PlateTracker, TrackerSettings
from node.uplink import Uplink, UplinkSettings

log = logging.getLogger(__name__)
SOFTWARE_VERSION = "0.1.0"
# Reads kept in memory for tests and the status view: a node runs for months, so only the last few.
RECENT_READS = 16


# A local matcher: (plate, state) -> list of hit descriptions (dicts), empty when no hit.
LocalMatcher = Callable[[str, str | None], list[dict[str, Any]]]


@dataclass
class CameraState:
    config: CameraConfig
    frames: stdqueue.Queue[Frame | None]
    live: bool
    tracker: PlateTracker
    gate: MotionGate | None = None
    last_frame_wall: float = 0.0
    frames_since_heartbeat: int = 0
    finished: bool = False
    error: str | None = None


@dataclass
class EmittedRead:
    """What the node made of one vehicle pass (the last ``RECENT_READS`` are kept in memory)."""

    read: reads_pb2.PlateRead
    hits: list[dict[str, Any]] = field(default_factory=list)


class PlateFormats:
    """Per-jurisdiction regexes; a plate matching none of them is junk."""

    def __init__(self, patterns: dict[str, list[str]], enabled: bool = True) -> None:
        self.enabled = enabled
        self.by_region = {k.upper(): [re.compile(p) for p in v] for k, v in patterns.items()}

    def accepts(self, text: str, region: str | None) -> bool:
        if not self.enabled:
            return True
        if region and region.upper() in self.by_region:
            return any(p.search(text) for p in self.by_region[region.upper()])
        return any(p.search(text) for pats in self.by_region.values() for p in pats)


def encode_jpeg(img: Image, quality: int, max_width: int | None = None) -> bytes:
    if max_width and img.shape[1] > max_width:
        scale = max_width / img.shape[1]
        img = cast(
            Image, cv2.resize(img, (max_width, max(1, round(img.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        )
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buf)


class NodeRuntime:
    """Wires the parts; ``start()``, then ``stop()`` (or ``run_until_sources_end()``)."""

    def __init__(
        self,
        config: NodeConfig,
        recognizer: FrameRecognizer | None = None,
        registry: CollectorRegistry | None = None,
        local_matcher: LocalMatcher | None = None,
        hotlist_version: Callable[[], tuple[int, float | None]] | None = None,
        fleet: ConfigManager | None = None,
        models: ModelManager | None = None,
    ) -> None:
        """``models``: the unit's model releases (made here when ``recognizer`` is None and
        ``fleet.models`` is enabled); ``recognizer`` then comes from the release it runs."""
        # Central configuration: the hub's overlay on the node's own settings (last good one).
        if fleet is None and config.fleet.enabled:
            fleet = ConfigManager.from_config(config)
        if fleet is not None:
            config = fleet.current
        self.fleet = fleet
        # Set (with the configuration to restart on) when a change cannot be applied in place.
        self.restart_needed = threading.Event()
        self.restart_config: NodeConfig | None = None
        self._apply_lock = threading.Lock()
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = NodeMetrics(self.registry)
        h = config.hub
        # Mutual TLS: the uplink, the hot-list sync and the fleet link present the same client certificate.
        credentials = h.credentials()
        m = config.fleet.models
        if models is None and recognizer is None and config.fleet.enabled and m.enabled:
            client = ReleaseClient(h.targets, credentials, Backoff(h.backoff_initial_s, h.backoff_max_s),
                                   m.download_attempts)  # fmt: skip
            models = ModelManager(Path(config.state_dir), m, dict(config.recognizer), client)
        self.models = models
        if recognizer is None and models is not None:
            recognizer = models.load_current()
        if recognizer is None:
            from node.recognition.loading import RecognizerConfig, load_recognizer

            recognizer = load_recognizer(RecognizerConfig.model_validate(config.recognizer))
        self.recognizer = recognizer
        self.release = models.current if models is not None else ""
        self._swap: tuple[FrameRecognizer, str, threading.Event] | None = None
        self._swap_lock = threading.Lock()
        self.frames_total = 0
        # a recognizer that detects in regions lets the motion gate spare the detector where nothing moved
        self._can_gate = recognizer.supports_regions and config.gating.enabled
        self.versions = {**recognizer.versions(), "release": self.release}
        # Closes, in reverse order, what the node opened (queue and hot-list files here;
        # metrics endpoint, GPS, hot-list sync, uplink and threads in start()).
        self._resources = contextlib.ExitStack()
        with self._resources as opened:
            self.hotlist: HotListSync | None = None
            if local_matcher is None and config.hotlist.enabled:
                self.hotlist = HotListSync(
                    config.hotlist_path(), h.targets, config.node_id,
                    backoff=Backoff(h.backoff_initial_s, h.backoff_max_s), credentials=credentials,
                )  # fmt: skip
                opened.callback(self.hotlist.stop)
                local_matcher = self._match_hotlist
                hotlist_version = self._hotlist_version
            self.local_matcher = local_matcher
            self.hotlist_version = hotlist_version
            self.kind = reads_pb2.NODE_KIND_FIXED if config.kind == "FIXED" else reads_pb2.NODE_KIND_MOBILE
            Path(config.state_dir).mkdir(parents=True, exist_ok=True)
            self.queue = ReadQueue(
                config.queue_path(), config.queue.budget_bytes, on_evict=lambda n: self.metrics.queue_evicted.inc(n)
            )
            opened.callback(self.queue.close)
            uplink_settings = UplinkSettings(
                h.targets, h.window, h.heartbeat_interval_s, backoff=Backoff(h.backoff_initial_s, h.backoff_max_s)
            )
            self.uplink = Uplink(uplink_settings, self.queue, self.heartbeat, self.metrics, credentials=credentials)
            self.fleet_sync: FleetConfigSync | None = None
            if fleet is not None and config.fleet.enabled:
                self.fleet_sync = FleetConfigSync(
                    fleet, h.targets, config.node_id, config.fleet.groups,
                    backoff=Backoff(h.backoff_initial_s, h.backoff_max_s), credentials=credentials,
                    models=models,
                )  # fmt: skip
            self._resources = opened.pop_all()
        self.gps = GpsReader(config.gps.source, config.gps.max_age_s) if config.gps else None
        self.formats = PlateFormats(config.plate_formats.patterns, config.plate_formats.enabled)
        t = config.tracker
        settings = TrackerSettings(**t.model_dump())
        gate = GateSettings(**config.gating.model_dump())
        self.cameras = [
            CameraState(
                c,
                stdqueue.Queue(maxsize=4),
                describe(c.source) == "stream",
                PlateTracker(settings),
                MotionGate(gate) if self._can_gate else None,
            )
            for c in config.cameras
        ]
        # the last reads only; the queue holds every read until the hub has it
        self.emitted: deque[EmittedRead] = deque(maxlen=RECENT_READS)
        self.reads_emitted = 0
        a = config.alerts
        self.alert_hooks: AlertHooks | None = None
        if a.command:
            self.alert_hooks = AlertHooks(
                a.command, a.timeout_s, a.workers, a.max_pending,
                on_drop=self.metrics.alert_hooks_dropped.inc, on_failure=self.metrics.alert_hook_failures.inc,
            )  # fmt: skip
            self._resources.callback(self.alert_hooks.stop)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.metrics_port: int | None = None
        self.detector_ok = True
        self.detector_error: str | None = None
        self.last_detection_ok = time.time()
        self._all_sources_done = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> NodeRuntime:
        """Start serving; if any step fails, everything opened so far is closed and the error raised.

        Refused (:class:`~alpr_common.config.InsecureConfigError`) without mutual TLS to the hub
        unless the config says ``insecure_dev: true``."""
        cfg = self.config
        refuse_insecure(
            "node", cfg.security_problems(), cfg.insecure_dev, cfg.insecure_parts(),
            "Reads, images and the hot list travel in plain text, and a hub that checks certificates refuses "
            "this node.", log,
        )  # fmt: skip
        with self._resources as stack:
            stack.callback(self._write_status)  # the last status, once the parts below have stopped
            if self.config.metrics_port >= 0:
                self.metrics_port = stack.enter_context(
                    metrics_endpoint(self.config.metrics_port, self.config.metrics_host, self.registry)
                )
            if self.gps:
                self.gps.start()
                stack.callback(self.gps.stop)
            if self.hotlist:
                self.hotlist.start()  # its stop() is registered since it was opened
            self.uplink.start()
            stack.callback(self.uplink.stop)
            if self.fleet is not None:
                self.fleet.applier = self.apply_config
                stack.callback(setattr, self.fleet, "applier", None)
            if self.models is not None:
                self.models.host = self
                self.models.start()
                stack.callback(self.models.stop)
            if self.fleet_sync is not None:
                self.fleet_sync.start()
                stack.callback(self.fleet_sync.stop)
            stack.callback(self._join_threads)
            for cam in self.cameras:
                self._spawn(f"camera-{cam.config.camera_id}", self._capture, cam)
            self._spawn("pipeline", self._process)
            self._spawn("status", self._status_loop)
            self._resources = stack.pop_all()
        log.info("node %s (%s) started with %d camera(s)", self.config.node_id, self.config.kind, len(self.cameras))
        return self

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        th = threading.Thread(target=target, args=args, name=name, daemon=True)
        th.start()
        self._threads.append(th)

    def wait_sources_done(self, timeout: float | None = None) -> bool:
        """For finite sources (files): True once every frame was processed and tracks flushed."""
        return self._all_sources_done.wait(timeout)

    def _join_threads(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(10)

    def stop(self, drain_s: float = 5.0) -> None:
        """Stop cameras, flush trackers into the queue, give the uplink ``drain_s`` to send, close."""
        self._join_threads()
        deadline = time.time() + drain_s
        while self.queue.depth() and self.uplink.connected and time.time() < deadline:
            time.sleep(0.05)
        self._resources.close()  # uplink, hot-list sync, GPS, metrics endpoint, status, queue

    # -- cameras ---------------------------------------------------------------------------

    def _capture(self, cam: CameraState) -> None:
        c = cam.config
        decode = self.metrics.stage_seconds.labels("decode")
        try:
            frames = open_source(c.source, lambda: cam.config.max_fps, c.loop, self._stop)
            while True:
                t0 = time.perf_counter()
                frame = next(frames, None)
                if frame is None:
                    break
                decode.inc(time.perf_counter() - t0)
                self.metrics.frames_in.labels(c.camera_id).inc()
                cam.last_frame_wall = time.time()
                cam.frames_since_heartbeat += 1
                if cam.live:
                    # live: the newest frame wins, processing must not lag behind reality
                    if cam.frames.full():
                        try:
                            cam.frames.get_nowait()
                            self.metrics.frames_dropped.labels(c.camera_id).inc()
                        except stdqueue.Empty:
                            pass
                    cam.frames.put_nowait(frame)
                else:
                    while not self._stop.is_set():
                        try:
                            cam.frames.put(frame, timeout=0.2)
                            break
                        except stdqueue.Full:
                            continue
        except SourceError as e:
            cam.error = str(e)
            log.error("camera %s: %s", c.camera_id, e)
        finally:
            self._end_of_source(cam)

    def _end_of_source(self, cam: CameraState) -> None:
        """Tell the pipeline this camera ended without ever blocking on a full frame queue.

        While running, the marker waits for room (no frame of a file is skipped); once the
        node is stopping, the pipeline may already be gone, so frames make room for it.
        """
        while True:
            try:
                cam.frames.put(None, timeout=0.2)
                return
            except stdqueue.Full:
                if self._stop.is_set():
                    with contextlib.suppress(stdqueue.Empty):
                        cam.frames.get_nowait()

    # -- pipeline --------------------------------------------------------------------------

    def swap_recognizer(self, recognizer: FrameRecognizer, release: str, timeout: float = 60.0) -> None:
        """Run ``recognizer`` (of model release ``release``) from the next frame on. The open
        tracks finish with the models that saw them first, so every read carries the versions
        it was read with."""
        done = threading.Event()
        with self._swap_lock:
            self._swap = (recognizer, release, done)
        if not any(th.name == "pipeline" and th.is_alive() for th in self._threads):
            self._apply_swap()
        if not done.wait(timeout):
            self._apply_swap()  # the pipeline is stuck on a frame: swap from here

    def _apply_swap(self) -> None:
        with self._swap_lock:
            pending, self._swap = self._swap, None
            if pending is None:
                return
            recognizer, release, done = pending
            for cam in self.cameras:
                if not cam.finished:
                    self._emit(cam, cam.tracker.flush())
            self.recognizer, self.release = recognizer, release
            self.versions = {**recognizer.versions(), "release": release}
            self._can_gate = recognizer.supports_regions and self.config.gating.enabled
            log.info("now reading with %s (%s)", release or "this unit's own models", self.versions)
        done.set()

    def read_counts(self) -> tuple[int, int]:
        return self.frames_total, self.reads_emitted

    def _process(self) -> None:
        active = list(self.cameras)
        while active and not self._stop.is_set():
            if self._swap is not None:
                self._apply_swap()
            idle = True
            for cam in list(active):
                try:
                    frame = cam.frames.get(timeout=0.02)
                except stdqueue.Empty:
                    continue
                idle = False
                if frame is None:
                    self._emit(cam, cam.tracker.flush())
                    cam.finished = True
                    active.remove(cam)
                    continue
                results = self._recognize(cam, frame)
                self.frames_total += 1
                t0 = time.perf_counter()
                finished = cam.tracker.update(frame.t, results, frame)
                self.metrics.stage_seconds.labels("track").inc(time.perf_counter() - t0)
                self._emit(cam, finished)
            if idle:
                now_t = time.time()
                for cam in active:
                    if cam.live:  # vehicles leave even when no frames arrive
                        self._emit(cam, cam.tracker.update(now_t, []))
        for cam in self.cameras:
            if not cam.finished:
                self._emit(cam, cam.tracker.flush())
        self._all_sources_done.set()

    def _recognize(self, cam: CameraState, frame: Frame) -> list[PlateResult]:
        stages = self.metrics.stage_seconds
        start = time.perf_counter()
        regions = None
        if cam.gate is not None:
            plan = cam.gate.plan(frame.image, frame.t, cam.tracker.followed(frame.t))
            decision = plan.reason.split(":")[0]
            self.metrics.gate_frames.labels(cam.config.camera_id, decision).inc()
            stages.labels("gate").inc(time.perf_counter() - start)
            if plan.regions == []:  # nothing moved and nothing followed: no detector, no OCR
                self.metrics.frames_processed.labels(cam.config.camera_id).inc()
                return []
            regions = plan.regions
        try:
            skip_ocr = partial(cam.tracker.is_settled, t=frame.t)
            results = self.recognizer.recognize(frame.image, skip_ocr=skip_ocr, regions=regions)
        except Exception as e:  # a broken model must show up in the self-check, not kill the node
            self.detector_ok = False
            self.detector_error = f"{type(e).__name__}: {e}"
            log.exception("recognizer failed on camera %s", cam.config.camera_id)
            return []
        self.detector_ok = True
        self.last_detection_ok = time.time()
        timings = self.recognizer.last_timings
        detect_s = timings.detect_s if timings.detect_s is not None else time.perf_counter() - start
        self.metrics.detector_latency.observe(detect_s)
        stages.labels("detect").inc(detect_s)
        for ocr_s in timings.ocr_s:
            self.metrics.ocr_latency.observe(ocr_s)
            stages.labels("ocr").inc(ocr_s)
        self.metrics.frames_processed.labels(cam.config.camera_id).inc()
        return results

    def _emit(self, cam: CameraState, tracks: list[FinishedTrack]) -> None:
        for tr in tracks:
            text = normalize_plate(tr.text)
            if (
                not text
                or tr.confidence < self.config.plate_formats.min_confidence
                or not self.formats.accepts(text, tr.state)
            ):
                self.metrics.reads_dropped_format.labels(cam.config.camera_id).inc()
                log.debug("dropped a junk read (%d characters, confidence %.2f)", len(text), tr.confidence)
                continue
            t0 = time.perf_counter()
            read = self._make_read(cam, tr, text)  # the only place frames and crops become JPEG
            t1 = time.perf_counter()
            payload = ingest_pb2.IngestRequest(read=read).SerializeToString()
            self.queue.put(read.read_id, payload)  # durable before anything else happens
            self.metrics.stage_seconds.labels("encode").inc(t1 - t0)
            self.metrics.stage_seconds.labels("commit").inc(time.perf_counter() - t1)
            self.metrics.reads_emitted.labels(cam.config.camera_id).inc()
            hits = self._match_locally(read)
            self.emitted.append(EmittedRead(read, hits))
            self.reads_emitted += 1
            log.info(
                "read %s %s on %s (%.2f, %d frames)",
                read.read_id[:8],
                text,
                cam.config.camera_id,
                tr.confidence,
                tr.hits,
            )

    def _make_read(self, cam: CameraState, tr: FinishedTrack, text: str) -> reads_pb2.PlateRead:
        best = tr.best
        frame: Frame | None = best.frame
        res = best.result
        x1, y1, x2, y2 = res.box
        crop = res.crop
        if crop is None and frame is not None:
            crop = frame.image[max(0, y1) : y2, max(0, x1) : x2]
        imgs = self.config.images
        captured = frame.wall_time if frame else time.time()
        ts = Timestamp()
        ts.FromDatetime(datetime.fromtimestamp(captured, UTC))
        char_confs = list(tr.char_confidences) if len(tr.char_confidences) == len(text) else []
        read = reads_pb2.PlateRead(
            read_id=str(uuid.uuid4()),
            node_id=self.config.node_id,
            camera_id=cam.config.camera_id,
            node_kind=self.kind,
            capture_time=ts,
            plate_text=text,
            confidence=float(tr.confidence),
            char_confidences=char_confs,
            region=tr.state or "",
            region_confidence=float(tr.state_confidence),
            plate_box=reads_pb2.BoundingBox(x1=max(0, x1), y1=max(0, y1), x2=x2, y2=y2),
            plate_crop_jpeg=encode_jpeg(crop, imgs.crop_quality) if crop is not None and crop.size else b"",
            model_versions=reads_pb2.ModelVersions(
                detector=self.versions.get("detector", ""),
                ocr=self.versions.get("ocr", ""),
                state_classifier=self.versions.get("state_classifier", ""),
                release=self.versions.get("release", ""),
            ),
        )
        if frame is not None:
            read.frame_height, read.frame_width = frame.image.shape[:2]
            if imgs.send_frame:
                read.frame_jpeg = encode_jpeg(frame.image, imgs.frame_quality, imgs.frame_max_width)
        loc, quality, age_s = self._location(cam, captured)
        if loc is not None:
            read.location.CopyFrom(loc)
        read.location_quality, read.location_age_s = quality, age_s
        return read

    def _location(
        self, cam: CameraState, captured: float
    ) -> tuple[reads_pb2.GeoPoint | None, reads_pb2.LocationQuality.ValueType, float]:
        """Where the camera was: a fixed node's configured position, a mobile node's current
        fix, else its last known fix with its age (STALE), else nothing (NONE). A read without
        a current fix is still a read: the hub stores, matches and relays it with that quality."""
        fixed = cam.config.location or self.config.location
        if self.config.kind == "FIXED":
            if fixed is None:
                return None, reads_pb2.LOCATION_QUALITY_NONE, 0.0
            gp = reads_pb2.GeoPoint(latitude=fixed.latitude, longitude=fixed.longitude, accuracy_m=fixed.accuracy_m)
            if fixed.heading_deg is not None:
                gp.heading_deg = fixed.heading_deg
            return gp, reads_pb2.LOCATION_QUALITY_FIX, 0.0
        current = self.gps.current() if self.gps else None
        fix = current or (self.gps.last_known() if self.gps else None)
        if fix is None:
            return None, reads_pb2.LOCATION_QUALITY_NONE, 0.0
        gp = reads_pb2.GeoPoint(latitude=fix.latitude, longitude=fix.longitude, accuracy_m=fix.accuracy_m)
        if fix.heading_deg is not None:
            gp.heading_deg = fix.heading_deg
        if fix.speed_mps is not None:
            gp.speed_mps = fix.speed_mps
        age_s = max(0.0, captured - fix.time)
        return gp, reads_pb2.LOCATION_QUALITY_FIX if current else reads_pb2.LOCATION_QUALITY_STALE, age_s

    # -- central configuration -------------------------------------------------------------

    def apply_config(self, new: NodeConfig) -> str | None:
        """Apply a new effective configuration: in place when every change can be (thresholds,
        plate formats, alert hooks, camera fps caps, upload window, ...), else by asking for a
        clean restart (``restart_needed``; ``alpr-node run`` restarts on ``restart_config``).
        None when done or scheduled, else why not (the current configuration stays)."""
        with self._apply_lock:
            old = self.config
            paths = changed_paths(old.model_dump(mode="json"), new.model_dump(mode="json"))
            if not paths:
                self.config = new
                return None
            if not all(runtime_changeable(p) for p in paths):
                slow = [p for p in paths if not runtime_changeable(p)]
                log.warning("configuration change needs a restart of the node's parts (%s)", ", ".join(slow))
                self.restart_config = new
                self.restart_needed.set()
                return None
            try:
                formats = PlateFormats(new.plate_formats.patterns, new.plate_formats.enabled)
                tracker = TrackerSettings(**new.tracker.model_dump())
                hooks = self.alert_hooks
                if new.alerts != old.alerts:
                    a = new.alerts
                    hooks = None
                    if a.command:
                        hooks = AlertHooks(
                            a.command, a.timeout_s, a.workers, a.max_pending,
                            on_drop=self.metrics.alert_hooks_dropped.inc,
                            on_failure=self.metrics.alert_hook_failures.inc,
                        )  # fmt: skip
            except Exception as e:
                return f"{type(e).__name__}: {e}"
            by_id = {c.camera_id: c for c in new.cameras}
            for cam in self.cameras:
                cam.tracker.settings = tracker
                cam.config = by_id.get(cam.config.camera_id, cam.config)
            self.formats = formats
            u = self.uplink.settings
            u.window, u.heartbeat_interval_s = new.hub.window, new.hub.heartbeat_interval_s
            u.backoff = Backoff(new.hub.backoff_initial_s, new.hub.backoff_max_s)
            if hooks is not self.alert_hooks:
                old_hooks, self.alert_hooks = self.alert_hooks, hooks
                if hooks is not None:
                    self._resources.callback(hooks.stop)
                if old_hooks is not None:
                    old_hooks.stop()
            self.config = new
            log.info("configuration applied in place: %s", ", ".join(paths))
            return None

    # -- local alerts ----------------------------------------------------------------------

    def _match_hotlist(self, plate: str, state: str | None) -> list[dict[str, Any]]:
        assert self.hotlist is not None
        return [
            {
                "match": m.kind,
                "score": round(m.score, 3),
                "state_mismatch": m.state_mismatch,
                "hotlist_plate": m.entry.plate,
                "hotlist_state": m.entry.state,
                "category": m.entry.category,
                "source": m.entry.source,
                "reason": m.entry.reason,
            }
            for m in self.hotlist.match(plate, state or "")
        ]

    def _hotlist_version(self) -> tuple[int, float | None]:
        assert self.hotlist is not None
        st = self.hotlist.status()
        return st.version, st.synced_at.timestamp() if st.synced_at else None

    def _match_locally(self, read: reads_pb2.PlateRead) -> list[dict[str, Any]]:
        if self.local_matcher is None:
            return []
        hits = self.local_matcher(read.plate_text, read.region or None)
        for hit in hits:
            self.metrics.local_alerts.inc()
            alert = {"read_id": read.read_id, "plate": read.plate_text, "camera_id": read.camera_id, **hit}
            # The console line is the in-car alert of last resort: it works with no hub at all.
            print(
                f"*** HOT-LIST HIT: {read.plate_text} on {read.camera_id}: {json.dumps(hit, default=str)}", flush=True
            )
            log.warning("hot-list hit %s", alert)
            if self.alert_hooks is not None:  # run off this thread: a slow siren must not stall reading
                self.alert_hooks.submit(json.dumps(alert, default=str).encode())
        return hits

    # -- health ----------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Self-check findings; empty when healthy."""
        sc = self.config.self_check
        out: list[str] = []
        now = time.time()
        for cam in self.cameras:
            if cam.error:
                out.append(f"camera {cam.config.camera_id}: {cam.error}")
            elif not cam.finished and now - (cam.last_frame_wall or now) > sc.camera_timeout_s:
                out.append(f"camera {cam.config.camera_id}: no frames for {now - cam.last_frame_wall:.0f} s")
        if not self.detector_ok:
            out.append(f"detector failing: {self.detector_error}")
        if self.models is not None and self.models.error:
            out.append(f"models: {self.models.error}")
        damage = damage_report(self.config.state_dir)
        if damage is not None:
            out.append(damage_problem(damage))
        free = shutil.disk_usage(self.config.state_dir).free
        if free < sc.min_free_disk_bytes:
            out.append(f"disk almost full: {free // 2**20} MiB free in {self.config.state_dir}")
        skew = self.uplink.clock_skew_s
        if skew is not None and abs(skew) > sc.max_clock_skew_s:
            out.append(f"clock off by {skew:+.1f} s against the hub: check NTP/GPS time")
        if self.config.kind == "MOBILE" and self.gps and self.gps.current() is None:
            out.append("no GPS fix")
        if self.hotlist is not None:
            st = self.hotlist.status()
            age = (now - st.synced_at.timestamp()) if st.synced_at else None
            self.metrics.hotlist_version.set(st.version)
            if age is not None:
                self.metrics.hotlist_age.set(age)
            if age is None or age > self.config.hotlist.max_age_s:
                out.append(
                    f"hot list not confirmed current {'ever' if age is None else f'for {age / 3600:.1f} h'} "
                    f"(version {st.version}): connect to the hub and run alpr-node shift-start"
                )
        return out

    def heartbeat(self) -> ingest_pb2.Heartbeat:
        hb = ingest_pb2.Heartbeat(
            node_id=self.config.node_id,
            node_kind=self.kind,
            queue_depth=self.queue.depth(),
            queue_oldest_age_s=self.queue.oldest_age(),
            detector_ok=self.detector_ok,
            disk_free_bytes=shutil.disk_usage(self.config.state_dir).free,
            problems=self.problems(),
            software_version=SOFTWARE_VERSION,
        )
        hb.sent_time.FromDatetime(datetime.now(UTC))
        position = self._unit_position()
        if position is not None:
            point, measured = position
            hb.position.CopyFrom(point)
            hb.position_time.FromDatetime(datetime.fromtimestamp(measured, UTC))
        shift = on_shift(self.config.state_dir)
        if shift is not None:
            hb.shift_state = ingest_pb2.SHIFT_STATE_ON_SHIFT if shift else ingest_pb2.SHIFT_STATE_OFF_SHIFT
        for cam in self.cameras:
            problem = next((p for p in hb.problems if p.startswith(f"camera {cam.config.camera_id}:")), "")
            hb.cameras.add(
                camera_id=cam.config.camera_id,
                frames_received=cam.frames_since_heartbeat,
                ok=not problem,
                problem=problem,
            )
            cam.frames_since_heartbeat = 0
        if self.fleet is not None:
            hb.config_version, hb.config_error = self.fleet.status()
        if self.hotlist_version:
            version, synced = self.hotlist_version()
            hb.hotlist_version = version
            if synced:
                hb.hotlist_synced_time.FromDatetime(datetime.fromtimestamp(synced, UTC))
        return hb

    def _unit_position(self) -> tuple[reads_pb2.GeoPoint, float] | None:
        """Where the unit is and when that was measured: a fixed node's configured location
        (now), a mobile node's last GPS fix however old; None when there never was one."""
        if self.config.kind == "FIXED":
            fixed = self.config.location or next((c.location for c in self.config.cameras if c.location), None)
            if fixed is None:
                return None
            return reads_pb2.GeoPoint(latitude=fixed.latitude, longitude=fixed.longitude,
                                      accuracy_m=fixed.accuracy_m), time.time()  # fmt: skip
        fix = self.gps.last_known() if self.gps else None
        if fix is None:
            return None
        gp = reads_pb2.GeoPoint(latitude=fix.latitude, longitude=fix.longitude, accuracy_m=fix.accuracy_m)
        if fix.heading_deg is not None:
            gp.heading_deg = fix.heading_deg
        if fix.speed_mps is not None:
            gp.speed_mps = fix.speed_mps
        return gp, fix.time

    def status(self) -> dict[str, Any]:
        problems = self.problems()
        return {
            "node_id": self.config.node_id,
            "kind": self.config.kind,
            "time": time.time(),
            "ok": not problems,
            "problems": problems,
            "cameras": {
                c.config.camera_id: {
                    "last_frame_age_s": round(time.time() - c.last_frame_wall, 1) if c.last_frame_wall else None,
                    "finished": c.finished,
                    "error": c.error,
                }
                for c in self.cameras
            },
            "queue": {
                "depth": self.queue.depth(),
                "oldest_age_s": round(self.queue.oldest_age(), 1),
                "bytes": self.queue.size_bytes(),
            },
            "hub": {
                "connected": self.uplink.connected_target,
                "last_error": self.uplink.last_error,
                "clock_skew_s": self.uplink.clock_skew_s,
            },
            "detector_ok": self.detector_ok,
            "config": dict(zip(("version", "error"), self.fleet.status(), strict=True)) if self.fleet else None,
            "models": self.models.status() if self.models else None,
            "reads_emitted": self.reads_emitted,
            "metrics_port": self.metrics_port,
        }

    def _write_status(self) -> None:
        try:
            st = self.status()
        except Exception:  # queue closed during shutdown
            return
        self.metrics.queue_depth.set(st["queue"]["depth"])
        self.metrics.queue_oldest_age.set(st["queue"]["oldest_age_s"])
        self.metrics.self_check_ok.set(1 if st["ok"] else 0)
        path = Path(self.config.state_dir) / "status.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(st, indent=2, default=str))
        tmp.replace(path)

    def _status_loop(self) -> None:
        next_check = 0.0
        while not self._stop.wait(min(2.0, self.config.fleet.local_file_check_s or 2.0)):
            if self.fleet is not None and self.config.fleet.local_file_check_s and time.monotonic() >= next_check:
                next_check = time.monotonic() + self.config.fleet.local_file_check_s
                try:
                    self.fleet.check_local_file()
                except Exception:
                    log.exception("checking the local configuration file failed")
            self._write_status()
