"""Plate detectors: a YOLO ONNX model run with onnxruntime (default), or any ultralytics model."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from node.recognition.types import Box, Detector, Image, PlateDetection


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


def letterbox_at(image: Image, r: float, height: int, width: int) -> tuple[np.ndarray, float, int, int]:
    """Scale by ``r`` and centre on a grey (height, width) canvas; returns (img, r, dx, dy)."""
    h, w = image.shape[:2]
    nh, nw = min(height, max(1, round(h * r))), min(width, max(1, round(w * r)))
    img = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR)
    dy, dx = (height - nh) // 2, (width - nw) // 2
    if (nh, nw) == (height, width):
        return img, r, 0, 0
    out = np.full((height, width, 3), 114, np.uint8)
    out[dy : dy + nh, dx : dx + nw] = img
    return out, r, dx, dy


def body_graph(model_bytes: bytes) -> bytes | None:
    """The convolutional body of an exported YOLOv8-style model, with a free input size.

    ultralytics bakes the anchor grid of the export size (640x640: 8400 anchors) into the
    head, so the file only takes that size. Everything before the head's reshape is
    convolutional: cut there and the model returns one ``1 x (64 + classes) x H/s x W/s`` map
    per level (box distributions, class logits); :func:`decode_levels` does the rest in numpy.
    Same weights, same numbers; ``None`` when the graph is not of that shape.
    """
    import onnx

    m = onnx.load_from_string(model_bytes)
    g = m.graph
    producer = {o: n for n in g.node for o in n.output}
    levels: list[str] = []
    for split in (n for n in g.node if n.op_type == "Split"):  # the head's: of a Concat of Reshapes
        cat = producer.get(split.input[0])
        if cat is None or cat.op_type != "Concat" or len(cat.input) < 2:
            continue
        reshapes = [producer.get(name) for name in cat.input]
        if all(r is not None and r.op_type == "Reshape" for r in reshapes):
            levels = [r.input[0] for r in reshapes if r is not None]
    if not levels:
        return None
    keep: set[int] = set()
    needed = list(levels)
    while needed:  # walk back from the level maps: only the nodes they depend on stay
        n = producer.get(needed.pop())
        if n is None or id(n) in keep:
            continue
        keep.add(id(n))
        needed.extend(i for i in n.input if i)
    nodes = [n for n in g.node if id(n) in keep]
    used = {i for n in nodes for i in n.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]  # shapes inferred at the export size; wrong at any other
    del g.output[:]
    g.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in levels)
    dims = g.input[0].type.tensor_type.shape.dim
    for d, name in ((dims[2], "height"), (dims[3], "width")):
        d.ClearField("dim_value")
        d.dim_param = name
    return bytes(m.SerializeToString())


def decode_levels(maps: list[np.ndarray], input_height: int, conf: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (x, y, w, h in input pixels) and scores at least ``conf`` from the level maps of
    :func:`body_graph` (YOLOv8 head: 4 x 16-bin distance distributions, one logit per class)."""
    conf = min(max(conf, 1e-6), 1 - 1e-6)
    logit = float(np.log(conf / (1 - conf)))
    boxes, scores = [], []
    bins = np.arange(16, dtype=np.float32)
    for fmap in maps:
        f = fmap[0]
        cls = f[64:].max(axis=0)
        ys, xs = np.nonzero(cls >= logit)
        if not len(ys):
            continue
        stride = input_height / f.shape[1]
        scores.append(1 / (1 + np.exp(-cls[ys, xs])))
        d = f[:64, ys, xs].T.reshape(-1, 4, 16)
        d = np.exp(d - d.max(axis=2, keepdims=True))
        lt_rb = (d * bins).sum(axis=2) / d.sum(axis=2)  # left, top, right, bottom in cells
        x1, y1 = xs + 0.5 - lt_rb[:, 0], ys + 0.5 - lt_rb[:, 1]
        boxes.append(np.stack([x1, y1, lt_rb[:, 0] + lt_rb[:, 2], lt_rb[:, 1] + lt_rb[:, 3]], axis=1) * stride)
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    return np.concatenate(boxes).astype(np.float32), np.concatenate(scores).astype(np.float32)


