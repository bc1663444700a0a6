"""The node's side of model rollouts: fetch, check, self-test, switch, and switch back.

The hub tells the unit which release to run on its configuration stream
(:class:`node.fleet_config.FleetConfigSync`). :class:`ModelManager` works on it in its own
thread: it fetches the release (:class:`ReleaseClient`: the signed manifest first, then each
file in chunks, resuming from the bytes already on disk after a lost link), checks every file's
size and SHA-256 and the manifest's signature with the release key this unit trusts, runs the
release on its bundled sample images (each must read as the manifest says), and only then
asks the runtime to switch (the runtime finishes its open tracks with the old models first, so
every read carries the models it was read with). The previous release stays on disk; the unit
switches back to it by itself when the read rate over the next frames falls by more than the
configured share against its own baseline. Releases live in ``<state_dir>/models/``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import cv2
import grpc
from alpr.v1 import fleet_models_pb2, fleet_models_pb2_grpc

from alpr_common.model_release import (
    MANIFEST,
    SIGNATURE,
    Manifest,
    ReleaseError,
    check_folder,
    load_public_key,
    parse_manifest,
    verify,
)
from alpr_common.plates import normalize_plate
from alpr_common.retry import Backoff
from node.config import ModelRolloutConfig
from node.recognition.loading import RecognizerConfig
from node.recognition.types import FrameRecognizer, Image

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
RUNNING = fleet_models_pb2.NODE_MODEL_STATE_RUNNING
DOWNLOADING = fleet_models_pb2.NODE_MODEL_STATE_DOWNLOADING
FAILED = fleet_models_pb2.NODE_MODEL_STATE_FAILED
WAITING = fleet_models_pb2.NODE_MODEL_STATE_WAITING
_ROLE_PATHS = {"detector": "detector_path", "ocr": "ocr_model_path", "plate_config": "plate_config_path"}


class ModelHost(Protocol):
    """What the manager needs of the runtime."""

    def swap_recognizer(self, recognizer: FrameRecognizer, release: str) -> None: ...

    def read_counts(self) -> tuple[int, int]:
        """Frames processed and reads emitted since the start."""
        ...


Loader = Callable[[RecognizerConfig], FrameRecognizer]


def recognizer_config(base: dict[str, Any], folder: Path | None, manifest: Manifest | None) -> RecognizerConfig:
    """The unit's recognizer settings with the release's model files in place of its own."""
    data = dict(base)
    if folder is not None and manifest is not None:
        for role, key in _ROLE_PATHS.items():
            f = manifest.by_role(role)
            if f is not None:
                data[key] = str(folder / f.name)
    return RecognizerConfig.model_validate(data)


def self_test(recognizer: FrameRecognizer, folder: Path, manifest: Manifest) -> str | None:
    """None when the samples read as the manifest says (at least its share of plates), else why not."""
    expected = found = 0
    missed: list[str] = []
    for s in manifest.samples:
        image = cast(Image | None, cv2.imread(str(folder / s.file)))
        if image is None:
            return f"self-test: sample {s.file} cannot be decoded"
        read = {normalize_plate(r.text) for r in recognizer.recognize(image) if r.text}
        for plate in s.plates:
            expected += 1
            if normalize_plate(plate) in read:
                found += 1
            else:
                missed.append(f"{s.file}: {plate} (read {', '.join(sorted(read)) or 'nothing'})")
    if found < manifest.min_share * expected:
        return f"self-test failed: {found} of {expected} sample plates read as the manifest says; missed " + "; ".join(
            missed[:5]
        )
    return None


def rate_drop(
    baseline: tuple[int, int], after: tuple[int, int], settings: ModelRolloutConfig
) -> str | None:  # fmt: skip
    """Why the read rate after a switch is too low against the baseline ((frames, reads) each), or None."""
    bf, br = baseline
    af, ar = after
    if bf <= 0 or af <= 0 or br < settings.min_baseline_reads:
        return None
    before, now = br / bf, ar / af
    if now < before * (1 - settings.max_read_rate_drop):
        return (
            f"read rate fell from {before:.3f} to {now:.3f} reads per frame over {af} frames "
            f"(more than {settings.max_read_rate_drop:.0%} below this unit's baseline)"
        )
    return None


class LinkLost(Exception):
    """A download stream ended before the file's end: resume it."""


