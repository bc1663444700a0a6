"""Plate reader: a fast-plate-ocr ONNX model through ``LicensePlateRecognizer``.

The same model may carry a region (state) head; :class:`FastPlateReader` keeps its last
region output so the state classifier can reuse it without a second inference.

:meth:`FastPlateReader.read_views` reads several crops of one plate (different margins and
offsets around the detector's box) and averages the per-slot character probabilities
before decoding: the detector's box is never exactly where the OCR was trained to expect
the plate, and the average is steadier than any single view. One batched inference when
the model takes a batch (our exported models do, see ``node.training.train_ocr``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from fast_plate_ocr.core.process import preprocess_image, resize_image

from node.recognition.detector import file_version, session_options
from node.recognition.formats import FormatDecoder
from node.recognition.types import Image, PlateText


class FastPlateReader:
    """Reads a BGR plate crop; per-character confidences are kept."""

    def __init__(
        self,
        onnx_model_path: Path | None = None,
        plate_config_path: Path | None = None,
        hub_ocr_model: str | None = None,
        formats: list[str] | None = None,
        format_min_ratio: float = 0.1,
    ) -> None:
        from fast_plate_ocr import LicensePlateRecognizer

        if hub_ocr_model:  # a user with network access asked for a hub model by name
            self.recognizer = LicensePlateRecognizer(hub_ocr_model=hub_ocr_model, device="cpu")  # type: ignore[arg-type]
            self.version = f"hub:{hub_ocr_model}"
        else:
            if onnx_model_path is None or plate_config_path is None:
                raise ValueError("give onnx_model_path and plate_config_path, or hub_ocr_model")
            self.recognizer = LicensePlateRecognizer(
                onnx_model_path=onnx_model_path,
                plate_config_path=plate_config_path,
                device="cpu",
                sess_options=session_options(),
            )
            self.version = file_version(Path(onnx_model_path))
        self.config = self.recognizer.config
        self.pad = self.config.pad_char
        self.last_region: tuple[str | None, float] = (None, 0.0)
        self.decoder = (
            FormatDecoder(self.config.alphabet, self.pad, formats, format_min_ratio)
            if formats and format_min_ratio > 0
            else None
        )
        model = self.recognizer.model
        batch_dim = model.get_inputs()[0].shape[0]
        self.batched = not isinstance(batch_dim, int)  # a symbolic batch dimension
        self._outputs = [self.recognizer.plate_output_name]
        if self.recognizer.has_region_head and self.recognizer.region_output_name:
            self._outputs.append(self.recognizer.region_output_name)
        self.read(np.full((40, 80, 3), 128, np.uint8))  # warm-up

    def _prepare(self, crop: Image) -> np.ndarray:
        if self.config.image_color_mode == "grayscale":
            return cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
        return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)

    def _infer(self, crops: list[Image]) -> list[np.ndarray]:
        c = self.config
        x = preprocess_image(np.stack([
            resize_image(self._prepare(crop), c.img_height, c.img_width, image_color_mode=c.image_color_mode,
                         keep_aspect_ratio=c.keep_aspect_ratio, interpolation_method=c.interpolation,
                         padding_color=c.padding_color)
            for crop in crops
        ]))  # fmt: skip
        run = self.recognizer.model.run
        if self.batched or len(crops) == 1:
            return list(run(self._outputs, {"input": x}))
        parts = [run(self._outputs, {"input": x[i : i + 1]}) for i in range(len(crops))]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(self._outputs))]

    def read(self, crop: Image) -> PlateText:
        return self.read_views([crop])

    def read_views(self, crops: list[Image]) -> PlateText:
        """Read one plate from one or more crops of it (probabilities averaged over the views)."""
        outs = [o.reshape(len(crops), -1).mean(axis=0) for o in self._infer(crops)]
        c = self.config
        slot_probs = outs[0].reshape(c.max_plate_slots, -1)
        # a known plate format may overrule an uncertain slot; otherwise each slot's likeliest class
        seq = self.decoder.decode(slot_probs)[0] if self.decoder is not None else tuple(slot_probs.argmax(axis=1))
        probs = np.array([slot_probs[k, i] for k, i in enumerate(seq)])
        chars, confs = [], []
        for i, p in zip(seq, probs, strict=True):
            if c.alphabet[i] != self.pad:
                chars.append(c.alphabet[i])
                confs.append(float(p))
        # plate confidence: the least sure character (pads included: a wrong length is an error too)
        conf = float(probs.min()) if len(probs) else 0.0
        self.last_region = (None, 0.0)
        if len(outs) > 1 and c.plate_regions:
            r = int(outs[1].argmax())
            self.last_region = (c.plate_regions[r], float(outs[1][r]))
        return PlateText(text="".join(chars), confidence=conf, char_confidences=tuple(confs))
