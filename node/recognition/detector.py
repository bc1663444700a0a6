"""Plate detectors: a YOLO ONNX model run with onnxruntime (default), or any ultralytics model."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from node.recognition.types import Image, PlateDetection


def file_version(path: Path) -> str:
    """``name@sha256[:12]``: identifies the exact model file in reads and manifests."""
    h = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    return f"{Path(path).name}@{h}"


def _threads() -> int:
    return int(os.environ.get("ALPR_NODE_THREADS", "0")) or min(4, os.cpu_count() or 1)


def session_options() -> Any:
    """onnxruntime options for every model of the node: ``ALPR_NODE_THREADS`` (default: the cores,
    at most 4) and no spin-waiting. Spinning threads of one model (the OCR, idle between plates)
    would otherwise steal the cores the next model (the detector) needs: with spinning the
    detector ran ~30% slower inside the pipeline than alone on a 2-core unit."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    so = ort.SessionOptions()
    so.intra_op_num_threads = _threads()
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def letterbox(frame: Image, height: int, width: int) -> tuple[np.ndarray, float, int, int]:
    """Resize keeping aspect ratio into (height, width), grey padding; returns (img, scale, dx, dy)."""
    h, w = frame.shape[:2]
    r = min(height / h, width / w)
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    img = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR)
    dy, dx = (height - nh) // 2, (width - nw) // 2
    out = np.full((height, width, 3), 114, np.uint8)
    out[dy : dy + nh, dx : dx + nw] = img
    return out, r, dx, dy


class OnnxYoloDetector:
    """A single-class YOLOv8-style ONNX detector (output ``1 x (4+1) x N``)."""

    def __init__(self, path: Path, conf: float = 0.25, iou: float = 0.5, imgsz: int | None = None) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(
            str(path), sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        static = all(isinstance(s, int) for s in shape[2:])
        self.height = int(shape[2]) if static else int(imgsz or 640)
        self.width = int(shape[3]) if static else int(imgsz or 640)
        self.conf = conf
        self.iou = iou
        self.version = file_version(path)
        self.detect(np.zeros((self.height, self.width, 3), np.uint8))  # warm-up

    def detect(self, frame: Image) -> list[PlateDetection]:
        img, r, dx, dy = letterbox(frame, self.height, self.width)
        blob = img[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(blob)})[0][0]  # (5, N)
        scores = out[4:].max(axis=0)
        keep = scores >= self.conf
        if not keep.any():
            return []
        xywh = out[:4, keep].T
        scores = scores[keep]
        boxes = np.stack([xywh[:, 0] - xywh[:, 2] / 2, xywh[:, 1] - xywh[:, 3] / 2, xywh[:, 2], xywh[:, 3]], axis=1)
        idx = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.conf, self.iou)
        h, w = frame.shape[:2]
        dets = []
        for i in np.array(idx).reshape(-1):
            x, y, bw, bh = boxes[i]
            x1 = int(np.clip((x - dx) / r, 0, w - 1))
            y1 = int(np.clip((y - dy) / r, 0, h - 1))
            x2 = int(np.clip((x + bw - dx) / r, 0, w))
            y2 = int(np.clip((y + bh - dy) / r, 0, h))
            if x2 > x1 and y2 > y1:
                dets.append(PlateDetection((x1, y1, x2, y2), float(scores[i])))
        dets.sort(key=lambda d: -d.score)
        return dets


class UltralyticsDetector:
    """Any local ultralytics model file (``.pt``, ``.onnx``, ...) through ``YOLO.predict``."""

    def __init__(self, path: Path, conf: float = 0.25, iou: float = 0.5, imgsz: int = 640) -> None:
        from node.training.offline import prepare_offline

        prepare_offline()
        from ultralytics import YOLO  # type: ignore[attr-defined]

        self.model = YOLO(str(path), task="detect")
        self.conf, self.iou, self.imgsz = conf, iou, imgsz
        self.version = file_version(path)
        self.detect(np.zeros((imgsz, imgsz, 3), np.uint8))  # warm-up

    def detect(self, frame: Image) -> list[PlateDetection]:
        res = self.model.predict(frame, imgsz=self.imgsz, conf=self.conf, iou=self.iou, device="cpu", verbose=False)[0]
        dets: list[PlateDetection] = []
        if res.boxes is None:
            return dets
        for (x1, y1, x2, y2), s in zip(res.boxes.xyxy.tolist(), res.boxes.conf.tolist(), strict=True):
            dets.append(PlateDetection((int(x1), int(y1), int(x2), int(y2)), float(s)))
        return dets


def load_detector(
    path: Path, conf: float = 0.25, iou: float = 0.5, imgsz: int = 640
) -> OnnxYoloDetector | UltralyticsDetector:
    """``.onnx`` runs directly on onnxruntime; anything else goes through ultralytics."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"detector model not found: {path}")
    if path.suffix == ".onnx":
        return OnnxYoloDetector(path, conf=conf, iou=iou, imgsz=imgsz)
    return UltralyticsDetector(path, conf=conf, iou=iou, imgsz=imgsz)
