"""Train the plate-look state classifier (``node/models/state_classifier.npz``).

Real plates of known state only: the training side of ``us-crops/`` (every state; each crop
whole and re-framed/degraded the way a detector box and a camera would show it), ``us-ucsd/``
training frames (California, cut out with detector-like jitter) and ``OTHER`` for real
non-US plates (``br-crops/``, ``eu/``). A multinomial logistic regression on
:func:`node.recognition.state.plate_look_features`.

Calibration: the trainer's own validation plates (``own_val_fraction`` of the us-crops
training side, drawn with the seed and never trained on) choose the smallest
probability threshold at which the answered states are right at least ``target_accuracy``
of the time. The fixed evaluation splits (``us-crops`` ``heldout``, ``us-ucsd`` ``val``) are
neither trained on nor used to choose anything.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from node.recognition.annotations import read_boxes, read_crop_labels, read_labels, split_names
from node.recognition.state import FEATURES_VERSION, NOT_A_STATE, plate_look_features
from node.training.compose import degrade
from node.training.ocr_data import OTHER_REGION, jitter_crop
from node.training.real_ocr_data import US_STATES, reframe_tight_crop, scale_down, ucsd_plate_box


@dataclass
class StateTrainParams:
    seed: int = 0
    crops_views: int = 6  # views of each us-crops training plate (the crop itself + re-framed/degraded)
    ucsd_views: int = 2
    br_plates: int = 400
    eu_views: int = 2
    own_val_fraction: float = 0.08
    own_val_views: int = 4
    c: float = 0.03  # inverse L2 strength of the logistic regression (chosen on own_val: 0.03-3 tried)
    target_accuracy: float = 0.97  # calibrated: accuracy when answered on the own validation plates


def _views(img: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The crop whole, then re-framed like a detector box and degraded like a camera."""
    out = [img]
    for _ in range(n - 1):
        out.append(degrade(reframe_tight_crop(img, rng), rng, 0.8))
    return [v for v in out if v.size]


def build_samples(
    data_root: Path, p: StateTrainParams, log: Callable[[str], None] = print
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Features and labels of the ``train`` and ``own_val`` samples."""
    rng = np.random.default_rng(p.seed)
    rows: dict[str, tuple[list[np.ndarray], list[str]]] = {"train": ([], []), "own_val": ([], [])}

    def add(split: str, crops: list[np.ndarray], label: str) -> None:
        for c in crops:
            rows[split][0].append(plate_look_features(c))
            rows[split][1].append(label)

    held = split_names("us-crops", "heldout")
    labels = read_crop_labels(data_root / "us-crops" / "labels.tsv")
    for name in sorted(labels):
        state = labels[name][1]
        if name in held or state not in US_STATES:
            continue
        img = cv2.imread(str(data_root / "us-crops" / name), cv2.IMREAD_COLOR)
        if img is None:
            continue
        if rng.random() < p.own_val_fraction:
            add("own_val", _views(img, p.own_val_views, rng), state)
        else:
            add("train", _views(img, p.crops_views, rng), state)
    log(f"state data: us-crops train {len(rows['train'][1])} views, own validation {len(rows['own_val'][1])}")
    ucsd_val = split_names("us-ucsd", "val")
    ucsd = read_boxes(data_root / "us-ucsd" / "annotations.tsv")
    for name in sorted(ucsd):
        if name in ucsd_val:
            continue
        frame = cv2.imread(str(data_root / "us-ucsd" / name), cv2.IMREAD_COLOR)
        if frame is None:
            continue
        box = ucsd_plate_box(ucsd[name][0].box)
        crops = [jitter_crop(frame, box, rng) for _ in range(p.ucsd_views)]
        add("train", [crops[0], *(degrade(scale_down(c, rng, 30, 120), rng, 0.8) for c in crops[1:])], "CA")
    br = read_labels(data_root / "br-crops" / "labels.tsv")
    for name in sorted(br)[: p.br_plates]:
        img = cv2.imread(str(data_root / "br-crops" / name), cv2.IMREAD_COLOR)
        if img is not None:
            add("train", [img, degrade(img, rng, 0.6)], OTHER_REGION)
    eu = read_boxes(data_root / "eu" / "annotations.tsv")
    for name in sorted(eu):
        frame = cv2.imread(str(data_root / "eu" / name), cv2.IMREAD_COLOR)
        if frame is None:
            continue
        for gt in eu[name]:
            x1, y1, x2, y2 = (float(v) for v in gt.box)
            add("train", [jitter_crop(frame, (x1, y1, x2, y2), rng) for _ in range(p.eu_views)], OTHER_REGION)
    log(f"state data: {len(rows['train'][1])} training views in all (us-ucsd California, OTHER: br-crops, eu)")
    return {k: (np.stack(x), np.array(y)) for k, (x, y) in rows.items()}


def calibrate(probs: np.ndarray, classes: np.ndarray, truth: np.ndarray, target: float) -> float:
    """The smallest threshold at which answered states (top class not OTHER, probability at or
    above it) are right at least ``target`` of the time on these samples; 1.0 if none is."""
    top = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    answer = np.array([classes[k] not in NOT_A_STATE for k in top])
    right = classes[top] == truth
    for thr in np.round(np.arange(0.05, 1.0, 0.01), 2):
        a = answer & (conf >= thr)
        if a.sum() and right[a].mean() >= target:
            return float(thr)
    return 1.0


def train_state(
    data_root: Path, out: Path, p: StateTrainParams, log: Callable[[str], None] = print
) -> dict[str, object]:
    """Fit, calibrate and write ``state_classifier.npz`` under ``out``; returns the figures."""
    from sklearn.linear_model import LogisticRegression  # training only (the train extra)

    t0 = time.time()
    data = build_samples(data_root, p, log)
    x, y = data["train"]
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-3
    model = LogisticRegression(C=p.c, max_iter=3000)
    model.fit((x - mean) / scale, y)
    classes = np.array([str(c) for c in model.classes_])
    vx, vy = data["own_val"]
    probs = model.predict_proba((vx - mean) / scale)
    thr = calibrate(probs, classes, vy, p.target_accuracy)
    answered = (probs.max(axis=1) >= thr) & np.array([c not in NOT_A_STATE for c in classes[probs.argmax(axis=1)]])
    right = classes[probs.argmax(axis=1)] == vy
    figures: dict[str, object] = {
        "train_views": len(y),
        "own_val_views": len(vy),
        "own_val_top1": round(float(right.mean()), 4),
        "min_confidence": thr,
        "own_val_coverage": round(float(answered.mean()), 4),
        "own_val_accuracy_when_answered": round(float(right[answered].mean()), 4) if answered.any() else 0.0,
        "train_seconds": round(time.time() - t0, 1),
        "params": asdict(p),
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "state_classifier.npz"
    np.savez_compressed(
        path, classes=classes, weights=model.coef_.T.astype(np.float32), bias=model.intercept_.astype(np.float32),
        mean=mean.astype(np.float32), scale=scale.astype(np.float32), min_confidence=np.float32(thr),
        features_version=np.int32(FEATURES_VERSION),
    )  # fmt: skip
    figures["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    log(f"state classifier: {figures}")
    return figures
