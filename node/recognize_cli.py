"""``alpr-node recognize [--json] IMAGE...``: detect and read plates in still images.

With ``--json`` each image gives one line: ``{"image", "plates": [{"text", "confidence",
"box": [x1, y1, x2, y2], "state", "state_confidence", "char_confidences"}]}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from node.recognition.types import PlateResult

if TYPE_CHECKING:
    from node.recognition.loading import RecognizerConfig


def plate_json(p: PlateResult) -> dict[str, object]:
    """The recognize contract for one plate (ARCHITECTURE.md)."""
    return {
        "text": p.text,
        "confidence": round(float(p.confidence), 4),
        "box": [int(v) for v in p.box],
        "state": p.state,
        "state_confidence": round(float(p.state_confidence), 4),
        "char_confidences": [round(float(c), 4) for c in p.char_confidences],
        "detection_score": round(float(p.detection_score), 4),
    }


def add_model_args(ap: argparse.ArgumentParser) -> None:
    """Options shared by recognize and evaluate to pick models."""
    ap.add_argument("--detector", type=Path, help="detector model (.onnx or ultralytics file)")
    ap.add_argument(
        "--detector-runtime",
        choices=["onnxruntime", "ultralytics"],
        help="onnxruntime (default): a YOLO ONNX export; ultralytics: any model file ultralytics loads",
    )
    ap.add_argument("--detector-imgsz", type=int, help="detector input size (dynamic/ultralytics models)")
    ap.add_argument("--detector-conf", type=float, help="minimum detection score")
    ap.add_argument(
        "--detector-input",
        choices=["fit", "square"],
        help="square (default): as exported; fit: pad only to a multiple of 32",
    )
    ap.add_argument("--ocr-model", type=Path, help="fast-plate-ocr ONNX model")
    ap.add_argument("--plate-config", type=Path, help="fast-plate-ocr plate config yaml")
    ap.add_argument("--hub-ocr-model", help="fast-plate-ocr hub model name (downloads; needs network)")
    ap.add_argument("--ocr-views", type=int, help="crops read per plate and averaged, 1-5 (default 5)")
    ap.add_argument("--format-min-ratio", type=float, help="plate-format-guided decoding, 0 = off (default 0.1)")
    ap.add_argument("--min-plate-chars", type=int, help="drop boxes read with fewer characters (0 = keep all)")
    ap.add_argument(
        "--state-model", help="state classifier .npz (default: the shipped one); 'ocr-head' = the OCR's region head"
    )
    ap.add_argument("--state-min-confidence", type=float, help="report a state only this sure (default: calibrated)")
    ap.add_argument(
        "--min-read-confidence", type=float, help="drop boxes read less surely than this (default 0.35, 0 = keep all)"
    )
    ap.add_argument(
        "--sure-detection-score",
        type=float,
        help="keep boxes the detector scores at least this however unsure the read (default 0.7, 1 = never)",
    )


def config_from_args(args: argparse.Namespace) -> RecognizerConfig:
    from node.recognition.loading import RecognizerConfig

    over: dict[str, object] = {}
    for attr, key in (
        ("detector", "detector_path"),
        ("detector_runtime", "detector_runtime"),
        ("detector_imgsz", "detector_imgsz"),
        ("detector_conf", "detector_conf"),
        ("detector_input", "detector_input"),
        ("ocr_model", "ocr_model_path"),
        ("plate_config", "plate_config_path"),
        ("hub_ocr_model", "hub_ocr_model"),
        ("ocr_views", "ocr_views"),
        ("format_min_ratio", "format_min_ratio"),
        ("min_plate_chars", "min_plate_chars"),
        ("min_read_confidence", "min_read_confidence"),
        ("sure_detection_score", "sure_detection_score"),
        ("state_min_confidence", "state_min_confidence"),
    ):
        v = getattr(args, attr, None)
        if v is not None:
            over[key] = v
    state_model = getattr(args, "state_model", None)
    if state_model is not None:
        over["state_model_path"] = None if state_model == "ocr-head" else Path(state_model)
    return RecognizerConfig(**over)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="alpr-node recognize", description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="one JSON object per image per line")
    add_model_args(ap)
    ap.add_argument("images", nargs="+", type=Path)
    args = ap.parse_args(argv[1:])
    from node.recognition.loading import load_recognizer

    try:
        rec = load_recognizer(config_from_args(args))
    except (FileNotFoundError, ValueError) as e:
        print(f"alpr-node recognize: {e}", file=sys.stderr)
        return 2
    rc = 0
    for path in args.images:
        raw = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if raw is None:
            print(f"alpr-node recognize: cannot read image {path}", file=sys.stderr)
            rc = 1
            continue
        plates = rec.recognize(np.asarray(raw, dtype=np.uint8))
        if args.json:
            print(json.dumps({"image": str(path), "plates": [plate_json(p) for p in plates]}), flush=True)
        else:
            found = ", ".join(
                f"{p.text or '?'} ({p.confidence:.2f}{', ' + p.state if p.state else ''}) at {list(p.box)}"
                for p in plates
            )
            print(f"{path}: {found or 'no plate found'}", flush=True)
    return rc
