"""``alpr-node train``: generate data, train the detector and the OCR, install the models.

Subcommands (all deterministic for a given ``--seed``; logs go to stdout):

  samples        write N synthetic plates/crops as PNGs for a look (+ labels.tsv of the crops)
  detector-data  build the YOLO dataset (tiles of real + synthetic frames)
  detector       train YOLO from yaml and export ONNX
  ocr-data       build the OCR crop set (synthetic + br-crops + eu)
  ocr-real-data  build the OCR crop set around real US plates (us-crops, us-ucsd; splits left out)
  splits         (re)write node/recognition/splits.json (fixed evaluation splits; seeded)
  ocr            train fast-plate-ocr (TensorFlow backend) and export ONNX
  state          train the plate-look state classifier (--install: into node/models + manifest)
  install        copy trained models into node/models and write manifest.json
  all            everything above in order (about 1.5-2 h on a 2-core CPU)

Data: ``--data-root`` (default ``../shared/data/real-plates``); ``us/`` is never trained on.
Work files go under ``.run/training/`` (git-ignored).
Fonts: DejaVu is enough; ``apt-get install fonts-liberation fonts-freefont-ttf`` adds variety.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from node.training.offline import REPO_ROOT, RUN_DIR

DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data" / "real-plates"
WORK = RUN_DIR / "training"
MODELS_DIR = REPO_ROOT / "node" / "models"


def _log(msg: str) -> None:
    print(f"[{dt.datetime.now(dt.UTC).strftime('%H:%M:%S')}] {msg}", flush=True)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cmd_samples(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from node.training.ocr_data import _load_backgrounds, synthetic_crop
    from node.training.plates import render_plate

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    bgs = (
        _load_backgrounds(Path(args.data_root), rng, 20)
        if Path(args.data_root).exists()
        else [np.full((200, 300, 3), 90, np.uint8)]
    )
    labels = []
    for i in range(args.n):
        p = render_plate(rng)
        cv2.imwrite(str(out / f"plate_{i:03d}_{p.state}_{p.text}.png"), cv2.cvtColor(p.image, cv2.COLOR_RGB2BGR))
        crop, text, state = synthetic_crop(rng, bgs)
        name = f"crop_{i:03d}_{state}_{text}.png"
        cv2.imwrite(str(out / name), crop)
        labels.append(f"{name}\t{text}\t{state}\n")
    (out / "labels.tsv").write_text("".join(labels))  # the crops as a set `alpr-node evaluate` reads
    _log(f"wrote {2 * args.n} images and labels.tsv (crops: text, state look) to {out}")
    return 0


def cmd_detector_data(args: argparse.Namespace) -> int:
    from node.training.detector_data import DetectorDataParams, build_detector_dataset

    out = Path(args.out or WORK / "det_data")
    shutil.rmtree(out, ignore_errors=True)
    params = DetectorDataParams(seed=args.seed)
    if args.real_us:  # us-ucsd frames and hard negatives mined with the shipped detector
        params.ucsd_copies, params.hard_negatives = 3, 250
        params.hard_negative_model = str(MODELS_DIR / "plate_detector.onnx")
        params.ro_real, params.ro_painted, params.synthetic, params.negatives = 200, 150, 250, 150
    counts = build_detector_dataset(Path(args.data_root), out, params, log=_log)
    (out / "params.json").write_text(json.dumps(asdict(params)))
    _log(f"detector data: {counts} in {out}")
    return 0


def cmd_detector(args: argparse.Namespace) -> int:
    from node.training.train_detector import DetectorTrainParams, train_detector

    data = Path(args.data or WORK / "det_data")
    params = DetectorTrainParams(epochs=args.epochs, seed=args.seed, imgsz=args.imgsz, export_imgsz=args.export_imgsz)
    out = Path(args.out or WORK / "det_out")
    if args.init_onnx:  # fine-tune an exported detector (its .pt rebuilt from the ONNX)
        from node.training.detector_weights import write_detector_pt
        from node.training.offline import prepare_offline

        prepare_offline()
        out.mkdir(parents=True, exist_ok=True)
        params.weights = str(out / "init_from_onnx.pt")
        diff = write_detector_pt(Path(args.init_onnx), params.model_yaml, Path(params.weights))
        _log(f"detector: warm start from {args.init_onnx} (max output difference {diff:.2g})")
    if args.lr0 is not None:
        params.lr0 = args.lr0
    if args.warmup_epochs is not None:
        params.warmup_epochs = args.warmup_epochs
    train_detector(data / "data.yaml", out, params, log=_log)
    return 0


def cmd_ocr_data(args: argparse.Namespace) -> int:
    from node.training.ocr_data import OcrDataParams, build_ocr_dataset

    out = Path(args.out or WORK / "ocr_data")
    shutil.rmtree(out, ignore_errors=True)
    params = OcrDataParams(seed=args.seed, synthetic=args.synthetic)
    counts = build_ocr_dataset(Path(args.data_root), out, params, log=_log)
    (out / "params.json").write_text(json.dumps(asdict(params)))
    _log(f"ocr data: {counts} in {out}")
    return 0


def cmd_ocr_real_data(args: argparse.Namespace) -> int:
    from node.training.real_ocr_data import RealOcrDataParams, build_real_ocr_dataset

    out = Path(args.out or WORK / "ocr_real_data")
    shutil.rmtree(out, ignore_errors=True)
    params = RealOcrDataParams(seed=args.seed, synthetic=args.synthetic)
    if args.hard_examples:
        params.hard_model = str(Path(args.hard_examples).resolve())
    info = build_real_ocr_dataset(Path(args.data_root), out, params, log=_log)
    (out / "params.json").write_text(json.dumps(asdict(params)))
    _log(f"real ocr data: {info['counts']} in {out}")
    return 0


def cmd_splits(args: argparse.Namespace) -> int:
    from node.training.splits import write_splits

    splits = write_splits(Path(args.data_root), seed=args.seed)
    sets = splits["sets"]
    assert isinstance(sets, dict)
    _log(f"splits: { {k: {s: len(v) for s, v in d.items() if isinstance(v, list)} for k, d in sets.items()} }")
    return 0


def cmd_ocr(args: argparse.Namespace) -> int:
    from node.training.real_ocr_data import REAL_REGIONS
    from node.training.train_ocr import OcrTrainParams, train_ocr

    params = OcrTrainParams(
        epochs=args.epochs, seed=args.seed, lr=args.lr, weights_path=args.weights, init_onnx=args.init_onnx,
        regions=REAL_REGIONS if args.us_regions else None,
        warmup_fraction=args.warmup_fraction,
    )  # fmt: skip
    train_ocr(Path(args.data or WORK / "ocr_data"), Path(args.out or WORK / "ocr_out"), params, log=_log)
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    from node.training.train_state import StateTrainParams, train_state

    params = StateTrainParams(seed=args.seed)
    if args.c is not None:
        params.c = args.c
    if args.target_accuracy is not None:
        params.target_accuracy = args.target_accuracy
    out = Path(args.out or WORK / "state_out")
    figures = train_state(Path(args.data_root), out, params, log=_log)
    (out / "state_result.json").write_text(json.dumps(figures, indent=1))
    if args.install:
        name = "state_classifier.npz"
        shutil.copyfile(out / name, MODELS_DIR / name)
        path = MODELS_DIR / "manifest.json"
        manifest = json.loads(path.read_text()) if path.exists() else {}
        files = manifest.setdefault("files", {})
        files[name] = {"sha256": _sha(MODELS_DIR / name), "bytes": (MODELS_DIR / name).stat().st_size}
        manifest["state_training"] = {
            **figures,
            "git_commit": _git_commit(),
            "data": _data_version(Path(args.data_root)),
        }
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        _log(f"installed {name} into {MODELS_DIR}")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    """Copy trained models into node/models and record a manifest."""
    det_out = getattr(args, "detector_dir", None) or WORK / "det_out"
    ocr_out = getattr(args, "ocr_dir", None) or WORK / "ocr_out"
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    if args.detector_weights:  # a checkpoint (e.g. mid-training last.pt) instead of the final export
        from node.training.train_detector import export_detector

        shutil.copyfile(
            export_detector(Path(args.detector_weights), args.export_imgsz), det_out / "plate_detector.onnx"
        )
    if args.ocr_keras:
        from node.training.train_ocr import export_ocr

        export_ocr(Path(args.ocr_keras), ocr_out / "plate_config.yaml", ocr_out)
    files = {
        "plate_detector.onnx": det_out / "plate_detector.onnx",
        "plate_ocr.onnx": ocr_out / "plate_ocr.onnx",
        "plate_config.yaml": ocr_out / "plate_config.yaml",
    }
    keep_detector = bool(getattr(args, "keep_detector", False))
    if keep_detector:  # only the OCR was retrained: the shipped detector and its records stay
        files["plate_detector.onnx"] = MODELS_DIR / "plate_detector.onnx"
    for name, src in files.items():
        if not src.exists():
            print(f"alpr-node train install: missing {src} (train first)", file=sys.stderr)
            return 2
        if src.resolve() != (MODELS_DIR / name).resolve():
            shutil.copyfile(src, MODELS_DIR / name)
    import onnx

    from node.training.train_ocr import make_batchable

    ocr_model = onnx.load(str(MODELS_DIR / "plate_ocr.onnx"))
    if not ocr_model.graph.input[0].type.tensor_type.shape.dim[0].dim_param:  # exported before make_batchable
        make_batchable(ocr_model)
        onnx.save(ocr_model, str(MODELS_DIR / "plate_ocr.onnx"))
    manifest: dict[str, object] = {
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "files": {
            name: {"sha256": _sha(MODELS_DIR / name), "bytes": (MODELS_DIR / name).stat().st_size} for name in files
        },
    }
    old = MODELS_DIR / "manifest.json"
    prev = json.loads(old.read_text()) if old.exists() else {}
    det_data = Path(getattr(args, "detector_data_dir", None) or WORK / "det_data")
    ocr_data = Path(getattr(args, "ocr_data_dir", None) or WORK / "ocr_data")
    sources: list[tuple[str, Path]] = [
        ("ocr_data", ocr_data / "params.json"),
        ("ocr_data_counts", ocr_data / "counts.json"),
        ("ocr_training", ocr_out / "ocr_result.json"),
    ]
    state_model = MODELS_DIR / "state_classifier.npz"  # trained apart (train state --install): kept as is
    if state_model.exists():
        files_rec = manifest["files"]
        assert isinstance(files_rec, dict)
        files_rec[state_model.name] = {"sha256": _sha(state_model), "bytes": state_model.stat().st_size}
        manifest.update({k: v for k, v in prev.items() if k.startswith("state")})
    if keep_detector:
        manifest.update({k: v for k, v in prev.items() if k.startswith("detector")})
    else:
        sources += [
            ("detector_data", det_data / "params.json"),
            ("detector_data_counts", det_data / "counts.json"),
            ("detector_training", det_out / "detector_result.json"),
        ]
    for key, path in sources:
        if path.exists():
            manifest[key] = json.loads(path.read_text())
    history = prev.get("training_history", {})
    if getattr(args, "note", None):
        history = {**history, manifest["created_utc"]: args.note}
    manifest["training_history"] = history
    manifest["data_root_files"] = _data_version(Path(args.data_root))
    manifest["sources"] = {"detector_weights": args.detector_weights, "ocr_keras": args.ocr_keras}
    if "evaluation" in prev:  # the figures of the models replaced, for comparison
        manifest["evaluation_previous_models"] = prev["evaluation"]
    old.write_text(json.dumps(manifest, indent=2) + "\n")
    _log(f"installed models into {MODELS_DIR}")
    return 0


def _data_version(root: Path) -> dict[str, str]:
    """sha256 of each annotation file: identifies the data the models were trained on."""
    out = {}
    for p in sorted(root.glob("*/*.tsv")):
        out[str(p.relative_to(root))] = _sha(p)[:16]
    return out


def cmd_all(args: argparse.Namespace) -> int:
    for fn in (cmd_detector_data, cmd_detector, cmd_ocr_data, cmd_ocr, cmd_install):
        rc = fn(args)
        if rc:
            return rc
    return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="alpr-node train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
        p.add_argument("--out", help="output folder (default under .run/training)")
        p.add_argument("--data", help="input dataset folder (default under .run/training)")
        p.add_argument("--epochs", type=int, default=None)

    p = sub.add_parser("samples")
    common(p)
    p.add_argument("--n", type=int, default=20)
    p.set_defaults(fn=cmd_samples)
    for name, fn in (
        ("detector-data", cmd_detector_data), ("ocr-data", cmd_ocr_data), ("ocr-real-data", cmd_ocr_real_data),
        ("splits", cmd_splits),
    ):  # fmt: skip
        p = sub.add_parser(name)
        common(p)
        p.add_argument("--synthetic", type=int, default=12000, help="synthetic OCR crops")
        p.add_argument("--real-us", action="store_true", help="detector data: us-ucsd frames + mined hard negatives")
        p.add_argument(
            "--hard-examples", metavar="OCR_ONNX", nargs="?", const=str(MODELS_DIR / "plate_ocr.onnx"),
            help="ocr-real-data: extra views of the training plates this OCR misreads (default: the shipped one)",
        )  # fmt: skip
        p.set_defaults(fn=fn)
    p = sub.add_parser("state")
    common(p)
    p.add_argument("--c", type=float, help="inverse regularisation strength (default 0.03)")
    p.add_argument("--target-accuracy", type=float, help="calibration: accuracy when answered (default 0.97)")
    p.add_argument("--install", action="store_true", help="copy into node/models and record it in manifest.json")
    p.set_defaults(fn=cmd_state)
    p = sub.add_parser("install")
    common(p)
    p.add_argument("--detector-weights", help="export this .pt checkpoint instead of the finished run's ONNX")
    p.add_argument("--ocr-keras", help="export this .keras checkpoint instead of the finished run's ONNX")
    p.add_argument("--export-imgsz", type=int, default=640)
    p.add_argument("--detector-dir", type=Path, help="finished detector run folder (default .run/training/det_out)")
    p.add_argument("--ocr-dir", type=Path, help="finished OCR run folder (default .run/training/ocr_out)")
    p.add_argument("--ocr-data-dir", type=Path, help="the OCR data set used (default .run/training/ocr_data)")
    p.add_argument("--detector-data-dir", type=Path, help="the detector data set used (default .run/training/det_data)")
    p.add_argument("--keep-detector", action="store_true", help="install only the OCR; keep the shipped detector")
    p.add_argument("--note", help="one line for the manifest's training_history")
    p.set_defaults(fn=cmd_install)
    for name, fn in (("detector", cmd_detector), ("ocr", cmd_ocr), ("all", cmd_all)):
        p = sub.add_parser(name)
        common(p)
        p.add_argument("--imgsz", type=int, default=320, help="detector training tile size")
        p.add_argument("--export-imgsz", type=int, default=640, help="detector ONNX input size")
        p.add_argument("--lr", type=float, default=0.002, help="OCR learning rate")
        p.add_argument("--weights", help="OCR warm start (.keras)")
        p.add_argument("--init-onnx", help="OCR warm start from an exported model (plate_config.yaml beside it)")
        p.add_argument("--us-regions", action="store_true", help="state head over all 50 states + DC + OTHER")
        p.add_argument("--warmup-fraction", type=float, default=0.06, help="OCR learning-rate warm-up share")
        p.add_argument("--lr0", type=float, default=None, help="detector learning rate")
        p.add_argument("--warmup-epochs", type=float, default=None, help="detector warm-up epochs")
        p.add_argument("--synthetic", type=int, default=12000, help="synthetic OCR crops")
        p.add_argument("--detector-weights", default=None, help=argparse.SUPPRESS)
        p.add_argument("--ocr-keras", default=None, help=argparse.SUPPRESS)
        p.set_defaults(fn=fn)
    args = ap.parse_args(argv[1:])
    if args.epochs is None:
        args.epochs = 25 if args.cmd in ("ocr",) else 20
    if args.cmd == "all":
        args.epochs_all = args.epochs
    if args.out and args.cmd == "all":
        print("alpr-node train all: --out is per step; use the defaults under .run/training", file=sys.stderr)
        return 2
    rc: int = args.fn(args)
    return rc
