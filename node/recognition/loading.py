"""Load the recognition pipeline (detector -> OCR -> state) from a small pydantic config.

Defaults point at the models shipped in ``node/models/``; nothing is downloaded unless a
user names a fast-plate-ocr hub model (``hub_ocr_model``), which needs network access.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from node.recognition.detector import DetectorRuntime, load_detector
from node.recognition.formats import us_format_regexes
from node.recognition.ocr import FastPlateReader
from node.recognition.state import OcrRegionStateClassifier, PlateLookStateClassifier
from node.recognition.types import Box, Detector, FrameRecognizer, Image, PlateResult, RecognitionTimings

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


class RecognizerConfig(BaseModel):
    """Which models to run and how. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    detector_path: Path = Field(
        default=MODELS_DIR / "plate_detector.onnx", description="YOLO .onnx (onnxruntime) or any ultralytics model file"
    )
    detector_runtime: DetectorRuntime = Field(
        default="onnxruntime",
        description="onnxruntime: a YOLO ONNX export run directly (region detection, no torch); "
        "ultralytics: any model file ultralytics loads, whole frames only",
    )
    detector_imgsz: int = Field(default=640, ge=32, description="input size for dynamic-shape/ultralytics models")
    detector_input: Literal["fit", "square"] = Field(
        default="square",
        description="square: whole frames letterboxed to the export size; fit: padded only to a multiple of 32 "
        "(1280x720 runs at 640x384, ~45% faster; one us/ plate of 72 fewer found)",
    )
    detector_conf: float = Field(default=0.15, ge=0.0, le=1.0, description="minimum detection score")
    detector_iou: float = Field(default=0.5, ge=0.0, le=1.0)
    ocr_model_path: Path = Field(default=MODELS_DIR / "plate_ocr.onnx")
    plate_config_path: Path = Field(default=MODELS_DIR / "plate_config.yaml")
    hub_ocr_model: str | None = Field(default=None, description="fast-plate-ocr hub model name (downloads!)")
    state_model_path: Path | None = Field(
        default=MODELS_DIR / "state_classifier.npz",
        description="plate-look state classifier (.npz, alpr-node train state); None = the OCR model's region head",
    )
    state_min_confidence: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="report a state only this sure; None = the threshold calibrated with the state model "
        "(0.6 for the OCR's region head)",
    )  # fmt: skip
    crop_margin: float = Field(default=0.04, ge=0.0, le=0.5, description="box padding before OCR, per side")
    plate_formats: list[str] = Field(
        default_factory=us_format_regexes,
        description="regexes of the serial formats expected (default: US states' standard issue); [] = none",
    )
    format_min_ratio: float = Field(
        default=0.1, ge=0.0, le=1.0,
        description="take a reading that fits a format if it is at least this likely relative to the best; 0 = off",
    )  # fmt: skip
    ocr_views: int = Field(
        default=5, ge=1, le=5, description="crops read per plate and averaged (1: the box with crop_margin only)"
    )
    min_plate_width: int = Field(default=8, ge=1)
    min_plate_chars: int = Field(
        default=0, ge=0, le=8,
        description="drop a box whose read has fewer characters (not a plate: a grille, a sign, a badge); 0 = keep all",
    )  # fmt: skip
    min_read_confidence: float = Field(
        default=0.35, ge=0.0, le=1.0,
        description="drop a box whose read is less sure than this (the OCR reads no plate there: tail lights, "
        "badges, signs), unless the detector is sure of it (sure_detection_score); 0 = keep all",
    )  # fmt: skip
    sure_detection_score: float = Field(
        default=0.7, ge=0.0, le=1.0,
        description="a box the detector scores at least this is kept however unsure its read (a worn or small "
        "plate is still a plate); 1 = min_read_confidence applies to every box",
    )  # fmt: skip
    keep_crops: bool = Field(default=True, description="attach the plate crop to each PlateResult")


