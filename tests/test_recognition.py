"""Recognition: generator determinism, shipped models on synthetic plates, CLI contract, evaluation.

CPU only, no network, no Cassandra; uses the models shipped in node/models.
"""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from node.recognition.annotations import read_boxes
from node.recognition.detector import OnnxYoloDetector, load_detector
from node.recognition.evaluation import FalseBox, char_confusions, edit_distance, evaluate, evaluate_crops, iou
from node.recognition.loading import MODELS_DIR, Recognizer, RecognizerConfig, load_recognizer
from node.recognition.types import FrameRecognizer, PlateDetection, PlateResult, PlateText, StateGuess
from node.training.compose import paste, warp_plate
from node.training.ocr_data import synthetic_crop
from node.training.plates import STATE_CODES, render_plate

pytestmark = pytest.mark.timeout(120)


def _backgrounds(seed: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(4):
        small = rng.integers(30, 200, size=(12, 16, 3), dtype=np.uint8)
        out.append(cv2.resize(small, (640, 480), interpolation=cv2.INTER_CUBIC))
    return out


def _scene(rng: np.random.Generator, plate_width: int) -> tuple[np.ndarray, list[tuple[int, int, int, int]], list[str]]:
    """A 1280x720 frame with two synthetic plates; returns frame, boxes and texts."""
    small = rng.integers(40, 180, size=(9, 16, 3), dtype=np.uint8)
    frame = cv2.resize(small, (1280, 720), interpolation=cv2.INTER_CUBIC)
    boxes, texts = [], []
    for x in (150, 750):
        plate = render_plate(rng)
        patch, mask, (bx1, by1, bx2, by2) = warp_plate(plate.image, plate_width, rng)
        y = 380
        cv2.rectangle(frame, (x - 40, y - 30), (x + patch.shape[1] + 40, y + patch.shape[0] + 30), (60, 60, 70), -1)
        paste(frame, patch, mask, x, y)
        boxes.append((x + bx1, y + by1, x + bx2, y + by2))
        texts.append(plate.text)
    return frame, boxes, texts


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return load_recognizer(RecognizerConfig())


# ---------------------------------------------------------------- generator


def test_generator_is_deterministic() -> None:
    a = render_plate(np.random.default_rng(42))
    b = render_plate(np.random.default_rng(42))
    c = render_plate(np.random.default_rng(43))
    assert a.text == b.text and a.state == b.state
    assert np.array_equal(a.image, b.image)
    assert not np.array_equal(a.image, c.image)
    bgs = _backgrounds()
    ca, ta, sa = synthetic_crop(np.random.default_rng(7), bgs)
    cb, tb, sb = synthetic_crop(np.random.default_rng(7), bgs)
    assert (ta, sa) == (tb, sb) and np.array_equal(ca, cb)


def test_generator_text_distribution() -> None:
    rng = np.random.default_rng(0)
    plates = [render_plate(rng) for _ in range(300)]
    lengths = {len(p.text) for p in plates}
    assert lengths <= set(range(4, 9)) and {6, 7}.issubset(lengths)
    assert all(p.text.isalnum() and (p.text.isupper() or p.text.isdigit()) for p in plates)
    assert len({p.state for p in plates}) >= 20
    assert {p.state for p in plates} <= set(STATE_CODES)
    assert plates[0].image.shape[1] == 2 * plates[0].image.shape[0]


# ---------------------------------------------------------------- models


def test_shipped_models_and_versions(recognizer: Recognizer) -> None:
    for name in ("plate_detector.onnx", "plate_ocr.onnx", "plate_config.yaml", "manifest.json"):
        assert (MODELS_DIR / name).exists(), name
    assert (MODELS_DIR / "plate_detector.onnx").stat().st_size <= 15 * 1024 * 1024
    v = recognizer.versions()
    assert set(v) == {"detector", "ocr", "state_classifier"}
    assert v["detector"].startswith("plate_detector.onnx@")


def test_detector_runtime_is_chosen_by_config_not_by_file_name(tmp_path: Path) -> None:
    renamed = tmp_path / "detector.model"  # an ONNX export under a name that says nothing
    renamed.write_bytes((MODELS_DIR / "plate_detector.onnx").read_bytes())
    detector = load_detector(renamed, runtime="onnxruntime")
    assert isinstance(detector, OnnxYoloDetector) and detector.supports_regions
    frame = np.zeros((360, 640, 3), np.uint8)
    assert detector.detect_regions(frame, []) == [] and detector.detect(frame) == []
    with pytest.raises(ValidationError, match="detector_runtime"):
        RecognizerConfig.model_validate({"detector_runtime": "by-suffix"})


def test_the_recognizer_reports_what_the_runtime_needs(recognizer: Recognizer) -> None:
    # The node runtime reads these through the FrameRecognizer interface (no reflection).
    assert isinstance(recognizer, FrameRecognizer) and recognizer.supports_regions
    frame = np.zeros((720, 1280, 3), np.uint8)
    assert recognizer.recognize(frame, regions=[]) == []
    assert recognizer.last_timings.detect_s is not None and recognizer.last_timings.ocr_s == []


def test_detector_finds_synthetic_plates(recognizer: Recognizer) -> None:
    rng = np.random.default_rng(11)
    found = total = 0
    for width in (110, 160, 220):
        frame, boxes, _ = _scene(rng, width)
        dets = recognizer.detector.detect(frame)
        for b in boxes:
            total += 1
            found += any(iou(b, d.box) >= 0.3 for d in dets)
    assert found / total >= 0.8, f"found {found}/{total}"


def test_ocr_reads_synthetic_crops(recognizer: Recognizer) -> None:
    rng = np.random.default_rng(3)
    correct_chars = total_chars = exact = 0
    n = 40
    for _ in range(n):
        plate = render_plate(rng)
        patch, _, (x1, y1, x2, y2) = warp_plate(plate.image, 160, rng)
        crop = patch[y1:y2, x1:x2]
        read = recognizer.reader.read(np.ascontiguousarray(crop))
        assert len(read.char_confidences) == len(read.text)
        assert 0.0 <= read.confidence <= 1.0
        exact += read.text == plate.text
        total_chars += len(plate.text)
        correct_chars += max(0, len(plate.text) - edit_distance(read.text, plate.text))
    assert correct_chars / total_chars >= 0.7, f"char accuracy {correct_chars / total_chars:.2f}"
    assert exact / n >= 0.2, f"exact {exact}/{n}"


def test_ocr_views_are_one_batch_with_the_same_numbers(recognizer: Recognizer) -> None:
    """The shipped OCR takes a batch (make_batchable); averaging views equals averaging single reads."""
    reader = recognizer.reader
    assert reader.batched
    frame, boxes, _ = _scene(np.random.default_rng(8), 170)
    views = recognizer.views(frame, boxes[0])
    assert len(views) == 5 and all(v.size for v in views)
    batched = reader._infer(views)
    singles = [reader._infer([v]) for v in views]
    for k, out in enumerate(batched):
        np.testing.assert_allclose(out, np.concatenate([s[k] for s in singles]), atol=1e-5)
    one = reader.read_views(views[:1])
    assert one == reader.read(views[0])
    many = reader.read_views(views)
    assert len(many.char_confidences) == len(many.text) and 0.0 <= many.confidence <= 1.0


# ---------------------------------------------------------------- recognize CLI contract


def test_recognize_json_schema(tmp_path: Path) -> None:
    from node.cli import main as node_main

    frame, _, _ = _scene(np.random.default_rng(21), 180)
    img = tmp_path / "frame.jpg"
    cv2.imwrite(str(img), frame)
    blank = tmp_path / "blank.jpg"
    cv2.imwrite(str(blank), np.full((480, 640, 3), 127, np.uint8))
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = node_main(["recognize", "--json", str(img), str(blank)])
    assert rc == 0
    lines = [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    assert [r["image"] for r in lines] == [str(img), str(blank)]
    assert lines[0]["plates"], "no plate found in a frame with two large synthetic plates"
    for p in lines[0]["plates"]:
        assert {"text", "confidence", "box", "state", "state_confidence", "char_confidences"} <= set(p)
        assert isinstance(p["text"], str) and len(p["box"]) == 4 and all(isinstance(v, int) for v in p["box"])
        assert p["box"][0] < p["box"][2] and p["box"][1] < p["box"][3]
        assert 0.0 <= p["confidence"] <= 1.0 and 0.0 <= p["state_confidence"] <= 1.0
        assert p["state"] is None or isinstance(p["state"], str)
        assert len(p["char_confidences"]) == len(p["text"])


def test_recognize_missing_image_and_model(tmp_path: Path) -> None:
    from node.recognize_cli import main

    assert main(["recognize", "--json", str(tmp_path / "nope.jpg")]) == 1
    assert main(["recognize", "--detector", str(tmp_path / "none.onnx"), str(tmp_path / "x.jpg")]) == 2


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        RecognizerConfig(detector_pth="x")  # type: ignore[call-arg]
    cfg = RecognizerConfig()
    assert cfg.detector_path == MODELS_DIR / "plate_detector.onnx" and cfg.hub_ocr_model is None


# ---------------------------------------------------------------- evaluation


def _fixture(tmp_path: Path) -> Path:
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(tmp_path / name), np.zeros((100, 200, 3), np.uint8))
    ann = tmp_path / "annotations.tsv"
    ann.write_text("a.jpg\t10\t10\t50\t20\tABC123\nb.jpg\t100\t50\t40\t20\tXYZ9\nb.jpg\t0\t0\t30\t15\tQQ11\n")
    return ann


def test_evaluation_numbers_on_fixture(tmp_path: Path) -> None:
    ann = _fixture(tmp_path)
    assert read_boxes(ann)["b.jpg"][0].box == (100, 50, 140, 70)
    answers = iter(
        [
            [PlateResult((12, 11, 58, 29), 0.9, "ABC123", 0.9)],  # exact, IoU > 0.3
            [PlateResult((100, 50, 140, 70), 0.8, "XYZ8", 0.7), PlateResult((150, 80, 190, 95), 0.5, "FP", 0.1)],
        ]
    )
    rep = evaluate(lambda frame: next(answers), ann)
    s = rep.summary()
    assert s["images"] == 2 and s["plates"] == 3
    assert s["detection_recall"] == round(2 / 3, 4)
    assert s["exact_plate_accuracy"] == round(1 / 3, 4)
    assert s["top1_accuracy"] == 0.5
    assert s["char_accuracy"] == round((6 + 3 + 0) / (6 + 4 + 4), 4)
    assert s["false_positives"] == 1
    assert s["detection_precision"] == round(2 / 3, 4)  # 2 matched boxes of 3 drawn
    assert rep.false_boxes == [FalseBox("b.jpg", (150, 80, 190, 95), "FP", 0.1, 0.5)]
    assert rep.details()["false_boxes"][0]["read"] == "FP"
    assert s["confusions"] == [["9", "8", 1]]


def test_char_confusions_align_substitutions_drops_and_extras() -> None:
    assert char_confusions("ABC123", "ABC123") == []
    assert char_confusions("8B1", "BB1") == [("8", "B")]
    assert char_confusions("ABC", "AC") == [("B", "")]
    assert char_confusions("ABC", "1ABC") == [("", "1")]


def test_state_coverage_and_accuracy_on_a_crop_set(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c.png", "d.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((30, 60, 3), np.uint8))
    labels = tmp_path / "labels.tsv"
    labels.write_text("a.png\tABC123\tCA\nb.png\tXYZ9\tTX\nc.png\tQQ11\tNY\nd.png\tRR22\tNY\n")
    answers = {  # read text, state answered
        0: ("ABC123", "CA"),  # right, right state
        1: ("XYZ9", "OK"),  # right, wrong state
        2: ("QO11", None),  # one substitution, no state (unknown)
        3: ("RR22", "NY"),
    }
    calls = iter(range(4))

    def read(crop: np.ndarray) -> PlateResult:
        text, state = answers[next(calls)]
        return PlateResult((0, 0, 60, 30), 1.0, text, 0.9, state=state)

    s = evaluate_crops(read, labels).summary()
    assert s["images"] == 4 and s["detection_recall"] == 1.0
    assert s["exact_plate_accuracy"] == 0.75
    assert s["plates_with_state"] == 4
    assert s["state_coverage"] == 0.75 and s["state_accuracy"] == round(2 / 3, 4)
    assert s["confusions"] == [["Q", "O", 1]]
    calls = iter([3])
    only = evaluate_crops(read, labels, only={"d.png"}).summary()  # a split: only the named files
    assert only["images"] == 1


def test_frame_set_of_one_state_counts_missed_plates_as_unanswered(tmp_path: Path) -> None:
    ann = _fixture(tmp_path)
    answers = iter([[PlateResult((12, 11, 58, 29), 0.9, "ABC123", 0.9, state="CA")], []])
    s = evaluate(lambda frame: next(answers), ann, state="CA").summary()
    assert s["plates_with_state"] == 3 and s["state_coverage"] == round(1 / 3, 4) and s["state_accuracy"] == 1.0


def test_evaluate_cli_prints_summary(tmp_path: Path) -> None:
    from node.evaluate_cli import main

    ann = _fixture(tmp_path)
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["evaluate", str(ann)]) == 0
    summary = json.loads(buf.getvalue().splitlines()[-1])
    assert summary["images"] == 2 and summary["plates"] == 3
    assert {"detection_recall", "exact_plate_accuracy", "top1_accuracy", "char_accuracy", "ms_per_image"} <= set(
        summary
    )
    assert main(["evaluate", str(tmp_path / "missing.tsv")]) == 2
    assert main(["evaluate", str(ann), "--split", "val"]) == 2  # this folder has no fixed split


