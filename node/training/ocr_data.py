"""Build the OCR training set: synthetic US plate crops + real crops (``br-crops/``, ``eu/``).

Crops imitate what the detector hands the OCR: the plate box with some jitter and margin,
taken from a frame after perspective, scaling to 40-220 px wide, blur, noise and JPEG.
Output: ``out/{train,val}.csv`` (``image_path,plate_text,plate_region``) for fast-plate-ocr.
Real non-US plates get the region ``OTHER`` so the state head learns to say "not a US
state I know" instead of guessing.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from node.recognition.annotations import read_boxes, read_labels
from node.training.compose import degrade, match_lighting, paste, warp_plate
from node.training.plates import STATE_CODES, render_plate

OTHER_REGION = "OTHER"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
PAD_CHAR = "_"
MAX_SLOTS = 8
REGIONS: tuple[str, ...] = (*STATE_CODES, OTHER_REGION)


@dataclass
class OcrDataParams:
    seed: int = 0
    synthetic: int = 12000
    br_copies: int = 2
    eu_copies: int = 6
    val_synthetic: int = 400
    val_br: int = 100


def jitter_crop(frame: np.ndarray, box: tuple[float, float, float, float], rng: np.random.Generator) -> np.ndarray:
    """Crop a box with detector-like error: margins from -4% to +14% per side."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    fx1 = x1 - w * rng.uniform(-0.04, 0.12)
    fx2 = x2 + w * rng.uniform(-0.04, 0.12)
    fy1 = y1 - h * rng.uniform(-0.06, 0.16)
    fy2 = y2 + h * rng.uniform(-0.06, 0.16)
    H, W = frame.shape[:2]
    ix1, iy1 = int(max(0, fx1)), int(max(0, fy1))
    ix2, iy2 = int(min(W, fx2)), int(min(H, fy2))
    if ix2 - ix1 < 4 or iy2 - iy1 < 4:
        return frame[int(y1) : int(y2), int(x1) : int(x2)]
    return frame[iy1:iy2, ix1:ix2]


def synthetic_crop(rng: np.random.Generator, backgrounds: list[np.ndarray]) -> tuple[np.ndarray, str, str]:
    """One synthetic plate seen by a camera and cropped like the detector would."""
    plate = render_plate(rng)
    width = int(np.exp(rng.uniform(np.log(40), np.log(220))))
    patch, mask, (bx1, by1, bx2, by2) = warp_plate(plate.image, width, rng)
    ph, pw = patch.shape[:2]
    mx, my = pw // 2 + 4, ph // 2 + 4
    bg = backgrounds[int(rng.integers(len(backgrounds)))]
    need_w, need_h = pw + 2 * mx, ph + 2 * my
    bh, bw = bg.shape[:2]
    if bw >= need_w and bh >= need_h:
        x0, y0 = int(rng.integers(0, bw - need_w + 1)), int(rng.integers(0, bh - need_h + 1))
        canvas = bg[y0 : y0 + need_h, x0 : x0 + need_w].copy()
    else:
        canvas = cv2.resize(bg, (need_w, need_h))
    if rng.random() < 0.6:  # car body colour around the plate
        col = tuple(int(v) for v in rng.integers(0, 255, size=3))
        cv2.rectangle(canvas, (mx - pw // 6, my - ph // 5), (mx + pw + pw // 6, my + ph + ph // 5), col, -1)
    patch = match_lighting(patch, canvas[my : my + ph, mx : mx + pw], rng)
    paste(canvas, patch, mask, mx, my)
    canvas = degrade(canvas, rng, strength=0.75)
    crop = jitter_crop(canvas, (mx + bx1, my + by1, mx + bx2, my + by2), rng)
    return crop, plate.text, plate.state


def _load_backgrounds(data_root: Path, rng: np.random.Generator, n: int = 150) -> list[np.ndarray]:
    files = sorted((data_root / "no-plates").glob("*.jpg"))
    pick = rng.permutation(len(files))[:n]
    out = []
    for i in pick:
        im = cv2.imread(str(files[int(i)]), cv2.IMREAD_COLOR)
        if im is not None:
            out.append(im)
    return out


def build_ocr_dataset(data_root: Path, out: Path, params: OcrDataParams, log=print) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Write crops and ``train.csv`` / ``val.csv`` under ``out``; returns counts."""
    rng = np.random.default_rng(params.seed)
    img_dir = out / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    backgrounds = _load_backgrounds(data_root, rng)
    rows: dict[str, list[tuple[str, str, str]]] = {"train": [], "val": []}

    def save(split: str, name: str, crop: np.ndarray, text: str, region: str) -> None:
        cv2.imwrite(str(img_dir / f"{name}.png"), crop)
        rows[split].append((f"img/{name}.png", text, region))

    n_syn = params.synthetic + params.val_synthetic
    for i in range(n_syn):
        crop, text, state = synthetic_crop(rng, backgrounds)
        save("val" if i < params.val_synthetic else "train", f"syn{i:06d}", crop, text, state)
        if i % 2000 == 0:
            log(f"ocr data: synthetic {i}/{n_syn}")
    br = read_labels(data_root / "br-crops" / "labels.tsv")
    names = sorted(br)
    order = rng.permutation(len(names))
    for rank, idx in enumerate(order):
        name = names[int(idx)]
        text = br[name]
        if not (1 <= len(text) <= MAX_SLOTS):
            continue
        img = cv2.imread(str(data_root / "br-crops" / name), cv2.IMREAD_COLOR)
        if img is None:
            continue
        if rank < params.val_br:
            save("val", f"br{rank:05d}", img, text, OTHER_REGION)
            continue
        save("train", f"br{rank:05d}_0", img, text, OTHER_REGION)
        for c in range(1, params.br_copies):
            h, w = img.shape[:2]
            small = cv2.resize(img, (max(8, int(w * rng.uniform(0.3, 0.9))), max(4, int(h * rng.uniform(0.3, 0.9)))))
            save("train", f"br{rank:05d}_{c}", degrade(small, rng, 0.7), text, OTHER_REGION)
    eu = read_boxes(data_root / "eu" / "annotations.tsv")
    for k, name in enumerate(sorted(eu)):
        frame = cv2.imread(str(data_root / "eu" / name), cv2.IMREAD_COLOR)
        if frame is None:
            continue
        for j, gt in enumerate(eu[name]):
            if not gt.text or not (1 <= len(gt.text) <= MAX_SLOTS):
                continue
            for c in range(params.eu_copies):
                crop = jitter_crop(frame, tuple(float(v) for v in gt.box), rng)  # type: ignore[arg-type]
                if c:
                    crop = degrade(crop, rng, 0.6)
                save("train", f"eu{k:04d}_{j}_{c}", crop, gt.text, OTHER_REGION)
    counts = {}
    for split, items in rows.items():
        with (out / f"{split}.csv").open("w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["image_path", "plate_text", "plate_region"])
            wr.writerows(items)
        counts[split] = len(items)
    (out / "counts.json").write_text(json.dumps(counts))
    return counts
