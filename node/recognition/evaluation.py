"""Evaluate a recognizer on an annotated folder (``annotations.tsv`` as in shared/data/real-plates).

Metrics:
- detection recall: ground-truth plates matched by a detection with IoU >= ``iou``;
- exact plate accuracy: ground-truth plates whose matched read equals the label exactly
  (missed plates count as wrong), over all labelled plates;
- top-1 accuracy: per image, the most confident read equals one of the image's labels;
- character accuracy: 1 - edit distance / label length, summed over matched or missed plates;
- detection precision: detections that matched a plate / all detections (false boxes lower it);
  every false box is listed (image, box, read, confidences) for mining hard negatives;
- state coverage: plates of known state that got a state answer (missed plates count as
  unanswered); state accuracy: answers that name the right state;
- confusions: the most frequent character substitutions, drops and insertions (label -> read)
  of the matched reads;
- ms per image: wall time of ``recognize`` (image decoding excluded).

Crop sets (``labels.tsv``: ``filename text [state]``) skip the detector: each crop is read
whole, so their figures are the OCR's and the state classifier's alone.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from alpr_common.similarity import edit_distance as edit_distance
from alpr_common.similarity import iou as iou
from node.recognition.annotations import GroundTruth, read_boxes, read_crop_labels
from node.recognition.types import Image, PlateResult


@dataclass
class PlateOutcome:
    image: str
    label: str | None
    box: tuple[int, int, int, int]
    detected: bool
    read: str | None
    iou: float
    state: str | None = None
    read_state: str | None = None


@dataclass
class FalseBox:
    """A box drawn where no labelled plate is: what the next detector's hard negatives are."""

    image: str
    box: tuple[int, int, int, int]
    read: str
    confidence: float
    detection_score: float


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
    with_state: int = 0
    state_answered: int = 0
    state_correct: int = 0
    total_ms: float = 0.0
    confusions: Counter[tuple[str, str]] = field(default_factory=Counter)
    outcomes: list[PlateOutcome] = field(default_factory=list)
    false_boxes: list[FalseBox] = field(default_factory=list)

    @property
    def detection_precision(self) -> float:
        boxes = self.detected + self.false_positives
        return self.detected / boxes if boxes else 0.0

    @property
    def state_coverage(self) -> float:
        return self.state_answered / self.with_state if self.with_state else 0.0

    @property
    def state_accuracy(self) -> float:
        return self.state_correct / self.state_answered if self.state_answered else 0.0

    def top_confusions(self, n: int = 15) -> list[list[object]]:
        """``[label_char, read_char, count]``, most frequent first; "" marks a dropped/extra character."""
        return [[a, b, k] for (a, b), k in self.confusions.most_common(n)]

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

    def summary(self) -> dict[str, object]:
        return {
            "images": self.images,
            "plates": self.plates,
            "detection_recall": round(self.detection_recall, 4),
            "detection_precision": round(self.detection_precision, 4),
            "exact_plate_accuracy": round(self.exact_accuracy, 4),
            "top1_accuracy": round(self.top1_accuracy, 4),
            "char_accuracy": round(self.char_accuracy, 4),
            "false_positives": self.false_positives,
            "false_positives_per_image": round(self.false_positives / self.images, 3) if self.images else 0.0,
            "plates_with_state": self.with_state,
            "state_coverage": round(self.state_coverage, 4),
            "state_accuracy": round(self.state_accuracy, 4),
            "ms_per_image": round(self.ms_per_image, 1),
            "confusions": self.top_confusions(),
        }

    def details(self) -> dict[str, list[dict[str, object]]]:
        return {"plates": [asdict(o) for o in self.outcomes], "false_boxes": [asdict(f) for f in self.false_boxes]}


def evaluate(
    recognize: Callable[[Image], list[PlateResult]],
    annotations: Path,
    images_dir: Path | None = None,
    iou_threshold: float = 0.3,
    limit: int | None = None,
    only: Iterable[str] | None = None,
    state: str | None = None,
    character_rows: bool = False,
) -> EvalReport:
    """Run ``recognize`` over every annotated image (or those named in ``only``) and score it.

    ``state``: the state of every plate of the set, when it is all of one state;
    ``character_rows``: the set's boxes cover only the characters (widened to the plate)."""
    gt = read_boxes(annotations, state=state, character_rows=character_rows)
    root = images_dir or Path(annotations).parent
    rep = EvalReport()
    names = sorted(gt) if only is None else sorted(set(gt) & set(only))
    for name in names[:limit]:
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
        read = read_state = None
        if detected:
            used.add(idx)
            rep.detected += 1
            read, read_state = preds[idx].text, preds[idx].state
        score_read(rep, t.text, read, t.state, read_state)
        rep.outcomes.append(PlateOutcome(name, t.text, t.box, detected, read, round(ov, 3), t.state, read_state))
    rep.false_positives += len(preds) - len(used)
    for i, p in enumerate(preds):
        if i not in used:
            box = (int(p.box[0]), int(p.box[1]), int(p.box[2]), int(p.box[3]))
            rep.false_boxes.append(FalseBox(name, box, p.text, round(p.confidence, 3), round(p.detection_score, 3)))


def score_read(rep: EvalReport, label: str | None, read: str | None, state: str | None, read_state: str | None) -> None:
    """Text and state figures of one plate (``read`` None: not found)."""
    if label:
        rep.labelled += 1
        rep.char_total += len(label)
        if read is not None:
            rep.exact += int(read == label)
            rep.char_correct += max(0, len(label) - edit_distance(read, label))
            rep.confusions.update(char_confusions(label, read))
    if state:
        rep.with_state += 1
        if read_state is not None:
            rep.state_answered += 1
            rep.state_correct += int(read_state == state)


def char_confusions(label: str, read: str) -> list[tuple[str, str]]:
    """The edits of one minimal alignment of ``label`` to ``read``: (label char, read char) pairs,
    ``("X", "")`` for a dropped and ``("", "X")`` for an extra character."""
    n, m = len(label), len(read)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (label[i - 1] != read[j - 1]))
    out: list[tuple[str, str]] = []
    i, j = n, m
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + (label[i - 1] != read[j - 1]):
            if label[i - 1] != read[j - 1]:
                out.append((label[i - 1], read[j - 1]))
            i, j = i - 1, j - 1
        elif i and d[i][j] == d[i - 1][j] + 1:
            out.append((label[i - 1], ""))
            i -= 1
        else:
            out.append(("", read[j - 1]))
            j -= 1
    return out[::-1]


def evaluate_crops(
    read_crop: Callable[[Image], PlateResult],
    labels: Path,
    limit: int | None = None,
    only: Iterable[str] | None = None,
) -> EvalReport:
    """Read every labelled crop whole (no detector) and score text and state."""
    gt = read_crop_labels(labels)
    root = Path(labels).parent
    rep = EvalReport()
    names = sorted(gt) if only is None else sorted(set(gt) & set(only))
    for name in names[:limit]:
        raw = cv2.imread(str(root / name), cv2.IMREAD_COLOR)
        if raw is None:
            continue
        crop = np.asarray(raw, dtype=np.uint8)
        text, state = gt[name]
        t0 = time.perf_counter()
        pred = read_crop(crop)
        rep.total_ms += (time.perf_counter() - t0) * 1000
        rep.images += 1
        rep.plates += 1
        rep.detected += 1
        rep.top1 += int(pred.text == text)
        score_read(rep, text, pred.text, state, pred.state)
        h, w = crop.shape[:2]
        rep.outcomes.append(PlateOutcome(name, text, (0, 0, w, h), True, pred.text, 1.0, state, pred.state))
    return rep
