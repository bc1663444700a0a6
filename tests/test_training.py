"""Training tooling: dataset builders are deterministic and write what the trainers expect.

Tiny and CPU-only; needs ../shared/data/real-plates for the builders that read real images
(skipped when it is absent).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from node.training.cli import DEFAULT_DATA_ROOT
from node.training.cli import main as train_main

pytestmark = pytest.mark.timeout(120)
needs_data = pytest.mark.skipif(not (DEFAULT_DATA_ROOT / "ro-boxes").exists(), reason="real-plates data not present")


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix in (".jpg", ".png", ".txt", ".csv"):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@needs_data
def test_detector_dataset_is_deterministic_and_yolo_formatted(tmp_path: Path) -> None:
    from node.training.detector_data import DetectorDataParams, build_detector_dataset

    params = DetectorDataParams(seed=3, ro_real=3, ro_painted=3, eu_copies=0, synthetic=3, negatives=1)
    a = build_detector_dataset(DEFAULT_DATA_ROOT, tmp_path / "a", params, log=lambda m: None)
    b = build_detector_dataset(DEFAULT_DATA_ROOT, tmp_path / "b", params, log=lambda m: None)
    assert a == b and a["train"] + a["val"] == 10
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    labels = list((tmp_path / "a" / "labels").rglob("*.txt"))
    assert labels
    for lab in labels:
        for line in lab.read_text().splitlines():
            cls, *xywh = line.split()
            assert cls == "0" and all(0.0 <= float(v) <= 1.0 for v in xywh)
    assert "names:" in (tmp_path / "a" / "data.yaml").read_text()


@needs_data
def test_ocr_dataset_csv(tmp_path: Path) -> None:
    from node.training.ocr_data import ALPHABET, REGIONS, OcrDataParams, build_ocr_dataset

    params = OcrDataParams(seed=1, synthetic=12, br_copies=1, eu_copies=0, val_synthetic=4, val_br=2)
    counts = build_ocr_dataset(DEFAULT_DATA_ROOT, tmp_path, params, log=lambda m: None)
    assert counts["val"] == 6
    with (tmp_path / "train.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"image_path", "plate_text", "plate_region"}
    for r in rows:
        assert (tmp_path / r["image_path"]).exists()
        assert 1 <= len(r["plate_text"]) <= 8 and set(r["plate_text"]) <= set(ALPHABET)
        assert r["plate_region"] in REGIONS


def test_train_samples_command(tmp_path: Path) -> None:
    assert (
        train_main(["train", "samples", "--n", "3", "--out", str(tmp_path), "--data-root", str(tmp_path / "none")]) == 0
    )
    assert len(list(tmp_path.glob("*.png"))) == 6
    rows = [line.split("\t") for line in (tmp_path / "labels.tsv").read_text().splitlines()]
    assert len(rows) == 3 and all(
        (tmp_path / name).exists() and f"_{state}_{text}." in name for name, text, state in rows
    )


def test_ucsd_boxes_widen_from_the_character_row_to_the_whole_plate() -> None:
    from node.training.real_ocr_data import ucsd_plate_box

    x1, y1, x2, y2 = ucsd_plate_box((100, 200, 176, 225))  # a 76x25 character-row box
    assert x1 < 100 and x2 > 176 and y1 < 200 and y2 > 225
    assert 1.8 <= (x2 - x1) / (y2 - y1) <= 2.2  # a US plate's shape


def test_reframed_tight_crops_are_plate_shaped_and_small() -> None:
    import numpy as np

    from node.training.real_ocr_data import reframe_tight_crop

    rng = np.random.default_rng(1)
    crop = np.full((150, 320, 3), 200, np.uint8)
    for _ in range(20):
        out = reframe_tight_crop(crop, rng)
        h, w = out.shape[:2]
        assert 30 <= w <= 320 and 1.3 <= w / h <= 3.2


@needs_data
def test_real_ocr_dataset_never_uses_the_evaluation_splits(tmp_path: Path) -> None:
    from node.recognition.annotations import split_names
    from node.recognition.loading import MODELS_DIR
    from node.training.real_ocr_data import RealOcrDataParams, build_real_ocr_dataset

    params = RealOcrDataParams(
        crops_copies=1, ucsd_copies=1, br_copies=0, eu_copies=0, synthetic=2,
        hard_model=str(MODELS_DIR / "plate_ocr.onnx"), hard_views=2, hard_copies=2,
    )  # fmt: skip
    info = build_real_ocr_dataset(DEFAULT_DATA_ROOT, tmp_path, params, log=lambda m: None)
    counts = info["counts"]
    assert isinstance(counts, dict) and counts["train_us-crops"] > 400 and counts["train_us-ucsd"] > 120
    # hard examples: some training plates, not all, are misread by the shipped OCR in a degraded view
    hard = info["hard_examples"]
    assert isinstance(hard, dict) and hard["plates"] == counts["train_us-crops"] + counts["train_us-ucsd"]
    assert 0.02 * hard["plates"] < hard["misread"] < 0.8 * hard["plates"]
    assert hard["extra_views"] == counts.get("train_hard_us-crops", 0) + counts.get("train_hard_us-ucsd", 0)
    with (tmp_path / "train.csv").open() as f:
        rows = list(csv.DictReader(f))
    states = {r["plate_region"] for r in rows}
    assert len(states) >= 45  # every state's real plates (and OTHER / CA)
    # no crop of a held-out plate text (same plate, same text) reached training
    from node.recognition.annotations import read_crop_labels

    labels = read_crop_labels(DEFAULT_DATA_ROOT / "us-crops" / "labels.tsv")
    held_texts = {labels[n][0] for n in split_names("us-crops", "heldout")}
    ucsd = read_boxes_texts("us-ucsd")
    val_texts = {ucsd[n] for n in split_names("us-ucsd", "val")}
    train_texts = {r["plate_text"] for r in rows if not r["image_path"].startswith("img/syn")}
    assert not (train_texts & held_texts) and not (train_texts & val_texts)


def read_boxes_texts(set_name: str) -> dict[str, str]:
    from node.recognition.annotations import read_boxes

    return {n: t[0].text or "" for n, t in read_boxes(DEFAULT_DATA_ROOT / set_name / "annotations.tsv").items()}


@pytest.mark.timeout(600)
def test_ocr_warm_start_from_the_shipped_onnx_reproduces_it(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    import os
    import subprocess
    import sys

    from node.recognition.loading import MODELS_DIR
    from node.training.train_ocr import CONFIG_DIR

    out = tmp_path / "init.weights.h5"
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    res = subprocess.run(
        [sys.executable, "-m", "node.training.onnx_weights", str(MODELS_DIR / "plate_ocr.onnx"),
         str(CONFIG_DIR / "cct_xs_us.yaml"), str(MODELS_DIR / "plate_config.yaml"), str(out)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert float(res.stdout.strip().splitlines()[-1]) < 1e-3 and out.stat().st_size > 100_000


@pytest.mark.timeout(600)
def test_detector_warm_start_from_the_shipped_onnx_reproduces_it(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    from node.recognition.loading import MODELS_DIR
    from node.training.detector_weights import write_detector_pt
    from node.training.offline import prepare_offline

    prepare_offline()
    out = tmp_path / "init.pt"
    assert write_detector_pt(MODELS_DIR / "plate_detector.onnx", "yolov8n.yaml", out) < 1e-2
    assert out.stat().st_size > 1_000_000


def test_state_calibration_takes_the_smallest_threshold_that_is_right_often_enough() -> None:
    import numpy as np

    from node.training.train_state import calibrate

    classes = np.array(["CA", "OTHER", "TX"])
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.1, 0.7], [0.55, 0.05, 0.4], [0.1, 0.8, 0.1]])
    truth = np.array(["CA", "TX", "TX", "CA"])  # the 0.55 answer is wrong; OTHER is never an answer
    assert calibrate(probs, classes, truth, 0.95) == 0.56  # just above the wrong answer
    assert calibrate(probs, classes, truth, 0.6) == 0.05  # 2 of 3 answers right is enough
    assert calibrate(probs[2:3], classes, truth[2:3], 0.9) == 1.0  # never right: never answer