def test_committed_splits_are_disjoint_from_training_and_cover_every_state() -> None:
    from node.recognition.annotations import split_info, split_names

    assert split_info("us-ucsd")["state"] == "CA" and 50 <= len(split_names("us-ucsd", "val")) <= 70
    held = split_names("us-crops", "heldout")
    assert 120 <= len(held) <= 180
    states = {n[: re.match(r"[a-z]+", n).end()] for n in held}  # type: ignore[union-attr]
    assert len(states) >= 45  # nearly every state has held-out crops


class _FakeDetector:
    version = "fake"
    supports_regions = False

    def detect(self, frame: np.ndarray) -> list[PlateDetection]:
        return [PlateDetection((10, 10, 90, 40), 0.9), PlateDetection((100, 10, 180, 40), 0.3)]

    def detect_regions(self, frame: np.ndarray, regions: list[tuple[int, int, int, int]]) -> list[PlateDetection]:
        return self.detect(frame)


class _FakeReader:
    """Reads the left box as a sure plate, the right one as an unsure short string."""

    version = "fake"

    def read_views(self, views: list[np.ndarray]) -> PlateText:
        sure = float(views[0][0, 0, 0]) > 100
        return PlateText("ABC1234", 0.9) if sure else PlateText("7L", 0.1)


