"""Tracker and plate-format logic (pure, no models): one read per vehicle pass."""

from __future__ import annotations

import random

from alpr_common.similarity import text_similarity
from node.recognition.types import PlateResult
from node.runtime import PlateFormats
from node.tracker import FinishedTrack, PlateTracker, TrackerSettings, vote

FPS = 10.0


def noisy(text: str, rnd: random.Random, p: float = 0.25) -> tuple[str, tuple[float, ...]]:
    """OCR-like noise: some characters swapped for look-alikes, with lower confidence."""
    swaps = {"0": "O", "O": "0", "1": "I", "8": "B", "5": "S", "B": "8", "A": "4", "7": "T"}
    out, confs = [], []
    for ch in text:
        if rnd.random() < p and ch in swaps:
            out.append(swaps[ch])
            confs.append(rnd.uniform(0.3, 0.6))
        else:
            out.append(ch)
            confs.append(rnd.uniform(0.8, 0.99))
    return "".join(out), tuple(confs)


def pass_of(text: str, x0: int, dx: int, frames: int, t0: float, rnd: random.Random) -> list[tuple[float, PlateResult]]:
    out = []
    for i in range(frames):
        t = t0 + i / FPS
        x = x0 + dx * i
        txt, confs = noisy(text, rnd)
        out.append((t, PlateResult((x, 400, x + 120, 430), 0.9, txt, sum(confs) / len(confs), confs, "IL", 0.7)))
    return out


def run(tracker: PlateTracker, events: list[tuple[float, PlateResult]], end: float) -> list[FinishedTrack]:
    by_t: dict[float, list[PlateResult]] = {}
    for t, r in events:
        by_t.setdefault(round(t, 3), []).append(r)
    finished: list[FinishedTrack] = []
    t = 0.0
    while t <= end:
        finished += tracker.update(t, by_t.get(round(t, 3), []))
        t = round(t + 1 / FPS, 3)
    return finished + tracker.flush()


def test_one_read_per_vehicle_with_consensus_text() -> None:
    rnd = random.Random(3)
    tracker = PlateTracker(TrackerSettings(emit_delay_s=0.6))
    events = pass_of("ABC1234", 100, 40, 15, 0.0, rnd) + pass_of("XYZ9876", 1100, -35, 12, 0.5, rnd)
    finished = run(tracker, events, 5.0)
    assert sorted(f.text for f in finished) == ["ABC1234", "XYZ9876"]
    for f in finished:
        assert len(f.char_confidences) == 7 and 0 < f.confidence <= 1
        assert f.state == "IL"
        assert f.best.result.box[2] - f.best.result.box[0] == 120


def test_read_emitted_within_the_delay_after_the_vehicle_leaves() -> None:
    rnd = random.Random(4)
    tracker = PlateTracker(TrackerSettings(emit_delay_s=0.5))
    events = pass_of("KLM5555", 0, 30, 10, 0.0, rnd)  # last seen at t=0.9
    emitted_at = None
    t = 0.0
    by_t = {round(t_, 3): [r] for t_, r in events}
    while t < 3 and emitted_at is None:
        if tracker.update(t, by_t.get(round(t, 3), [])):
            emitted_at = t
        t = round(t + 0.1, 3)
    assert emitted_at is not None and 0.9 + 0.5 <= emitted_at <= 0.9 + 0.5 + 0.11


def test_parked_car_gives_one_read_not_one_per_interval() -> None:
    rnd = random.Random(5)
    tracker = PlateTracker(TrackerSettings(emit_delay_s=0.5, max_track_s=2.0))
    events = pass_of("PRK1000", 500, 0, 100, 0.0, rnd)  # 10 s in place
    finished = run(tracker, events, 12.0)
    assert [f.text for f in finished] == ["PRK1000"]


def test_single_glimpse_is_not_a_read_when_min_hits_is_two() -> None:
    tracker = PlateTracker(TrackerSettings(min_hits=2))
    finished = run(tracker, [(0.0, PlateResult((0, 0, 100, 30), 0.9, "GHOST1", 0.9))], 2.0)
    assert finished == []


def test_vote_weights_characters_by_confidence() -> None:
    rs = [
        PlateResult((0, 0, 1, 1), 1, "AB0123", 0.9, (0.9, 0.9, 0.3, 0.9, 0.9, 0.9)),
        PlateResult((0, 0, 1, 1), 1, "ABO123", 0.9, (0.9, 0.9, 0.95, 0.9, 0.9, 0.9)),
        PlateResult((0, 0, 1, 1), 1, "ABO12", 0.4, (0.5,) * 5),
    ]
    text, _conf, chars = vote(rs)
    assert text == "ABO123" and len(chars) == 6 and chars[2] < chars[0]


