"""Plate reader: a fast-plate-ocr ONNX model through ``LicensePlateRecognizer``.

The same model may carry a region (state) head; :class:`FastPlateReader` keeps its last
region output so the state classifier can reuse it without a second inference.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from node.recognition.detector import file_version
from node.recognition.types import Image, PlateText


class FastPlateReader:
    """Reads a BGR plate crop; per-character confidences are kept."""

    def __init__(
        self,
        onnx_model_path: Path | None = None,
        plate_config_path: Path | None = None,
        hub_ocr_model: str | None = None,
    ) -> None:
        from fast_plate_ocr import LicensePlateRecognizer

        if hub_ocr_model:  # a user with network access asked for a hub model by name
            self.recognizer = LicensePlateRecognizer(hub_ocr_model=hub_ocr_model, device="cpu")  # type: ignore[arg-type]
            self.version = f"hub:{hub_ocr_model}"
        else:
            if onnx_model_path is None or plate_config_path is None:
                raise ValueError("give onnx_model_path and plate_config_path, or hub_ocr_model")
            self.recognizer = LicensePlateRecognizer(
                onnx_model_path=onnx_model_path, plate_config_path=plate_config_path, device="cpu"
            )
            self.version = file_version(Path(onnx_model_path))
        self.config = self.recognizer.config
        self.pad = self.config.pad_char
        self.last_region: tuple[str | None, float] = (None, 0.0)
        self.read(np.full((40, 80, 3), 128, np.uint8))  # warm-up

    def _prepare(self, crop: Image) -> np.ndarray:
        if self.config.image_color_mode == "grayscale":
            return cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
        return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)

    def read(self, crop: Image) -> PlateText:
        pred = self.recognizer.run_one(self._prepare(crop), return_confidence=True, remove_pad_char=False)
        raw = pred.plate
        probs = np.asarray(pred.char_probs if pred.char_probs is not None else np.ones(len(raw))).reshape(-1)
        chars, confs = [], []
        for ch, p in zip(raw, probs, strict=False):
            if ch != self.pad:
                chars.append(ch)
                confs.append(float(p))
        # plate confidence: the least sure character (pads included: a wrong length is an error too)
        conf = float(probs.min()) if len(probs) else 0.0
        self.last_region = (pred.region, float(pred.region_prob or 0.0)) if pred.region else (None, 0.0)
        return PlateText(text="".join(chars), confidence=conf, char_confidences=tuple(confs))
