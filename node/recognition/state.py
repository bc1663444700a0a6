"""State of issuance: the OCR model's region head, or an honest "unknown".

The OCR model is trained with a region head over the US states the synthetic generator
draws plus ``OTHER`` (real non-US plates). Its guess is only reported when its
probability reaches ``min_confidence``; below that, or when the model has no region
head, the answer is ``None`` ("unknown") with the head's probability (or 0).
"""

from __future__ import annotations

from node.recognition.ocr import FastPlateReader
from node.recognition.types import Image, StateGuess

NOT_A_STATE = {"OTHER"}


class OcrRegionStateClassifier:
    """Uses the region output of the last :meth:`FastPlateReader.read` on the same crop."""

    def __init__(self, reader: FastPlateReader, min_confidence: float = 0.6) -> None:
        self.reader = reader
        self.min_confidence = min_confidence
        has_head = bool(getattr(reader.recognizer, "has_region_head", False))
        self.version = f"region-head:{reader.version}" if has_head else "none"

    def classify(self, crop: Image, *, reuse_last: bool = False) -> StateGuess:
        if self.version == "none":
            return StateGuess(None, 0.0)
        if not reuse_last:
            self.reader.read(crop)
        region, prob = self.reader.last_region
        if region is None or region in NOT_A_STATE or prob < self.min_confidence:
            return StateGuess(None, prob if region not in NOT_A_STATE else 0.0)
        return StateGuess(region, prob)