class HubUnreachable(Exception):
    """Every attempt to reach a hub failed: try again later (not the release's fault)."""


class ReleaseClient:
    """Fetches a release from the hubs: manifest, then files in chunks, resuming after a lost link."""

    def __init__(
        self, targets: list[str], credentials: grpc.ChannelCredentials | None, backoff: Backoff, attempts: int
    ) -> None:
        self.targets = targets
        self.credentials = credentials
        self.backoff = backoff
        self.attempts = attempts
        self.resumed_at: list[int] = []  # offsets downloads resumed from (after a lost link)
        self._i = 0

    def _stub(self) -> tuple[grpc.Channel, fleet_models_pb2_grpc.ModelReleaseServiceStub]:
        target = self.targets[self._i % len(self.targets)]
        ch = grpc.secure_channel(target, self.credentials) if self.credentials else grpc.insecure_channel(target)
        return ch, fleet_models_pb2_grpc.ModelReleaseServiceStub(ch)

    def _retrying(self, what: str, fn: Callable[[fleet_models_pb2_grpc.ModelReleaseServiceStub], Any]) -> Any:
        last = ""
        for attempt in range(self.attempts):
            ch, stub = self._stub()
            try:
                with ch:
                    return fn(stub)
            except LinkLost as e:
                last = str(e)
                log.warning("%s: %s; resuming", what, last)
            except grpc.RpcError as e:
                code = e.code()
                last = f"{code.name}: {e.details()}"
                if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED,
                            grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED):  # fmt: skip
                    raise ReleaseError(f"{what}: {last}") from None
                log.warning("%s failed (%s); retrying", what, last)
            self._i += 1
            time.sleep(self.backoff.delay(attempt))
        raise HubUnreachable(f"{what}: no answer after {self.attempts} attempts ({last})")

    def manifest(self, release_id: str) -> tuple[bytes, bytes]:
        req = fleet_models_pb2.GetReleaseRequest(release_id=release_id)
        resp = self._retrying(f"release {release_id}", lambda s: s.GetRelease(req, timeout=30))
        return bytes(resp.release.manifest_json), bytes(resp.release.signature)

    def fetch_file(self, release_id: str, name: str, size: int, part: Path, stop: threading.Event) -> None:
        """Append ``name`` to ``part`` until it has ``size`` bytes, resuming from what is there."""

        def pull(stub: fleet_models_pb2_grpc.ModelReleaseServiceStub) -> None:
            have = part.stat().st_size if part.exists() else 0
            if have:
                self.resumed_at.append(have)
            if have >= size:
                return
            with part.open("ab") as out:
                req = fleet_models_pb2.DownloadRequest(release_id=release_id, file=name, offset=have)
                for chunk in stub.Download(req, timeout=600):
                    if stop.is_set():
                        raise ReleaseError("stopping")
                    if chunk.offset != have:
                        raise ReleaseError(f"{name}: the hub sent byte {chunk.offset}, expected {have}")
                    out.write(chunk.data)
                    out.flush()
                    have += len(chunk.data)
            if have != size:
                raise LinkLost(f"{name}: the stream ended at byte {have} of {size}")

        self._retrying(f"download of {name} from release {release_id}", pull)


@dataclass
class Assignment:
    release: str
    paused: bool
    # The hub's rollout version this assignment follows (a later one is the operator's new word).
    rollout_version: int = 0


