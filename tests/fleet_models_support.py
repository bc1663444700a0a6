"""Model releases for tests: signed releases built from the shipped models (or a broken
detector), synthetic sample frames the shipped models read, and a TCP link that can be cut."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper

from alpr_common.model_release import build_manifest, load_private_key, sign
from node.model_releases import Loader
from node.recognition.loading import MODELS_DIR, RecognizerConfig, load_recognizer
from node.recognition.types import FrameRecognizer
from node.training.compose import paste, warp_plate
from node.training.plates import render_plate


def plate_frame(seed: int, width: int = 200) -> tuple[np.ndarray, str]:
    """A 1280x720 frame with one synthetic plate, and its text."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 180, size=(9, 16, 3), dtype=np.uint8)
    frame = cv2.resize(small, (1280, 720), interpolation=cv2.INTER_CUBIC)
    plate = render_plate(rng)
    patch, mask, _ = warp_plate(plate.image, width, rng)
    x, y = 500, 380
    cv2.rectangle(frame, (x - 40, y - 30), (x + patch.shape[1] + 40, y + patch.shape[0] + 30), (60, 60, 70), -1)
    paste(frame, patch, mask, x, y)
    return frame, plate.text


def blind_detector(path: Path) -> Path:
    """A valid detector ONNX of the shipped one's shape that never finds anything (a broken model)."""
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 5, 8400])
    zeros = helper.make_tensor("zeros", TensorProto.FLOAT, [1, 5, 8400], np.zeros(5 * 8400, np.float32))
    mul = helper.make_node("Mul", ["images_sum", "zero1"], ["scaled"])
    node_sum = helper.make_node("ReduceSum", ["images"], ["images_sum"], keepdims=0)  # a scalar
    add = helper.make_node("Add", ["zeros", "scaled"], ["output0"])
    zero1 = helper.make_tensor("zero1", TensorProto.FLOAT, [], [0.0])
    graph = helper.make_graph([node_sum, mul, add], "blind", [images], [out], [zeros, zero1])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def relabelled_ocr(path: Path, label: str) -> Path:
    """The shipped OCR with a different doc string: the same reads, a different file (and version)."""
    model = onnx.load(str(MODELS_DIR / "plate_ocr.onnx"))
    model.doc_string = f"release {label}"
    onnx.save(model, str(path))
    return path


@functools.cache
def readable_seeds(n: int = 2) -> tuple[int, ...]:
    """Seeds of synthetic plates the shipped models read exactly: a release's manifest lists
    samples its own models read, so the test releases (the shipped OCR under a new label) pass
    their self-test whatever the shipped OCR's epoch."""
    recognizer = load_recognizer(RecognizerConfig())
    found: list[int] = []
    for seed in range(1, 80):
        frame, text = plate_frame(seed)
        if text in {p.text for p in recognizer.recognize(frame)}:
            found.append(seed)
            if len(found) == n:
                return tuple(found)
    raise AssertionError(f"the shipped models read only {len(found)} of 79 synthetic sample plates exactly")


def make_release(
    folder: Path, release_id: str, key: Path, *, detector: Path | None = None, ocr: Path | None = None,
    seeds: tuple[int, ...] | None = None,
) -> tuple[bytes, bytes]:  # fmt: skip
    """A release folder (files under their release names) and its signed manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[Path, str]] = {}
    if detector is not None:
        files["plate_detector.onnx"] = (detector, "detector")
    if ocr is not None:
        files["plate_ocr.onnx"] = (ocr, "ocr")
        files["plate_config.yaml"] = (MODELS_DIR / "plate_config.yaml", "plate_config")
    samples = []
    for seed in seeds if seeds is not None else readable_seeds():
        frame, text = plate_frame(seed)
        name = f"samples/s{seed}.jpg"
        (folder / "samples").mkdir(exist_ok=True)
        cv2.imwrite(str(folder / name), frame)
        files[name] = (folder / name, "sample")
        samples.append((name, [text]))
    for name, (path, _) in files.items():
        if path != folder / name:
            (folder / name).write_bytes(path.read_bytes())
    manifest = build_manifest(release_id, files, samples, figures={"note": "test release"})
    return manifest, sign(manifest, load_private_key(key))


def shared_loader() -> Loader:
    """Loads each distinct set of model files once (real models; loading takes seconds on CI)."""
    cache: dict[tuple[str, ...], FrameRecognizer] = {}
    lock = threading.Lock()

    def digest(p: Path) -> str:
        return hashlib.sha256(Path(p).read_bytes()).hexdigest()

    def load(cfg: RecognizerConfig) -> FrameRecognizer:
        key = (digest(cfg.detector_path), digest(cfg.ocr_model_path))
        with lock:
            if key not in cache:
                cache[key] = load_recognizer(cfg)
            return cache[key]

    return load


class CuttableLink:
    """A TCP forwarder to ``target`` whose open connections can be cut (a lost radio link)."""

    def __init__(self, target: str, on_bytes: Callable[[int], None] | None = None) -> None:
        host, port = target.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.target = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.downstream_bytes = 0
        self.on_bytes = on_bytes
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(self.upstream)
            with self._lock:
                self._conns += [client, up]
            threading.Thread(target=self._pump, args=(client, up, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, down: bool) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                if down:
                    self.downstream_bytes += len(data)
                    if self.on_bytes is not None:
                        self.on_bytes(self.downstream_bytes)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        """Close every open connection (new ones are still accepted)."""
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self.cut()