class _FakeState:
    version = "none"

    def classify(self, crop: np.ndarray, *, reuse_last: bool = False) -> StateGuess:
        return StateGuess(None, 0.0)


@pytest.mark.parametrize(
    ("over", "texts"),
    [
        ({"min_read_confidence": 0}, ["ABC1234", "7L"]),
        ({"min_read_confidence": 0, "min_plate_chars": 4}, ["ABC1234"]),
        ({}, ["ABC1234"]),  # the unsure read of an unsure box is no plate by default
        ({"min_read_confidence": 0.5}, ["ABC1234"]),
        ({"sure_detection_score": 0.25}, ["ABC1234", "7L"]),  # the detector is sure enough of the right box
    ],
)
def test_boxes_the_ocr_reads_as_no_plate_are_dropped_when_asked(over: dict[str, float], texts: list[str]) -> None:
    frame = np.zeros((60, 200, 3), np.uint8)
    frame[:, :95] = 200  # the left box is bright: the fake reader's sure plate
    cfg = RecognizerConfig(**over)
    rec = Recognizer(_FakeDetector(), _FakeReader(), _FakeState(), cfg)  # type: ignore[arg-type]
    assert [p.text for p in rec.recognize(frame)] == texts


# ---------------------------------------------------------------- state of issuance


