"""``alpr-node evaluate ANNOTATIONS.tsv``: detection recall/precision, exact/character accuracy, state, ms/image.

The annotation format is that of ``shared/data/real-plates`` (``filename x y w h text``,
images next to the file). A crop folder's ``labels.tsv`` (``filename text [state]``) is read
crop by crop without the detector. ``--split NAME`` scores only the files of a fixed split
(``node/recognition/splits.json``: ``us-ucsd`` ``val``, ``us-crops`` ``heldout``). Prints
one JSON summary line last (with the most frequent character confusions); ``--details FILE``
writes every plate's outcome and every false box.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from node.recognition.types import Detector
from node.recognize_cli import add_model_args, config_from_args


def detector_ms(detector: Detector, shape: tuple[int, int] = (720, 1280), runs: int = 20) -> float:
    """Median detector-only latency on a synthetic frame of ``shape`` (H, W)."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, size=(*shape, 3), dtype=np.uint8)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        detector.detect(frame)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="alpr-node evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("annotations", type=Path, help="annotations.tsv (images in the same folder)")
    ap.add_argument("--iou", type=float, default=0.3, help="IoU for a detection to count (default 0.3)")
    ap.add_argument("--limit", type=int, help="only the first N images")
    ap.add_argument("--split", help="only this fixed split of the set (e.g. val for us-ucsd, heldout for us-crops)")
    ap.add_argument("--details", type=Path, help="write per-plate outcomes as JSON here")
    ap.add_argument("--bench-detector", action="store_true", help="also time the detector alone on a 720p frame")
    ap.add_argument(
        "--record", metavar="NAME", help="store the summary under evaluation.NAME in node/models/manifest.json"
    )
    add_model_args(ap)
    args = ap.parse_args(argv[1:])
    if not args.annotations.exists():
        print(f"alpr-node evaluate: no such file {args.annotations}", file=sys.stderr)
        return 2
    from node.recognition.annotations import split_info, split_names
    from node.recognition.evaluation import evaluate, evaluate_crops
    from node.recognition.loading import load_recognizer

    set_name = args.annotations.resolve().parent.name
    only = None
    if args.split:
        try:
            only = split_names(set_name, args.split)
        except KeyError as e:
            print(f"alpr-node evaluate: {e.args[0]}", file=sys.stderr)
            return 2
    info = split_info(set_name)
    set_state = info.get("state")

    try:
        rec = load_recognizer(config_from_args(args))
    except (FileNotFoundError, ValueError) as e:
        print(f"alpr-node evaluate: {e}", file=sys.stderr)
        return 2
    crops = args.annotations.name == "labels.tsv"
    if crops:
        rep = evaluate_crops(rec.read_crop, args.annotations, limit=args.limit, only=only)
    else:
        rep = evaluate(
            rec.recognize, args.annotations, iou_threshold=args.iou, limit=args.limit, only=only,
            state=str(set_state) if set_state else None, character_rows=info.get("boxes") == "character_row",
        )  # fmt: skip
    if args.details:
        args.details.write_text(json.dumps(rep.details(), indent=1))
    for o in rep.outcomes:
        mark = "ok " if o.read == o.label and o.label else ("det" if o.detected else "MISS")
        state = f" state={o.state}/{o.read_state or '-'}" if o.state else ""
        print(f"{mark:4} {o.image:44} label={o.label or '-':9} read={o.read or '-':9} iou={o.iou}{state}")
    for f in rep.false_boxes:
        print(
            f"FALSE {f.image:43} read={f.read or '-':9} conf={f.confidence} det={f.detection_score} box={list(f.box)}"
        )
    summary: dict[str, object] = {
        "annotations": str(args.annotations), "split": args.split, "mode": "crops" if crops else "frames",
        **rep.summary(), "versions": rec.versions(),
    }  # fmt: skip
    if args.bench_detector:
        summary["detector_ms_720p"] = round(detector_ms(rec.detector), 1)
    if args.record:
        from node.recognition.loading import MODELS_DIR

        path = MODELS_DIR / "manifest.json"
        manifest = json.loads(path.read_text()) if path.exists() else {}
        manifest.setdefault("evaluation", {})[args.record] = summary
        path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(summary))
    return 0
