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
