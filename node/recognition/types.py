"""The contract between the node runtime and the recognition models.

The runtime only sees these types: a Detector finds plate boxes in a BGR frame, a
PlateReader reads the characters of a plate crop, a StateClassifier names the state of
issuance. A FrameRecognizer chains them for the runtime, which calls it through this
interface only. Implementations load their weights once and warm up at load time, never
download anything at run time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
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

    @property
    def supports_regions(self) -> bool:
        """True when :meth:`detect_regions` runs the network on the regions only (cheaper than the frame)."""
        ...

    def detect(self, frame: Image) -> list[PlateDetection]: ...

    def detect_regions(self, frame: Image, regions: list[Box]) -> list[PlateDetection]:
        """Plates inside ``regions`` (frame coordinates), found without running the whole frame when supported."""
        ...


class PlateReader(Protocol):
    version: str

    def read(self, crop: Image) -> PlateText: ...


class StateClassifier(Protocol):
    version: str

    def classify(self, crop: Image) -> StateGuess: ...


@dataclass
class RecognitionTimings:
    """Where a recognizer's last call spent its time, in seconds, for the node's metrics."""

    detect_s: float | None = None  # None: not measured apart; the runtime times the whole call
    ocr_s: list[float] = field(default_factory=list)  # one per plate read


class FrameRecognizer(ABC):
    """What the node runtime runs on every frame: find and read the plates in it."""

    @abstractmethod
    def recognize(
        self, frame: Image, skip_ocr: Callable[[Box], bool] | None = None, regions: list[Box] | None = None
    ) -> list[PlateResult]:
        """Every plate in ``frame``.

        ``skip_ocr(box)`` says a plate is already read with confidence (the tracker's
        settled tracks): such a plate may come back with its box and an empty text, unread.
        ``regions``: look only inside these parts of the frame (None: the whole frame); only
        honoured when :attr:`supports_regions` is true.
        """

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Model versions by part (``detector``, ``ocr``, ...), stored with every read."""

    @property
    def supports_regions(self) -> bool:
        """True when ``recognize(regions=...)`` detects only in the regions (the motion gate pays off)."""
        return False

    @property
    def last_timings(self) -> RecognitionTimings:
        """Timings of the last :meth:`recognize` call (empty when the recognizer does not measure)."""
        return RecognitionTimings()
