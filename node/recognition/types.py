"""The contract between the node runtime and the recognition models.

The runtime only sees these types: a Detector finds plate boxes in a BGR frame, a
PlateReader reads the characters of a plate crop, a StateClassifier names the state of
issuance. A Recognizer chains them. Implementations load their weights once and warm up
at load time, never download anything at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]  # H x W x 3, BGR (OpenCV order)
Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels, top-left origin


@dataclass(frozen=True)
class PlateDetection:
    box: Box
    score: float


@dataclass(frozen=True)
class PlateText:
    text: str  # normalized: A-Z 0-9, no pad characters
    confidence: float  # 0..1 for the whole plate
    char_confidences: tuple[float, ...] = ()  # one per character of text


@dataclass(frozen=True)
class StateGuess:
    state: str | None  # e.g. "IL"; None when unknown (an honest answer)
    confidence: float


@dataclass(frozen=True)
class PlateResult:
    """One plate found in one frame."""

    box: Box
    detection_score: float
    text: str
    confidence: float
    char_confidences: tuple[float, ...] = ()
    state: str | None = None
    state_confidence: float = 0.0
    crop: Image | None = field(default=None, repr=False, compare=False)


class Detector(Protocol):
    version: str

    def detect(self, frame: Image) -> list[PlateDetection]: ...


class PlateReader(Protocol):
    version: str

    def read(self, crop: Image) -> PlateText: ...


class StateClassifier(Protocol):
    version: str

    def classify(self, crop: Image) -> StateGuess: ...
