"""Train the fast-plate-ocr model with its own trainer (Keras 3, TensorFlow backend) and export ONNX.

Training runs ``fast-plate-ocr train`` in a subprocess with ``KERAS_BACKEND=tensorflow``
(2-3x faster per step than torch here). Export runs ``fast-plate-ocr export`` with
``KERAS_BACKEND=torch`` and ``--no-dynamic-batch`` (the TensorFlow/tf2onnx export path
crashed in the probe; the torch path exports a TensorFlow-trained ``.keras`` fine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from node.training.ocr_data import ALPHABET, MAX_SLOTS, PAD_CHAR, REGIONS
from node.training.offline import prepare_offline

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class OcrTrainParams:
    model_config: str = str(CONFIG_DIR / "cct_xs_us.yaml")
    epochs: int = 25
    batch_size: int = 64
    lr: float = 0.002
    warmup_fraction: float = 0.06
    seed: int = 0
    img_height: int = 64
    img_width: int = 128
    region_head: bool = True
    weights_path: str | None = None  # warm start from a previous .keras / .weights.h5
    init_onnx: str | None = None  # warm start from an exported model (its plate config beside it)
    regions: tuple[str, ...] | None = None  # state head classes; None: the generator's looks + OTHER


def write_plate_config(path: Path, params: OcrTrainParams) -> Path:
    """The US plate config: 8 slots, A-Z0-9 + pad, grayscale, optional state regions."""
    cfg: dict[str, object] = {
        "max_plate_slots": MAX_SLOTS,
        "alphabet": ALPHABET,
        "pad_char": PAD_CHAR,
        "img_height": params.img_height,
        "img_width": params.img_width,
        "keep_aspect_ratio": False,
        "interpolation": "linear",
        "image_color_mode": "grayscale",
        "padding_color": 114,
    }
    if params.region_head:
        cfg["plate_regions"] = list(params.regions or REGIONS)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _env(backend: str) -> dict[str, str]:
    prepare_offline()
    env = dict(os.environ)
    env["KERAS_BACKEND"] = backend
    env["NO_ALBUMENTATIONS_UPDATE"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.setdefault("TF_NUM_INTRAOP_THREADS", "2")
    return env


def _fpo() -> str:
    exe = Path(sys.executable).parent / "fast-plate-ocr"
    return str(exe) if exe.exists() else "fast-plate-ocr"


def train_ocr(data_dir: Path, out_dir: Path, params: OcrTrainParams, log=print) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Train on ``data_dir/{train,val}.csv``; writes ``plate_ocr.onnx`` + ``plate_config.yaml``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plate_cfg = write_plate_config(out_dir / "plate_config.yaml", params)
    if not params.region_head:  # drop the region column so the trainer builds a plate-only head
        for split in ("train", "val"):
            lines = (data_dir / f"{split}.csv").read_text().splitlines()
            (data_dir / f"{split}_noregion.csv").write_text(
                "\n".join(",".join(line.split(",")[:2]) for line in lines) + "\n"
            )
    suffix = "" if params.region_head else "_noregion"
    cmd = [
        _fpo(), "train",
        "--model-config-file", params.model_config,
        "--plate-config-file", str(plate_cfg),
        "--annotations", str(data_dir / f"train{suffix}.csv"),
        "--val-annotations", str(data_dir / f"val{suffix}.csv"),
        "--epochs", str(params.epochs),
        "--batch-size", str(params.batch_size),
        "--lr", str(params.lr),
        "--warmup-fraction", str(params.warmup_fraction),
        "--seed", str(params.seed),
        "--output-dir", str(out_dir / "runs"),
        "--early-stopping-patience", "1000",
        "--workers", "1",
    ]  # fmt: skip
    if params.init_onnx and not params.weights_path:
        onnx_path = Path(params.init_onnx)
        params.weights_path = str(out_dir / "init_from_onnx.weights.h5")
        subprocess.run(
            [sys.executable, "-m", "node.training.onnx_weights", str(onnx_path), params.model_config,
             str(onnx_path.parent / "plate_config.yaml"), params.weights_path, str(data_dir / "train.csv")],
            check=True, env=_env("tensorflow"),
        )  # fmt: skip
        log(f"ocr: warm start from {onnx_path} via {params.weights_path}")
    if params.weights_path:
        cmd += ["--weights-path", params.weights_path]
    log("ocr: " + " ".join(cmd))
    t0 = time.time()
    subprocess.run(cmd, check=True, env=_env("tensorflow"))
    train_s = time.time() - t0
    run = sorted((out_dir / "runs").iterdir())[-1]
    best = run / "best.keras"
    onnx_path = export_ocr(best, plate_cfg, out_dir)
    metrics: dict[str, float] = {}
    log_csv = run / "training_log.csv"
    if log_csv.exists():
        rows = log_csv.read_text().splitlines()
        head = rows[0].split(",")
        last = rows[-1].split(",")
        metrics = {k: float(v) for k, v in zip(head, last, strict=False) if k != "epoch" and v}
    info = {"params": asdict(params), "metrics_last_epoch": metrics, "train_seconds": round(train_s, 1),
            "run_dir": str(run), "onnx": str(onnx_path)}  # fmt: skip
    (out_dir / "ocr_result.json").write_text(json.dumps(info, indent=2))
    log(f"ocr: trained in {train_s:.0f}s, last epoch {metrics}")
    return info


def export_ocr(keras_path: Path, plate_cfg: Path, out_dir: Path) -> Path:
    """Export a ``.keras`` to a batch-1 ONNX via the torch backend; returns the ONNX path."""
    save_dir = out_dir / "export"
    save_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        _fpo(), "export", "--model", str(keras_path), "--format", "onnx",
        "--plate-config-file", str(plate_cfg), "--save-dir", str(save_dir), "--no-dynamic-batch",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, env=_env("torch"))
    onnx_file = sorted(save_dir.glob("*.onnx"), key=lambda p: p.stat().st_mtime)[-1]
    final = out_dir / "plate_ocr.onnx"
    name_outputs(onnx_file, final)
    return final


def name_outputs(src: Path, dst: Path) -> None:
    """Name the outputs ``plate`` (N x slots x classes) and ``region`` (N x regions).

    The torch-backend export calls them ``softmax_N``; ``LicensePlateRecognizer`` finds the
    region head only under the name ``region``.
    """
    import onnx

    model = onnx.load(str(src))
    renames = {}
    for out in model.graph.output:
        rank = len(out.type.tensor_type.shape.dim)
        renames[out.name] = "plate" if rank == 3 else "region"
    for node in model.graph.node:
        node.output[:] = [renames.get(o, o) for o in node.output]
        node.input[:] = [renames.get(i, i) for i in node.input]
    for out in model.graph.output:
        out.name = renames[out.name]
    make_batchable(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def make_batchable(model: Any) -> int:
    """Give the exported batch-1 model a symbolic batch dimension (in place); returns reshapes fixed.

    The torch-backend export only works with ``--no-dynamic-batch`` and bakes batch 1 into its
    Reshape targets. A leading 1 in those targets becomes -1, the input and outputs get a
    batch dimension ``N``, and stale shape annotations are dropped. The reader checks that a
    batch gives the same numbers as single crops (tests/test_recognition.py).
    """
    from onnx import numpy_helper

    graph = model.graph
    for value in [graph.input[0], *graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    del graph.value_info[:]
    inits = {i.name: i for i in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    fixed = 0
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        target = node.input[1]
        tensor = inits.get(target) or (consts[target].attribute[0].t if target in consts else None)
        if tensor is None:
            continue
        shape = numpy_helper.to_array(tensor).copy()
        if shape.ndim == 1 and len(shape) > 1 and shape[0] == 1 and -1 not in shape:
            shape[0] = -1
            tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))
            fixed += 1
    return fixed
