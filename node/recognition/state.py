"""State of issuance: a plate-look classifier, the OCR model's region head, or an honest "unknown".

:class:`PlateLookStateClassifier` (the default) reads a state from how the plate looks: the
colours of a 3x3 grid of the crop (background, banner, slogan), a small colour thumbnail and
where the strokes are (the state name's lettering, the characters' font). A softmax layer over
those features (``node/models/state_classifier.npz``, trained by ``alpr-node train state`` on
real plates of every state) names a state or ``OTHER`` (a non-US plate); the answer is kept only
when its probability reaches the threshold calibrated on plates the classifier never saw.

:class:`OcrRegionStateClassifier` uses the OCR model's region head instead.

Below the threshold, for ``OTHER``, or without a model, the answer is ``None`` ("unknown"):
a wrong confident state is worse than none.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from node.recognition.detector import file_version
from node.recognition.ocr import FastPlateReader
from node.recognition.types import Image, StateGuess

NOT_A_STATE = {"OTHER"}
LOOK_SIZE = (96, 48)  # width, height the crop is resized to before its features are taken
FEATURES_VERSION = 1


def plate_look_features(crop: Image) -> np.ndarray:
    """The feature vector of a BGR plate crop: HSV histograms of a 3x3 grid (6 hues x 3
    saturations x 3 values each), a 24x12 colour thumbnail and a 24x12 map of edge strength."""
    x = cv2.resize(crop, LOOK_SIZE, interpolation=cv2.INTER_AREA)
    if x.ndim == 2:
        x = cv2.cvtColor(x, cv2.COLOR_GRAY2BGR)
    hsv = cv2.cvtColor(x, cv2.COLOR_BGR2HSV)
    cw, ch = LOOK_SIZE[0] // 3, LOOK_SIZE[1] // 3
    parts = []
    for gy in range(3):
        for gx in range(3):
            cell = np.ascontiguousarray(hsv[gy * ch : (gy + 1) * ch, gx * cw : (gx + 1) * cw])
            hist = cv2.calcHist([cell], [0, 1, 2], None, [6, 3, 3], [0, 180, 0, 256, 0, 256]).ravel()
            parts.append(hist / max(float(hist.sum()), 1.0))
    parts.append(cv2.resize(x, (24, 12), interpolation=cv2.INTER_AREA).astype(np.float32).ravel() / 255)
    grey = cv2.cvtColor(x, cv2.COLOR_BGR2GRAY)
    edges = np.abs(cv2.Sobel(grey, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    parts.append(cv2.resize(edges, (24, 12), interpolation=cv2.INTER_AREA).ravel() / 255)
    return np.concatenate(parts).astype(np.float32)


class PlateLookStateClassifier:
    """A softmax layer over :func:`plate_look_features`, loaded from an ``.npz``: ``classes``,
    ``weights`` (features x classes), ``bias``, ``mean``/``scale`` (feature standardisation),
    ``min_confidence`` (calibrated) and ``features_version``."""

    def __init__(self, path: Path, min_confidence: float | None = None) -> None:
        if not Path(path).exists():
            raise FileNotFoundError(f"state model file not found: {path}")
        with np.load(path, allow_pickle=False) as m:
            if int(m["features_version"]) != FEATURES_VERSION:
                raise ValueError(f"{path}: features version {int(m['features_version'])}, expected {FEATURES_VERSION}")
            self.classes = [str(c) for c in m["classes"]]
            self.weights = m["weights"].astype(np.float32)
            self.bias = m["bias"].astype(np.float32)
            self.mean = m["mean"].astype(np.float32)
            self.scale = m["scale"].astype(np.float32)
            calibrated = float(m["min_confidence"])
        self.min_confidence = calibrated if min_confidence is None else min_confidence
        self.version = file_version(Path(path))

    def probabilities(self, crop: Image) -> np.ndarray:
        z = ((plate_look_features(crop) - self.mean) / self.scale) @ self.weights + self.bias
        e = np.exp(z - z.max())
        return np.asarray(e / e.sum(), dtype=np.float64)

    def classify(self, crop: Image, *, reuse_last: bool = False) -> StateGuess:
        p = self.probabilities(crop)
        k = int(p.argmax())
        state, prob = self.classes[k], float(p[k])
        if state in NOT_A_STATE:
            return StateGuess(None, 0.0)
        if prob < self.min_confidence:
            return StateGuess(None, prob)
        return StateGuess(state, prob)


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