class Recognizer(FrameRecognizer):
    """detector -> crop -> OCR (+ region head) -> :class:`PlateResult` list."""

    def __init__(
        self,
        detector: Detector,
        reader: FastPlateReader,
        state: PlateLookStateClassifier | OcrRegionStateClassifier,
        cfg: RecognizerConfig,
    ) -> None:
        self.detector = detector
        self.reader = reader
        self.state = state
        self.cfg = cfg
        self._timings = RecognitionTimings()

    @property
    def supports_regions(self) -> bool:
        return self.detector.supports_regions

    @property
    def last_timings(self) -> RecognitionTimings:
        return self._timings

    def versions(self) -> dict[str, str]:
        return {"detector": self.detector.version, "ocr": self.reader.version, "state_classifier": self.state.version}

    def crop(
        self, frame: Image, box: tuple[int, int, int, int], margin: float | None = None, shift: float = 0.0
    ) -> Image:
        """The box plus ``margin`` (a fraction of its size) per side, moved down by ``shift`` x height."""
        x1, y1, x2, y2 = box
        m = self.cfg.crop_margin if margin is None else margin
        mx, my, dy = int((x2 - x1) * m), int((y2 - y1) * m), int((y2 - y1) * shift)
        h, w = frame.shape[:2]
        return frame[max(0, y1 - my + dy) : min(h, y2 + my + dy), max(0, x1 - mx) : min(w, x2 + mx)]

    def views(self, frame: Image, box: Box) -> list[Image]:
        """The crops :meth:`FastPlateReader.read_views` averages: the box with crop_margin first, then
        tight, loose, and moved up and down by 5% of the plate height."""
        m = self.cfg.crop_margin
        spec = [(m, 0.0), (0.0, 0.0), (m + 0.06, 0.0), (m, -0.05), (m, 0.05)][: self.cfg.ocr_views]
        out = [np.ascontiguousarray(self.crop(frame, box, mm, dy)) for mm, dy in spec]
        return [c for c in out if c.size] or out[:1]

    def read_crop(self, crop: Image) -> PlateResult:
        """Read one plate crop whole (no detector): the evaluation of crop sets."""
        h, w = crop.shape[:2]
        text = self.reader.read_views([np.ascontiguousarray(crop)])
        guess = self.state.classify(crop, reuse_last=True)
        return PlateResult(
            box=(0, 0, w, h), detection_score=1.0, text=text.text, confidence=text.confidence,
            char_confidences=text.char_confidences, state=guess.state, state_confidence=guess.confidence,
        )  # fmt: skip

    def recognize(
        self, frame: Image, skip_ocr: Callable[[Box], bool] | None = None, regions: list[Box] | None = None
    ) -> list[PlateResult]:
        """Detect, crop and read every plate in the frame (see :meth:`FrameRecognizer.recognize`)."""
        results = []
        t0 = time.perf_counter()
        if regions is not None and self.detector.supports_regions:
            detections = self.detector.detect_regions(frame, regions) if regions else []
        else:
            detections = self.detector.detect(frame)
        timings = self._timings = RecognitionTimings(detect_s=time.perf_counter() - t0)
        for det in detections:
            x1, y1, x2, y2 = det.box
            if x2 - x1 < self.cfg.min_plate_width or y2 - y1 < 4:
                continue
            if skip_ocr is not None and skip_ocr(det.box):
                results.append(PlateResult(box=det.box, detection_score=det.score, text="", confidence=0.0))
                continue
            t1 = time.perf_counter()
            views = self.views(frame, det.box)
            crop = views[0]
            text = self.reader.read_views(views)
            unsure = text.confidence < self.cfg.min_read_confidence and det.score < self.cfg.sure_detection_score
            if len(text.text) < self.cfg.min_plate_chars or unsure:
                timings.ocr_s.append(time.perf_counter() - t1)
                continue
            guess = self.state.classify(crop, reuse_last=True)
            results.append(
                PlateResult(
                    box=det.box,
                    detection_score=det.score,
                    text=text.text,
                    confidence=text.confidence,
                    char_confidences=text.char_confidences,
                    state=guess.state,
                    state_confidence=guess.confidence,
                    crop=crop if self.cfg.keep_crops else None,
                )
            )
            timings.ocr_s.append(time.perf_counter() - t1)
        return results


def load_recognizer(cfg: RecognizerConfig | None = None) -> Recognizer:
    """Load and warm up all models (raises FileNotFoundError for a missing model file)."""
    cfg = cfg or RecognizerConfig()
    detector = load_detector(
        cfg.detector_path, runtime=cfg.detector_runtime, conf=cfg.detector_conf, iou=cfg.detector_iou, imgsz=cfg.detector_imgsz,
        input_mode=cfg.detector_input,
    )  # fmt: skip
    if cfg.hub_ocr_model:
        reader = FastPlateReader(hub_ocr_model=cfg.hub_ocr_model)
    else:
        for p in (cfg.ocr_model_path, cfg.plate_config_path):
            if not Path(p).exists():
                raise FileNotFoundError(f"OCR model file not found: {p}")
        reader = FastPlateReader(
            onnx_model_path=cfg.ocr_model_path,
            plate_config_path=cfg.plate_config_path,
            formats=cfg.plate_formats,
            format_min_ratio=cfg.format_min_ratio,
        )
    state: PlateLookStateClassifier | OcrRegionStateClassifier
    if cfg.state_model_path is not None:
        state = PlateLookStateClassifier(cfg.state_model_path, min_confidence=cfg.state_min_confidence)
    else:
        thr = 0.6 if cfg.state_min_confidence is None else cfg.state_min_confidence
        state = OcrRegionStateClassifier(reader, min_confidence=thr)
    return Recognizer(detector, reader, state, cfg)