def fit_size(height: int, width: int, long_side: int, stride: int = 32) -> tuple[float, int, int]:
    """Scale for a (height, width) image whose longer side becomes ``long_side`` (never above 1
    for regions: see callers), and the input size padded up to multiples of ``stride``."""
    r = long_side / max(height, width)
    nh, nw = max(1, round(height * r)), max(1, round(width * r))
    return r, -(-nh // stride) * stride, -(-nw // stride) * stride


class OnnxYoloDetector:
    """A single-class YOLOv8-style ONNX detector (output ``1 x (4+1) x N``).

    ``input_mode`` ``square``: whole frames letterboxed to the export size, the file as
    exported. ``fit``: the frame is scaled the same but padded only up to a multiple of 32
    (1280x720 runs at 640x384: ~45% less time, same weights; on ``us/`` one plate of 72 fewer
    found, so not the default). :meth:`detect_regions` runs the convolutional body on parts of
    a frame at the whole frame's scale (what the node's motion gate asks for).
    """

    def __init__(
        self, path: Path, conf: float = 0.25, iou: float = 0.5, imgsz: int | None = None, input_mode: str = "square"
    ) -> None:
        import onnxruntime as ort

        data = Path(path).read_bytes()
        first = ort.InferenceSession(data, sess_options=session_options(), providers=["CPUExecutionProvider"])
        inp = first.get_inputs()[0]
        shape = inp.shape
        self.input_name = inp.name
        static = all(isinstance(s, int) for s in shape[2:])
        self.height = int(shape[2]) if static else int(imgsz or 640)
        self.width = int(shape[3]) if static else int(imgsz or 640)
        self.conf = conf
        self.iou = iou
        self.version = file_version(path)
        self.session = first
        self.body = None
        if static:
            try:
                body = body_graph(data)
            except ImportError:  # the onnx package is missing: whole frames only, as exported
                body = None
            if body is not None:
                self.body = ort.InferenceSession(
                    body, sess_options=session_options(), providers=["CPUExecutionProvider"]
                )
        self.input_mode = "fit" if self.body is not None and input_mode == "fit" else "square"
        self.detect(np.zeros((720, 1280, 3), np.uint8))  # warm-up

    def _run(self, img: np.ndarray, body: bool) -> tuple[np.ndarray, np.ndarray]:
        """x, y, w, h boxes (top-left, input pixels) and scores for a letterboxed BGR input."""
        blob = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
        blob /= 255.0
        if body and self.body is not None:
            return decode_levels(self.body.run(None, {self.input_name: blob}), img.shape[0], self.conf)
        out = self.session.run(None, {self.input_name: blob})[0][0]  # (5, N)
        scores = out[4:].max(axis=0)
        keep = scores >= self.conf
        xywh = out[:4, keep].T.copy()  # centre x, y -> top-left
        xywh[:, :2] -= xywh[:, 2:] / 2
        return xywh, scores[keep]

    def _input(self, image: Image, scale: float | None = None) -> tuple[np.ndarray, float, int, int]:
        h, w = image.shape[:2]
        if scale is None and self.input_mode == "square":
            return letterbox(image, self.height, self.width)
        r, ih, iw = fit_size(h, w, max(self.height, self.width))
        if scale is not None:
            r = scale
            ih, iw = -(-max(1, round(h * r)) // 32) * 32, -(-max(1, round(w * r)) // 32) * 32
        return letterbox_at(image, r, ih, iw)

    def detect(self, frame: Image) -> list[PlateDetection]:
        img, r, dx, dy = self._input(frame)
        xywh, scores = self._run(img, self.input_mode == "fit")
        boxes = _to_frame(xywh, r, dx, dy)
        return self._nms(boxes, scores, frame.shape[:2])

    @property
    def supports_regions(self) -> bool:
        """Regions run on the network's convolutional body; a model whose head could not be cut runs whole frames."""
        return self.body is not None

    def frame_scale(self, frame: Image) -> float:
        """The scale :meth:`detect` runs a whole frame at."""
        h, w = frame.shape[:2]
        if self.input_mode == "square":
            return float(min(self.height / h, self.width / w))
        return fit_size(h, w, max(self.height, self.width))[0]

    def detect_regions(self, frame: Image, regions: list[Box]) -> list[PlateDetection]:
        """Plates inside ``regions`` (x1, y1, x2, y2 of the frame) at the whole frame's scale:
        a region costs what its area costs. A square-only model runs the whole frame."""
        if self.body is None:
            return self.detect(frame)
        r = self.frame_scale(frame)
        all_boxes, all_scores = [], []
        fh, fw = frame.shape[:2]
        for box in regions:
            # grow the region with the frame's own pixels to a multiple of 32 at this scale: a grey
            # pad around a region of a scene has edges the detector takes for a plate
            x1, x2 = _grown(box[0], box[2], fw, r)
            y1, y2 = _grown(box[1], box[3], fh, r)
            part = frame[y1:y2, x1:x2]
            if part.size == 0:
                continue
            img, rr, dx, dy = self._input(part, r)
            xywh, scores = self._run(img, True)
            if len(scores):
                b = _to_frame(xywh, rr, dx, dy)
                b[:, 0] += x1
                b[:, 1] += y1
                all_boxes.append(b)
                all_scores.append(scores)
        if not all_boxes:
            return []
        return self._nms(np.concatenate(all_boxes), np.concatenate(all_scores), frame.shape[:2])

    def _nms(self, boxes: np.ndarray, scores: np.ndarray, shape: tuple[int, ...]) -> list[PlateDetection]:
        """``boxes``: x, y, w, h in frame pixels."""
        if not len(scores):
            return []
        idx = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.conf, self.iou)
        h, w = shape[:2]
        dets = []
        for i in np.array(idx).reshape(-1):
            x, y, bw, bh = boxes[i]
            x1, y1 = int(np.clip(x, 0, w - 1)), int(np.clip(y, 0, h - 1))
            x2, y2 = int(np.clip(x + bw, 0, w)), int(np.clip(y + bh, 0, h))
            if x2 > x1 and y2 > y1:
                dets.append(PlateDetection((x1, y1, x2, y2), float(scores[i])))
        dets.sort(key=lambda d: -d.score)
        return dets


def _grown(lo: int, hi: int, limit: int, r: float) -> tuple[int, int]:
    """[lo, hi) widened (within [0, limit)) so that its length times ``r`` is a multiple of 32."""
    lo, hi = max(0, lo), min(limit, hi)
    want = -(-max(1, round((hi - lo) * r)) // 32) * 32 / r
    extra = max(0, round(want) - (hi - lo))
    lo -= extra // 2
    hi += extra - extra // 2
    if lo < 0:
        hi, lo = hi - lo, 0
    if hi > limit:
        lo, hi = max(0, lo - (hi - limit)), limit
    return lo, hi


def _to_frame(xywh: np.ndarray, r: float, dx: int, dy: int) -> np.ndarray:
    out = xywh.astype(np.float32, copy=True)
    out[:, 0] = (out[:, 0] - dx) / r
    out[:, 1] = (out[:, 1] - dy) / r
    out[:, 2] /= r
    out[:, 3] /= r
    return out


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

    @property
    def supports_regions(self) -> bool:
        return False

    def detect_regions(self, frame: Image, regions: list[Box]) -> list[PlateDetection]:
        """ultralytics runs whole frames only."""
        return self.detect(frame)


DetectorRuntime = Literal["onnxruntime", "ultralytics"]


def load_detector(
    path: Path,
    runtime: DetectorRuntime = "onnxruntime",
    conf: float = 0.25,
    iou: float = 0.5,
    imgsz: int = 640,
    input_mode: str = "square",
) -> Detector:
    """The detector ``runtime`` names: ``onnxruntime`` runs a YOLO ONNX export directly
    (``input_mode``: see :class:`OnnxYoloDetector`); ``ultralytics`` loads any model file
    ultralytics reads (``.pt``, ``.onnx``, ...) through ``YOLO.predict``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"detector model not found: {path}")
    if runtime == "onnxruntime":
        return OnnxYoloDetector(path, conf=conf, iou=iou, imgsz=imgsz, input_mode=input_mode)
    return UltralyticsDetector(path, conf=conf, iou=iou, imgsz=imgsz)
