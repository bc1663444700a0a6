"""Train the YOLO plate detector from a model yaml (no pretrained weights) and export ONNX."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from node.training.offline import prepare_offline


@dataclass
class DetectorTrainParams:
    model_yaml: str = "yolov8n.yaml"
    epochs: int = 20
    imgsz: int = 320  # training tile size
    export_imgsz: int = 640  # inference: whole frame letterboxed to this
    batch: int = 16
    seed: int = 0
    threads: int = 2
    lr0: float = 0.01
    close_mosaic: int = 4
    patience: int = 100
    warmup_epochs: float = 3.0
    weights: str | None = None  # warm start from a local checkpoint (.pt) of this project


def train_detector(data_yaml: Path, out_dir: Path, params: DetectorTrainParams, log=print) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Train, export ``plate_detector.onnx`` into ``out_dir``; returns metrics."""
    prepare_offline()
    import torch
    import ultralytics.utils.torch_utils as tu
    from ultralytics import YOLO  # type: ignore[attr-defined]

    from node.training.offline import disable_ultralytics_sync

    disable_ultralytics_sync()
    tu.NUM_THREADS = params.threads  # type: ignore[attr-defined]
    torch.set_num_threads(params.threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model = YOLO(params.weights or params.model_yaml)
    res = model.train(
        data=str(data_yaml),
        epochs=params.epochs,
        imgsz=params.imgsz,
        batch=params.batch,
        device="cpu",
        workers=0,
        seed=params.seed,
        deterministic=True,
        pretrained=bool(params.weights),
        warmup_epochs=params.warmup_epochs,
        amp=False,
        plots=False,
        val=True,
        project=str(out_dir.resolve()),  # ultralytics files a relative project under runs/detect/
        name="train",
        exist_ok=True,
        lr0=params.lr0,
        close_mosaic=params.close_mosaic,
        patience=params.patience,
        fliplr=0.5,
        scale=0.4,
        degrees=3.0,
        verbose=True,
    )
    train_s = time.time() - t0
    metrics = {}
    if res is not None and hasattr(res, "results_dict"):
        metrics = {k: float(v) for k, v in res.results_dict.items()}
    best = out_dir / "train" / "weights" / "best.pt"
    if not best.exists():
        best = out_dir / "train" / "weights" / "last.pt"
    onnx_path = export_detector(best, params.export_imgsz)
    final = out_dir / "plate_detector.onnx"
    shutil.copyfile(onnx_path, final)
    shutil.copyfile(best, out_dir / "plate_detector.pt")
    info = {"params": asdict(params), "metrics": metrics, "train_seconds": round(train_s, 1), "onnx": str(final)}
    (out_dir / "detector_result.json").write_text(json.dumps(info, indent=2))
    log(f"detector: trained in {train_s:.0f}s, metrics {metrics}")
    return info


def export_detector(weights: Path, imgsz: int) -> Path:
    """Export a .pt to a static-shape ONNX (opset 17, simplified)."""
    prepare_offline()
    from ultralytics import YOLO  # type: ignore[attr-defined]

    model = YOLO(str(weights))
    path = model.export(format="onnx", imgsz=imgsz, dynamic=False, simplify=True, opset=17)
    return Path(path)