def test_text_similarity() -> None:
    assert text_similarity("ABC123", "ABC123") == 1.0
    assert abs(text_similarity("ABC123", "ABC12") - 5 / 6) < 1e-9


def test_plate_formats_drop_junk() -> None:
    fmts = PlateFormats({"IL": [r"^[A-Z]{1,3}[0-9]{1,5}$", r"^[0-9]{1,6}$"], "IN": [r"^[0-9]{3}[A-Z]{1,3}$"]})
    assert fmts.accepts("AB1234", "IL")
    assert not fmts.accepts("1234AB", "IL")
    assert fmts.accepts("123ABC", None)  # unknown state: any jurisdiction's pattern
    assert not fmts.accepts("XX", None)
    assert PlateFormats({}, enabled=False).accepts("anything", None)


def test_a_second_partial_box_on_the_same_plate_is_not_a_second_vehicle() -> None:
    tracker = PlateTracker(TrackerSettings(emit_delay_s=0.5))
    events = []
    for i in range(8):
        t, x = i / FPS, 100 + 30 * i
        events.append((t, PlateResult((x, 400, x + 120, 430), 0.9, "DUP1234", 0.9, (0.9,) * 7)))
        events.append((t, PlateResult((x + 40, 402, x + 118, 428), 0.5, "1234", 0.6, (0.6,) * 4)))  # inside it
    finished = run(tracker, events, 3.0)
    assert [f.text for f in finished] == ["DUP1234"]


def test_settled_track_spares_ocr_and_skipped_frames_do_not_vote() -> None:
    """After enough confident reads a track is settled: its next boxes need no OCR, the
    unread (empty-text) results keep the track alive and do not change its text or state."""
    tracker = PlateTracker(TrackerSettings(settle_reads=3, settle_confidence=0.9))
    confs = (0.97,) * 7
    t = 0.0
    assert not tracker.is_settled((100, 400, 220, 430), t)
    for i in range(3):
        t = i / FPS
        box = (100 + 10 * i, 400, 220 + 10 * i, 430)
        assert not tracker.is_settled(box, t)
        tracker.update(t, [PlateResult(box, 0.9, "ABC1234", 0.97, confs, "IL", 0.9)])
    # the plate moved on by one step: it continues the settled track
    nxt = (130, 400, 250, 430)
    assert tracker.is_settled(nxt, 3 / FPS)
    # a plate elsewhere in the frame is not settled
    assert not tracker.is_settled((600, 100, 720, 130), 3 / FPS)
    finished = []
    for i in range(3, 12):
        t = i / FPS
        box = (100 + 10 * i, 400, 220 + 10 * i, 430)
        assert tracker.is_settled(box, t)
        finished += tracker.update(t, [PlateResult(box, 0.9, "", 0.0)])
    finished += tracker.update(t + 1.0, [])
    assert len(finished) == 1
    tr = finished[0]
    assert tr.text == "ABC1234" and tr.hits == 12
    assert tr.state == "IL" and tr.state_confidence >= 0.9
    assert tr.best.result.text == "ABC1234"


def test_unsure_track_keeps_reading() -> None:
    tracker = PlateTracker(TrackerSettings(settle_reads=3, settle_confidence=0.9))
    for i in range(6):
        box = (100 + 10 * i, 400, 220 + 10 * i, 430)
        text = "ABC1234" if i % 2 else "A8C1234"
        tracker.update(i / FPS, [PlateResult(box, 0.9, text, 0.6, (0.6,) * 7, None, 0.0)])
    assert not tracker.is_settled((160, 400, 280, 430), 6 / FPS)


def test_unsure_track_stops_reading_after_the_cap() -> None:
    tracker = PlateTracker(TrackerSettings(settle_reads=3, settle_confidence=0.9, settle_max_reads=6))
    for i in range(5):
        box = (100 + 10 * i, 400, 220 + 10 * i, 430)
        tracker.update(i / FPS, [PlateResult(box, 0.9, "ABC1234" if i % 2 else "A8C1234", 0.6, (0.6,) * 7)])
    assert not tracker.is_settled((150, 400, 270, 430), 5 / FPS)
    tracker.update(5 / FPS, [PlateResult((150, 400, 270, 430), 0.9, "ABC1234", 0.6, (0.6,) * 7)])
    assert tracker.is_settled((160, 400, 280, 430), 6 / FPS)