class ModelManager:
    """The unit's releases: which one runs, the previous one, and the work of switching."""

    def __init__(
        self,
        state_dir: Path,
        settings: ModelRolloutConfig,
        recognizer_settings: dict[str, Any],
        client: ReleaseClient | None,
        loader: Loader | None = None,
    ) -> None:
        self.root = Path(state_dir) / "models"
        self.root.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.base = recognizer_settings
        self.client = client
        if loader is None:
            from node.recognition.loading import load_recognizer

            loader = load_recognizer
        self.loader = loader
        self.host: ModelHost | None = None
        self.on_report: Callable[[fleet_models_pb2.ModelReport], None] | None = None
        self.last_report: fleet_models_pb2.ModelReport | None = None
        saved = self._load_state()
        self.current: str = saved.get("current", "")
        self.previous: str = saved.get("previous", "")
        self.failed: dict[str, str] = dict(saved.get("failed", {}))
        # The rollout version under which each failed release failed: it is tried again only when
        # the hub issues a later, unpaused rollout of it (an operator's decision, not a loop).
        self.failed_at: dict[str, int] = {k: int(v) for k, v in saved.get("failed_at", {}).items()}
        self.error = ""
        self._assigned: Assignment | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._history: deque[tuple[int, int]] = deque(maxlen=4096)
        self._probation: tuple[str, str, tuple[int, int], tuple[int, int]] | None = None  # new, old, baseline, start

    # -- state ---------------------------------------------------------------------------

    def _load_state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / STATE_FILE).read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save(self) -> None:
        tmp = self.root / (STATE_FILE + ".tmp")
        state = {"current": self.current, "previous": self.previous, "failed": self.failed, "failed_at": self.failed_at}
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.root / STATE_FILE)

    def _trusted(self) -> list[Any]:
        path = self.settings.release_key_file
        if path is None:
            raise ReleaseError("no release key is trusted on this unit: set fleet.models.release_key_file")
        return [load_public_key(Path(path))]

    def checked(self, release_id: str) -> tuple[Path, Manifest]:
        """A release on disk, checked again (signature, every file's size and hash)."""
        folder = self.root / release_id
        raw = (folder / MANIFEST).read_bytes()
        verify(raw, (folder / SIGNATURE).read_bytes(), self._trusted())
        manifest = parse_manifest(raw)
        if manifest.release_id != release_id:
            raise ReleaseError(f"release folder {release_id} holds release {manifest.release_id}")
        check_folder(folder, manifest)
        return folder, manifest

    def load(self, release_id: str) -> FrameRecognizer:
        """A recognizer for a release ("" : the unit's own models)."""
        if not release_id:
            return self.loader(recognizer_config(self.base, None, None))
        folder, manifest = self.checked(release_id)
        return self.loader(recognizer_config(self.base, folder, manifest))

    def load_current(self) -> FrameRecognizer:
        """At start-up: the release the unit ran, or (when it no longer checks) its own models."""
        if self.current:
            try:
                return self.load(self.current)
            except (OSError, ReleaseError) as e:
                self.error = f"release {self.current} no longer checks ({e}); running this unit's own models"
                log.error("%s", self.error)
                self.current = ""
                self._save()
        return self.load("")

    # -- the hub's word ------------------------------------------------------------------

    def assign(self, release_id: str, paused: bool, rollout_version: int = 0) -> None:
        self._assigned = Assignment(release_id, paused, rollout_version)
        self._wake.set()

    def _report(self, release: str, state: int, error: str = "") -> None:
        msg = fleet_models_pb2.ModelReport(
            release_id=release,
            state=state,  # type: ignore[arg-type]
            error=error[:2000],
            running_release_id=self.current,
        )
        if msg == self.last_report:
            return
        self.last_report = msg
        if self.on_report is not None:
            self.on_report(msg)

    # -- the worker ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-releases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._watch_rate()
                a = self._assigned
                if a is not None:
                    self._follow(a)
            except Exception as e:
                log.exception("model release work failed")
                self.error = f"{type(e).__name__}: {e}"

    def _follow(self, a: Assignment) -> None:
        if a.release == self.current:
            self._report(a.release, RUNNING)
            return
        if a.release in self.failed and not a.paused and a.rollout_version > self.failed_at.get(a.release, 0):
            log.info(
                "trying release %s again: the hub rolled it out again (rollout %d) after it failed here: %s",
                a.release, a.rollout_version, self.failed[a.release],
            )  # fmt: skip
            self._forget_failure(a.release)
        if a.release in self.failed:
            self._report(a.release, FAILED, self.failed[a.release])
            return
        if a.paused:
            self._report(a.release, WAITING, "the rollout is paused")
            return
        try:
            if a.release and a.release != self.previous:
                self._report(a.release, DOWNLOADING)
                self.fetch(a.release)
            recognizer = self.load(a.release)
            if a.release:
                folder, manifest = self.checked(a.release)
                problem = self_test(recognizer, folder, manifest)
                if problem:
                    raise ReleaseError(problem)
        except HubUnreachable as e:
            self._report(a.release, DOWNLOADING, str(e))  # resumed from the bytes on disk at the next try
            return
        except Exception as e:  # a release that cannot be fetched intact, loaded or self-tested
            if self._stop.is_set():
                return
            reason = f"release {a.release or '(own models)'} not switched to: {e}"
            log.error("%s; keeping %s", reason, self.current or "this unit's own models")
            self._fail(a.release, reason, a.rollout_version)
            return
        old = self.current
        self._switch(recognizer, a.release)
        if a.release:
            self._probation = (a.release, old, self._baseline(), self._counts())
        self._report(a.release, RUNNING)

    def _switch(self, recognizer: FrameRecognizer, release: str) -> None:
        if self.host is not None:
            self.host.swap_recognizer(recognizer, release)
        if release != self.current:
            self.previous, self.current = self.current, release
        self.error = ""
        self._save()
        self._prune()
        log.info("models switched to %s (previous: %s)", release or "own models", self.previous or "own models")

    def _prune(self) -> None:
        keep = {self.current, self.previous, STATE_FILE, STATE_FILE + ".tmp"}
        for p in self.root.iterdir():
            name = p.name.removesuffix(".part")
            if name not in keep and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)

    def fetch(self, release_id: str) -> None:
        if (self.root / release_id / MANIFEST).exists():
            try:
                self.checked(release_id)
                return
            except (OSError, ReleaseError):
                shutil.rmtree(self.root / release_id, ignore_errors=True)
        if self.client is None:
            raise ReleaseError("no hub to download from")
        raw, signature = self.client.manifest(release_id)
        verify(raw, signature, self._trusted())  # refuse an unsigned or tampered manifest before any download
        manifest = parse_manifest(raw)
        if manifest.release_id != release_id:
            raise ReleaseError(f"the hub's release {release_id} is named {manifest.release_id} in its manifest")
        part = self.root / f"{release_id}.part"
        part.mkdir(parents=True, exist_ok=True)
        (part / MANIFEST).write_bytes(raw)
        (part / SIGNATURE).write_bytes(signature)
        for f in manifest.files:
            target = part / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() and target.stat().st_size > f.size:
                target.unlink()
            self.client.fetch_file(release_id, f.name, f.size, target, self._stop)
        try:
            check_folder(part, manifest)
        except ReleaseError:
            shutil.rmtree(part, ignore_errors=True)  # corrupt on the hub: start over next time
            raise
        os.replace(part, self.root / release_id)

    # -- read rate -----------------------------------------------------------------------

    def _counts(self) -> tuple[int, int]:
        return self.host.read_counts() if self.host is not None else (0, 0)

    def _baseline(self) -> tuple[int, int]:
        """Frames and reads of the last ``rate_window_frames`` frames before now."""
        frames, reads = self._counts()
        window = self.settings.rate_window_frames
        for f, r in reversed(self._history):
            if frames - f >= window:
                return frames - f, reads - r
        if self._history:
            f, r = self._history[0]
            return frames - f, reads - r
        return 0, 0

    def _watch_rate(self) -> None:
        now = self._counts()
        if not self._history or self._history[-1] != now:
            self._history.append(now)
        if self._probation is None:
            return
        new, old, baseline, start = self._probation
        after = (now[0] - start[0], now[1] - start[1])
        if new != self.current:
            self._probation = None
            return
        if after[0] < self.settings.rate_window_frames:
            return
        self._probation = None
        problem = rate_drop(baseline, after, self.settings)
        if problem is None:
            return
        reason = f"release {new} switched back to {old or 'own models'}: {problem}"
        log.error("%s", reason)
        self._switch(self.load(old), old)
        self._fail(new, reason, self._assigned.rollout_version if self._assigned is not None else 0)

    def _fail(self, release: str, reason: str, rollout_version: int) -> None:
        self.failed[release] = reason
        self.failed_at[release] = rollout_version
        self._save()
        self._report(release, FAILED, reason)

    def _forget_failure(self, release: str) -> None:
        self.failed.pop(release, None)
        self.failed_at.pop(release, None)
        self._save()

    def status(self) -> dict[str, Any]:
        return {"running": self.current, "previous": self.previous, "error": self.error}
