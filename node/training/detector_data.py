"""Build the YOLO plate-detector dataset: real boxed frames + synthetic plates in real scenes.

Frames are scaled to the detector's inference scale (longest side ``infer_size``, with
jitter) and cut into ``tile`` x ``tile`` tiles around the plates, so training at a small
image size still teaches the plate sizes the detector sees at inference on a full frame.

Sources (all from ``shared/data/real-plates``; ``us/`` is never used here):
- ``ro-boxes/``: real dash-cam frames with their real (EU) plates, and the same frames with
  a synthetic US plate painted over each real box (real car context, US plate look);
- ``eu/``: real frames with real plates, and painted copies;
- ``no-plates/``: real scenes with 1-3 synthetic plates pasted in, and some as pure negatives;
- ``us-ucsd/`` (training side of its fixed split): real US plates in parking lots, boxes widened
  from the character row to the plate; the tail lights, badges and grilles around them are
  the false boxes the detector drew most;
- hard negatives: tiles of ``no-plates/`` centred on the boxes a previous detector
  (``hard_negative_model``) draws there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from alpr_common.similarity import iou
from node.recognition.annotations import read_boxes, split_names
from node.training.compose import degrade, match_lighting, paste, warp_plate
from node.training.plates import render_plate

Box = tuple[float, float, float, float]


@dataclass
class DetectorDataParams:
    seed: int = 0
    tile: int = 320
    infer_size: int = 640
    ro_real: int = 300
    ro_painted: int = 300
    eu_copies: int = 2  # per eu frame: one real, the rest painted
    synthetic: int = 450
    negatives: int = 60
    val_fraction: float = 0.08
    ucsd_copies: int = 0  # tiles per us-ucsd training frame
    hard_negatives: int = 0  # tiles around a previous detector's boxes in no-plates/
    hard_negative_model: str | None = None


def paint_us_plate(frame: np.ndarray, box: Box, rng: np.random.Generator) -> Box:
    """Cover a real plate box with a synthetic US plate of similar width; returns new box."""
    x1, y1, x2, y2 = box
    w = (x2 - x1) * rng.uniform(1.0, 1.12)
    plate = render_plate(rng)
    patch, mask, (bx1, by1, bx2, by2) = warp_plate(plate.image, max(8, int(w)), rng)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    px = int(cx - (bx1 + bx2) / 2)
    py = int(cy - (by1 + by2) / 2)
    region = frame[max(0, int(y1)) : int(y2), max(0, int(x1)) : int(x2)]
    patch = match_lighting(patch, region, rng)
    # blank the original plate a little beyond its box so no EU plate edge shows
    paste(frame, patch, mask, px, py)
    return (px + bx1, py + by1, px + bx2, py + by2)


def paste_random_plates(frame: np.ndarray, rng: np.random.Generator, n: int) -> list[Box]:
    """Paste ``n`` synthetic plates, 20-250 px wide (at inference scale), lower part of the frame."""
    h, w = frame.shape[:2]
    boxes: list[Box] = []
    for _ in range(n):
        pw = int(np.clip(np.exp(rng.uniform(np.log(22), np.log(230))), 12, w * 0.6))
        plate = render_plate(rng)
        patch, mask, (bx1, by1, bx2, by2) = warp_plate(plate.image, pw, rng)
        ph, pwp = patch.shape[:2]
        if pwp >= w or ph >= h:
            continue
        for _try in range(10):
            x = int(rng.integers(0, w - pwp))
            y = int(rng.integers(int(h * 0.25), h - ph)) if h - ph > h * 0.25 else int(rng.integers(0, h - ph))
            nb = (x + bx1, y + by1, x + bx2, y + by2)
            if all(iou(nb, b) == 0 for b in boxes):
                break
        else:
            continue
        if rng.random() < 0.4:  # a bumper / car body behind the plate
            col = tuple(int(v) for v in rng.integers(0, 255, size=3))
            m = int(pw * rng.uniform(0.1, 0.6))
            cv2.rectangle(frame, (x - m, y - m // 2), (x + pwp + m, y + ph + m // 2), col, -1)
        region = frame[y : y + ph, x : x + pwp]
        patch = match_lighting(patch, region, rng)
        paste(frame, patch, mask, x, y)
        boxes.append(nb)
    return boxes


def to_inference_scale(
    frame: np.ndarray, boxes: list[Box], rng: np.random.Generator, size: int
) -> tuple[np.ndarray, list[Box]]:
    """Resize so the longest side is ``size`` x jitter (the detector's view of the frame)."""
    h, w = frame.shape[:2]
    s = size * rng.uniform(0.75, 1.25) / max(h, w)
    out = cv2.resize(
        frame, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    )
    return out, [(b[0] * s, b[1] * s, b[2] * s, b[3] * s) for b in boxes]


def cut_tile(frame: np.ndarray, boxes: list[Box], rng: np.random.Generator, tile: int) -> tuple[np.ndarray, list[Box]]:
    """A tile x tile crop (padded grey if the frame is smaller) holding a random plate."""
    h, w = frame.shape[:2]
    if h < tile or w < tile:
        pad = np.full((max(h, tile), max(w, tile), 3), 114, np.uint8)
        pad[:h, :w] = frame
        frame, h, w = pad, max(h, tile), max(w, tile)
    if boxes and rng.random() < 0.9:
        b = boxes[int(rng.integers(len(boxes)))]
        bw, bh = b[2] - b[0], b[3] - b[1]
        lo_x, hi_x = int(max(0, b[2] - tile + 2)), int(min(w - tile, b[0] - 2))
        lo_y, hi_y = int(max(0, b[3] - tile + 2)), int(min(h - tile, b[1] - 2))
        x0 = int(rng.integers(lo_x, hi_x + 1)) if hi_x >= lo_x else int(np.clip(b[0] + bw / 2 - tile / 2, 0, w - tile))
        y0 = int(rng.integers(lo_y, hi_y + 1)) if hi_y >= lo_y else int(np.clip(b[1] + bh / 2 - tile / 2, 0, h - tile))
    else:
        x0, y0 = int(rng.integers(0, w - tile + 1)), int(rng.integers(0, h - tile + 1))
    crop = frame[y0 : y0 + tile, x0 : x0 + tile].copy()
    out: list[Box] = []
    for b in boxes:
        cb = (b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0)
        clipped = (max(0.0, cb[0]), max(0.0, cb[1]), min(float(tile), cb[2]), min(float(tile), cb[3]))
        area = (cb[2] - cb[0]) * (cb[3] - cb[1])
        carea = max(0.0, clipped[2] - clipped[0]) * max(0.0, clipped[3] - clipped[1])
        if area > 0 and carea / area >= 0.6 and clipped[2] - clipped[0] >= 4:
            out.append(clipped)
        elif carea > 0:  # mostly cut off: grey it out so it is neither positive nor a false negative
            x1, y1, x2, y2 = (int(v) for v in clipped)
            crop[y1:y2, x1:x2] = 114
    return crop, out


def _write(root: Path, split: str, name: str, img: np.ndarray, boxes: list[Box]) -> None:
    h, w = img.shape[:2]
    cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    lines = []
    for x1, y1, x2, y2 in boxes:
        lines.append(f"0 {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
    (root / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))


def build_detector_dataset(data_root: Path, out: Path, params: DetectorDataParams, log=print) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Write ``out/{images,labels}/{train,val}`` and ``out/data.yaml``; returns counts."""
    rng = np.random.default_rng(params.seed)
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "val": 0, "boxes": 0}
    items: list[tuple[str, Path, list[Box], str]] = []  # (kind, path, boxes, mode)
    ro = read_boxes(data_root / "ro-boxes" / "boxes.tsv")
    ro_names = sorted(ro)
    order = rng.permutation(len(ro_names))
    for i in order[: params.ro_real]:
        n = ro_names[int(i)]
        items.append(("ro", data_root / "ro-boxes" / n, [g.box for g in ro[n]], "real"))
    for i in order[params.ro_real : params.ro_real + params.ro_painted]:
        n = ro_names[int(i)]
        items.append(("ro", data_root / "ro-boxes" / n, [g.box for g in ro[n]], "paint"))
    eu = read_boxes(data_root / "eu" / "annotations.tsv")
    for n in sorted(eu):
        for c in range(params.eu_copies):
            items.append(("eu", data_root / "eu" / n, [g.box for g in eu[n]], "real" if c == 0 else "paint"))
    neg = sorted((data_root / "no-plates").glob("*.jpg"))
    pick = rng.permutation(len(neg))
    for j in range(params.synthetic):
        items.append(("syn", neg[int(pick[j % len(neg)])], [], "paste"))
    for j in range(params.negatives):
        items.append(("neg", neg[int(pick[(params.synthetic + j) % len(neg)])], [], "none"))
    if params.ucsd_copies:
        val = split_names("us-ucsd", "val")
        ucsd = read_boxes(data_root / "us-ucsd" / "annotations.tsv", character_rows=True)
        for n in sorted(ucsd):
            if n not in val:
                for _ in range(params.ucsd_copies):
                    items.append(("ucsd", data_root / "us-ucsd" / n, [g.box for g in ucsd[n]], "real"))
    if params.hard_negatives and params.hard_negative_model:
        items += hard_negative_items(neg, params, rng, log)
    for k, (kind, path, boxes, mode) in enumerate(items):
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            continue
        bxs: list[Box] = [tuple(float(v) for v in b) for b in boxes]  # type: ignore[misc]
        if mode == "paint":
            bxs = [paint_us_plate(frame, b, rng) for b in bxs]
        if mode == "hard":  # centre the tile on the false box, at the frame's own scale
            x1, y1, x2, y2 = bxs[0]
            h, w = frame.shape[:2]
            t = params.tile
            x0 = int(np.clip((x1 + x2) / 2 - t / 2 + rng.uniform(-t / 4, t / 4), 0, max(0, w - t)))
            y0 = int(np.clip((y1 + y2) / 2 - t / 2 + rng.uniform(-t / 4, t / 4), 0, max(0, h - t)))
            tile = np.full((t, t, 3), 114, np.uint8)
            part = frame[y0 : y0 + t, x0 : x0 + t]
            tile[: part.shape[0], : part.shape[1]] = part
            split = "val" if rng.random() < params.val_fraction else "train"
            _write(out, split, f"{kind}_{mode}_{k:05d}", degrade(tile, rng, 0.5), [])
            counts[split] += 1
            continue
        frame, bxs = to_inference_scale(frame, bxs, rng, params.infer_size)
        if mode == "paste":
            bxs = paste_random_plates(frame, rng, int(rng.integers(1, 4)))
        frame = degrade(frame, rng, strength=0.6 if mode == "real" else 1.0)
        tile, tboxes = cut_tile(frame, bxs, rng, params.tile)
        split = "val" if rng.random() < params.val_fraction else "train"
        _write(out, split, f"{kind}_{mode}_{k:05d}", tile, tboxes)
        counts[split] += 1
        counts["boxes"] += len(tboxes)
        if k % 200 == 0:
            log(f"detector data: {k}/{len(items)} images")
    (out / "data.yaml").write_text(f"path: {out.resolve()}\ntrain: images/train\nval: images/val\nnames:\n  0: plate\n")
    (out / "counts.json").write_text(json.dumps(counts))
    return counts


def hard_negative_items(
    neg: list[Path],
    params: DetectorDataParams,
    rng: np.random.Generator,
    log: Callable[[str], object] = print,
) -> list[tuple[str, Path, list[Box], str]]:
    """Boxes ``params.hard_negative_model`` draws on plate-free scenes: one item per false box."""
    from node.recognition.detector import load_detector

    det = load_detector(Path(str(params.hard_negative_model)), conf=0.15, iou=0.5, imgsz=params.infer_size)
    found: list[tuple[str, Path, list[Box], str]] = []
    for path in neg:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            continue
        for d in det.detect(np.asarray(frame, dtype=np.uint8)):
            found.append(("hardneg", path, [tuple(float(v) for v in d.box)], "hard"))  # type: ignore[list-item]
    log(f"detector data: {len(found)} false boxes on {len(neg)} plate-free scenes")
    order = rng.permutation(len(found))[: params.hard_negatives]
    return [found[int(i)] for i in sorted(order)]