def _state_model(path: Path, bias: list[float], min_confidence: float = 0.8, version: int = 1) -> Path:
    from node.recognition.state import plate_look_features

    n = plate_look_features(np.zeros((30, 60, 3), np.uint8)).size
    np.savez(
        path, classes=np.array(["CA", "OTHER", "TX"]), weights=np.zeros((n, 3), np.float32),
        bias=np.array(bias, np.float32), mean=np.zeros(n, np.float32), scale=np.ones(n, np.float32),
        min_confidence=np.float32(min_confidence), features_version=np.int32(version),
    )  # fmt: skip
    return path


def test_plate_look_state_answers_only_when_sure_and_never_other(tmp_path: Path) -> None:
    from node.recognition.state import PlateLookStateClassifier

    crop = np.full((40, 80, 3), 128, np.uint8)
    sure_tx = PlateLookStateClassifier(_state_model(tmp_path / "a.npz", [0.0, 0.0, 6.0]))
    guess = sure_tx.classify(crop)
    assert guess.state == "TX" and guess.confidence > 0.99
    unsure = PlateLookStateClassifier(_state_model(tmp_path / "b.npz", [1.0, 0.0, 1.2]))
    assert unsure.classify(crop).state is None and 0.4 < unsure.classify(crop).confidence < 0.8  # below 0.8
    assert PlateLookStateClassifier(tmp_path / "b.npz", min_confidence=0.3).classify(crop).state == "TX"
    other = PlateLookStateClassifier(_state_model(tmp_path / "c.npz", [0.0, 6.0, 0.0]))
    assert other.classify(crop) == StateGuess(None, 0.0)  # a non-US plate has no state
    with pytest.raises(ValueError, match="features version"):
        PlateLookStateClassifier(_state_model(tmp_path / "d.npz", [0.0, 0.0, 0.0], version=99))
    with pytest.raises(FileNotFoundError):
        load_recognizer(RecognizerConfig(state_model_path=tmp_path / "missing.npz"))


@pytest.mark.skipif(not (MODELS_DIR.parents[1].parent / "shared" / "data" / "real-plates").exists(), reason="no data")
def test_shipped_state_classifier_is_right_when_it_speaks_on_held_out_crops() -> None:
    """A guard on the shipped model (measured: see node/models/README.md), on crops never trained on."""
    from node.recognition.annotations import read_crop_labels, split_names
    from node.recognition.state import PlateLookStateClassifier

    root = MODELS_DIR.parents[1].parent / "shared" / "data" / "real-plates" / "us-crops"
    clf = PlateLookStateClassifier(MODELS_DIR / "state_classifier.npz")
    labels = read_crop_labels(root / "labels.tsv")
    answered = right = 0
    held = sorted(split_names("us-crops", "heldout"))
    for name in held:
        guess = clf.classify(np.asarray(cv2.imread(str(root / name), cv2.IMREAD_COLOR), np.uint8))
        if guess.state is not None:
            answered += 1
            right += int(guess.state == labels[name][1])
    assert answered >= 0.6 * len(held) and right >= 0.93 * answered, (answered, right, len(held))
