"""Evaluate a recognizer on an annotated folder (``annotations.tsv`` as in shared/data/real-plates).

Metrics:
- detection recall: ground-truth plates matched by a detection with IoU >= ``iou``;
- exact plate accuracy: ground-truth plates whose matched read equals the label exactly
  (missed plates count as wrong), over all labelled plates;
- top-1 accuracy: per image, the most confident read equals one of the image's labels;
- character accuracy: 1 - edit distance / label length, summed over matched or missed plates;
- ms per image: wall time of ``recognize`` (image decoding excluded).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from alpr_common.similarity import edit_distance as edit_distance
from alpr_common.similarity import iou as iou
from node.recognition.annotations import GroundTruth, read_boxes
from node.recognition.types import Image, PlateResult


@dataclass
class PlateOutcome:
    image: str
    label: str | None
    box: tuple[int, int, int, int]
    detected: bool
    read: str | None
    iou: float


@dataclass
class EvalReport:
    images: int = 0
    plates: int = 0
    labelled: int = 0
    detected: int = 0
    exact: int = 0
    top1: int = 0
    char_correct: float = 0.0
    char_total: int = 0
    false_positives: int = 0
    total_ms: float = 0.0
    outcomes: list[PlateOutcome] = field(default_factory=list)

    @property
    def detection_recall(self) -> float:
        return self.detected / self.plates if self.plates else 0.0

    @property
    def exact_accuracy(self) -> float:
        return self.exact / self.labelled if self.labelled else 0.0

    @property
    def top1_accuracy(self) -> float:
        return self.top1 / self.images if self.images else 0.0

    @property
    def char_accuracy(self) -> float:
        return self.char_correct / self.char_total if self.char_total else 0.0

    @property
    def ms_per_image(self) -> float:
        return self.total_ms / self.images if self.images else 0.0

    def summary(self) -> dict[str, float | int]:
        return {
            "images": self.images,
            "plates": self.plates,
            "detection_recall": round(self.detection_recall, 4),
            "exact_plate_accuracy": round(self.exact_accuracy, 4),
            "top1_accuracy": round(self.top1_accuracy, 4),
            "char_accuracy": round(self.char_accuracy, 4),
            "false_positives": self.false_positives,
            "ms_per_image": round(self.ms_per_image, 1),
        }

    def details(self) -> list[dict[str, object]]:
        return [asdict(o) for o in self.outcomes]


def evaluate(
    recognize: Callable[[Image], list[PlateResult]],
    annotations: Path,
    images_dir: Path | None = None,
    iou_threshold: float = 0.3,
    limit: int | None = None,
) -> EvalReport:
    """Run ``recognize`` over every annotated image and score it."""
    gt = read_boxes(annotations)
    root = images_dir or Path(annotations).parent
    rep = EvalReport()
    for name in sorted(gt)[:limit]:
        raw = cv2.imread(str(root / name), cv2.IMREAD_COLOR)
        if raw is None:
            continue
        frame = np.asarray(raw, dtype=np.uint8)
        t0 = time.perf_counter()
        preds = recognize(frame)
        rep.total_ms += (time.perf_counter() - t0) * 1000
        rep.images += 1
        score_image(rep, name, gt[name], preds, iou_threshold)
    return rep


def score_image(rep: EvalReport, name: str, truths: list[GroundTruth], preds: list[PlateResult], thr: float) -> None:
    """Greedy IoU matching of predictions to ground truth for one image."""
    used: set[int] = set()
    labels = {t.text for t in truths if t.text}
    if preds and labels:
        best = max(preds, key=lambda p: p.confidence)
        rep.top1 += int(best.text in labels)
    for t in truths:
        rep.plates += 1
        cand = [(iou(t.box, p.box), i) for i, p in enumerate(preds) if i not in used]
        ov, idx = max(cand, default=(0.0, -1))
        detected = ov >= thr
        read = None
        if detected:
            used.add(idx)
            rep.detected += 1
            read = preds[idx].text
        if t.text:
            rep.labelled += 1
            rep.char_total += len(t.text)
            if read is not None:
                rep.exact += int(read == t.text)
                rep.char_correct += max(0, len(t.text) - edit_distance(read, t.text))
        rep.outcomes.append(PlateOutcome(name, t.text, t.box, detected, read, round(ov, 3)))
    rep.false_positives += len(preds) - len(used)
