"""OCR training set built around real US plates: ``us-crops/`` and ``us-ucsd/`` first.

What the OCR sees at run time is a detector box around a real plate, often small, blurred,
dark or JPEG-damaged. Each real plate is therefore cut out several times the way a detector
would (box jitter, margins, a little perspective) and degraded (low resolution, blur,
night/IR looks, JPEG); real non-US crops (``br-crops/``, ``eu/``) and synthetic plates keep
the model general. The fixed splits (``node/recognition/splits.json``) are never used:
``us-ucsd`` ``val`` and ``us-crops`` ``heldout`` stay for evaluation, and the trainer's own
validation rows come from the training side (``own_val_fraction``).

``us-ucsd`` boxes cover only the character row of each plate (the ``us/`` boxes cover the
whole plate): :func:`ucsd_plate_box` widens them to the plate, as a detector would draw it.

Hard examples: with ``hard_model`` (an exported OCR, ``plate_config.yaml`` beside it), each
training plate is first read in ``hard_views`` degraded views; a plate the model misreads in
some of them (the look-alikes of real fonts: 8/B, M/H/W, 0/D/Q, 1/I/T, edge clutter) gets up
to ``hard_copies`` extra views, in proportion to its misreads. Only the training side is read.

Region (state) labels: the state of ``us-crops``; California for ``us-ucsd``; ``OTHER``
for non-US plates; the generator's state look for synthetic plates.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from node.recognition.annotations import (
    plate_box_from_character_row,
    read_boxes,
    read_crop_labels,
    read_labels,
    split_names,
)
from node.training.compose import degrade
from node.training.ocr_data import MAX_SLOTS, OTHER_REGION, _load_backgrounds, jitter_crop, synthetic_crop

US_STATES: tuple[str, ...] = (
    "AK", "AL", "AR", "AZ", "CA", "CO", "CT", "DC", "DE", "FL", "GA", "HI", "IA", "ID", "IL", "IN", "KS",
    "KY", "LA", "MA", "MD", "ME", "MI", "MN", "MO", "MS", "MT", "NC", "ND", "NE", "NH", "NJ", "NM", "NV",
    "NY", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VA", "VT", "WA", "WI", "WV", "WY",
)  # fmt: skip
REAL_REGIONS: tuple[str, ...] = (*US_STATES, OTHER_REGION)


@dataclass
class RealOcrDataParams:
    seed: int = 0
    crops_copies: int = 8  # views of each us-crops training plate
    ucsd_copies: int = 12  # views of each us-ucsd training frame's plate
    br_copies: int = 1
    eu_copies: int = 3
    synthetic: int = 2500
    own_val_fraction: float = 0.08
    hard_model: str | None = None  # exported OCR used to find the plates it misreads
    hard_views: int = 4
    hard_copies: int = 8


class HardExampleMiner:
    """Extra training views for the plates a model misreads (see the module docstring)."""

    def __init__(self, params: RealOcrDataParams) -> None:
        from node.recognition.ocr import FastPlateReader

        model = Path(str(params.hard_model))
        self.reader = FastPlateReader(model, model.parent / "plate_config.yaml")
        self.params = params
        self.plates = 0
        self.hard = 0
        self.extra = 0

    def extra_views(self, text: str, view: Callable[[], np.ndarray]) -> list[np.ndarray]:
        """Read ``hard_views`` fresh views of a plate; return extra views if some were misread."""
        p = self.params
        views = [view() for _ in range(p.hard_views)]
        missed = sum(self.reader.read(v).text != text for v in views if v.size)
        self.plates += 1
        if not missed:
            return []
        self.hard += 1
        n = int(np.ceil(p.hard_copies * missed / p.hard_views))
        self.extra += n
        return [view() for _ in range(n)]


def ucsd_plate_box(box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """The whole plate around a us-ucsd character-row box."""
    x1, y1, x2, y2 = plate_box_from_character_row(box)
    return float(x1), float(y1), float(x2), float(y2)


def reframe_tight_crop(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A tight, straight plate crop as a detector box would give it: on a car-coloured surround,
    with jittered margins, a little rotation/perspective, and scaled down."""
    h, w = crop.shape[:2]
    pad = int(0.3 * max(h, w))
    col = [int(v) for v in rng.integers(0, 255, size=3)]
    canvas = cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=col)
    if rng.random() < 0.5:  # some surroundings continue the plate's edge (frames, bumpers)
        canvas = cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    H, W = canvas.shape[:2]
    src = np.array([[pad, pad], [pad + w, pad], [pad + w, pad + h], [pad, pad + h]], np.float32)
    d = 0.04 * w
    dst = src + rng.uniform(-d, d, size=(4, 2)).astype(np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    canvas = cv2.warpPerspective(canvas, m, (W, H), borderMode=cv2.BORDER_REPLICATE)
    xs, ys = dst[:, 0], dst[:, 1]
    box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    out = jitter_crop(canvas, box, rng)
    return scale_down(out, rng)


def scale_down(img: np.ndarray, rng: np.random.Generator, lo: float = 36, hi: float = 220) -> np.ndarray:
    """Plate widths as cameras see them (log-uniform), then back up a little sometimes."""
    h, w = img.shape[:2]
    tw = int(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    if tw < w:
        img = cv2.resize(img, (tw, max(4, int(h * tw / w))), interpolation=cv2.INTER_AREA)
    return img


def build_real_ocr_dataset(data_root: Path, out: Path, params: RealOcrDataParams, log=print) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Write crops and ``train.csv`` / ``val.csv`` under ``out``; returns counts and data hashes."""
    rng = np.random.default_rng(params.seed)
    img_dir = out / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[tuple[str, str, str]]] = {"train": [], "val": []}
    counts: dict[str, int] = {}
    miner = HardExampleMiner(params) if params.hard_model else None

    def save(split: str, name: str, crop: np.ndarray, text: str, region: str, source: str) -> None:
        if crop.size == 0:
            return
        cv2.imwrite(str(img_dir / f"{name}.png"), crop)
        rows[split].append((f"img/{name}.png", text, region))
        counts[f"{split}_{source}"] = counts.get(f"{split}_{source}", 0) + 1

    # us-crops: every state's real fonts
    crops_lab = data_root / "us-crops" / "labels.tsv"
    held = split_names("us-crops", "heldout")
    labels = read_crop_labels(crops_lab)
    names = [n for n in sorted(labels) if n not in held]
    for k, idx in enumerate(rng.permutation(len(names))):
        name = names[int(idx)]
        text, state = labels[name]
        img = cv2.imread(str(data_root / "us-crops" / name), cv2.IMREAD_COLOR)
        if img is None or not (1 <= len(text) <= MAX_SLOTS) or state not in US_STATES:
            continue
        if rng.random() < params.own_val_fraction:
            save("val", f"usc{k:04d}", reframe_tight_crop(img, rng), text, state, "us-crops")
            continue
        save("train", f"usc{k:04d}_0", img, text, state, "us-crops")

        def crop_view(img: np.ndarray = img) -> np.ndarray:
            return degrade(reframe_tight_crop(img, rng), rng, 0.8)

        for c in range(1, params.crops_copies):
            save("train", f"usc{k:04d}_{c}", crop_view(), text, state, "us-crops")
        for c, extra in enumerate(miner.extra_views(text, crop_view) if miner else []):
            save("train", f"usc{k:04d}_h{c}", extra, text, state, "hard_us-crops")
    log(f"real ocr data: us-crops {counts}")
    # us-ucsd: real California frames, boxes widened to the plate
    ucsd_val = split_names("us-ucsd", "val")
    ucsd = read_boxes(data_root / "us-ucsd" / "annotations.tsv")
    for k, name in enumerate(sorted(ucsd)):
        if name in ucsd_val:
            continue
        frame = cv2.imread(str(data_root / "us-ucsd" / name), cv2.IMREAD_COLOR)
        gt = ucsd[name][0]
        if frame is None or not gt.text or not (1 <= len(gt.text) <= MAX_SLOTS):
            continue
        box = ucsd_plate_box(gt.box)
        if rng.random() < params.own_val_fraction:
            save("val", f"ucsd{k:04d}", jitter_crop(frame, box, rng), gt.text, "CA", "us-ucsd")
            continue

        def frame_view(frame: np.ndarray = frame, box: tuple[float, float, float, float] = box) -> np.ndarray:
            return degrade(scale_down(jitter_crop(frame, box, rng), rng, 30, 120), rng, 0.8)

        save("train", f"ucsd{k:04d}_0", jitter_crop(frame, box, rng), gt.text, "CA", "us-ucsd")
        for c in range(1, params.ucsd_copies):
            save("train", f"ucsd{k:04d}_{c}", frame_view(), gt.text, "CA", "us-ucsd")
        for c, extra in enumerate(miner.extra_views(gt.text, frame_view) if miner else []):
            save("train", f"ucsd{k:04d}_h{c}", extra, gt.text, "CA", "hard_us-ucsd")
    # real non-US plates
    br = read_labels(data_root / "br-crops" / "labels.tsv")
    for k, name in enumerate(sorted(br)):
        img = cv2.imread(str(data_root / "br-crops" / name), cv2.IMREAD_COLOR)
        if img is None or not (1 <= len(br[name]) <= MAX_SLOTS):
            continue
        for c in range(params.br_copies):
            save("train", f"br{k:05d}_{c}", degrade(img, rng, 0.5) if c else img, br[name], OTHER_REGION, "br-crops")
    eu = read_boxes(data_root / "eu" / "annotations.tsv")
    for k, name in enumerate(sorted(eu)):
        frame = cv2.imread(str(data_root / "eu" / name), cv2.IMREAD_COLOR)
        if frame is None:
            continue
        for j, gt in enumerate(eu[name]):
            if gt.text and 1 <= len(gt.text) <= MAX_SLOTS:
                for c in range(params.eu_copies):
                    crop = jitter_crop(frame, tuple(float(v) for v in gt.box), rng)  # type: ignore[arg-type]
                    save("train", f"eu{k:04d}_{j}_{c}", degrade(crop, rng, 0.6) if c else crop, gt.text,
                         OTHER_REGION, "eu")  # fmt: skip
    # synthetic plates of the generator's state looks
    backgrounds = _load_backgrounds(data_root, rng, 60)
    for i in range(params.synthetic):
        crop, text, state = synthetic_crop(rng, backgrounds)
        save("train", f"syn{i:05d}", crop, text, state if state in US_STATES else OTHER_REGION, "synthetic")
    for split, items in rows.items():
        with (out / f"{split}.csv").open("w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["image_path", "plate_text", "plate_region"])
            wr.writerows(items)
    if miner:
        log(f"real ocr data: {miner.hard} of {miner.plates} training plates misread in some views, "
            f"{miner.extra} extra views of them")  # fmt: skip
    info: dict[str, object] = {
        "counts": counts,
        "hard_examples": {
            "model": miner.reader.version,
            "plates": miner.plates,
            "misread": miner.hard,
            "extra_views": miner.extra,
        }
        if miner
        else None,
        "train": len(rows["train"]),
        "val": len(rows["val"]),
        "labels_sha256": {
            str(p.relative_to(data_root)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in (
                crops_lab,
                data_root / "us-ucsd" / "annotations.tsv",
                data_root / "br-crops" / "labels.tsv",
                data_root / "eu" / "annotations.tsv",
            )
        },
    }
    (out / "counts.json").write_text(json.dumps(info, indent=1))
    return info
