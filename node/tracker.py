"""Turns per-frame plate results into ONE read per vehicle pass.

A track follows one plate across frames, associating new results by box overlap with the
track's motion-predicted box, or by text similarity near it. When a track has not been
seen for ``emit_delay_s`` (the vehicle left) it is finished: its text is a per-character
vote across all its frames, weighted by the OCR's character confidences, and its best
crop is kept. A plate that stays in view (a parked car) is emitted once after
``max_track_s`` and then followed silently, so it yields no further reads.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from alpr_common.similarity import iou, text_similarity
from node.recognition.types import Box, PlateResult


@dataclass(frozen=True)
class TrackerSettings:
    emit_delay_s: float = 0.6
    max_track_s: float = 20.0
    min_hits: int = 2
    iou_min: float = 0.05
    text_similarity_min: float = 0.6
    max_center_jump: float = 4.0  # in plate widths, for text-only association
    # a track read this many times with a consensus at least this confident needs no more OCR
    settle_reads: int = 4  # 0: read every frame
    settle_confidence: float = 0.9
    settle_max_reads: int = 8  # enough reads to vote on, however unsure (0: no limit)


@dataclass
class Sighting:
    t: float
    result: PlateResult
    frame: Any = None  # the frame it was seen in (kept only for the best sighting)


@dataclass
class FinishedTrack:
    """A vehicle pass: consensus text, its confidences and the best sighting."""

    track_id: int
    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    state: str | None
    state_confidence: float
    best: Sighting
    first_t: float
    last_t: float
    hits: int


@dataclass
class _Track:
    track_id: int
    first_t: float
    last_t: float
    box: Box
    velocity: tuple[float, float] = (0.0, 0.0)
    results: list[PlateResult] = field(default_factory=list)
    best: Sighting | None = None
    best_score: float = -1.0
    emitted: bool = False
    settled: bool = False

    def predicted(self, t: float) -> Box:
        dt = t - self.last_t
        dx, dy = self.velocity[0] * dt, self.velocity[1] * dt
        x1, y1, x2, y2 = self.box
        return (round(x1 + dx), round(y1 + dy), round(x2 + dx), round(y2 + dy))

    def add(self, t: float, result: PlateResult, frame: Any) -> None:
        if t > self.last_t:
            (ox, oy), (nx, ny) = _center(self.box), _center(result.box)
            dt = t - self.last_t
            self.velocity = ((nx - ox) / dt, (ny - oy) / dt)
        self.box = result.box
        self.last_t = max(self.last_t, t)
        self.results.append(result)
        width = max(1, result.box[2] - result.box[0])
        score = result.confidence * result.detection_score * min(width, 200) ** 0.5
        if score > self.best_score:
            self.best_score = score
            self.best = Sighting(t, result, frame)


def _center(b: Box) -> tuple[float, float]:
    return (b[0] + b[2]) / 2, (b[1] + b[3]) / 2


def _overlap_of_smaller(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area: 1.0 when one box lies inside the other."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 0.0


def vote(results: list[PlateResult]) -> tuple[str, float, tuple[float, ...]]:
    """Per-character consensus across frames, weighted by character confidence."""
    texts = [r for r in results if r.text]
    if not texts:
        return "", 0.0, ()
    length_votes: defaultdict[int, float] = defaultdict(float)
    for r in texts:
        length_votes[len(r.text)] += r.confidence or 1e-3
    length = max(length_votes.items(), key=lambda kv: kv[1])[0]
    same = [r for r in texts if len(r.text) == length]
    chars: list[str] = []
    confs: list[float] = []

    def char_conf(r: PlateResult, i: int) -> float:
        return r.char_confidences[i] if len(r.char_confidences) == length else (r.confidence or 1e-3)

    for i in range(length):
        weights: defaultdict[str, float] = defaultdict(float)
        for r in same:
            weights[r.text[i]] += char_conf(r, i)
        ch, w = max(weights.items(), key=lambda kv: kv[1])
        winners = [char_conf(r, i) for r in same if r.text[i] == ch]
        chars.append(ch)
        # share of the vote x how sure the OCR was when it read this character
        confs.append(w / sum(weights.values()) * sum(winners) / len(winners))
    agreement = length_votes[length] / sum(length_votes.values())
    confidence = min(1.0, sum(confs) / length * agreement)
    return "".join(chars), confidence, tuple(round(c, 4) for c in confs)


def _state_vote(results: list[PlateResult]) -> tuple[str | None, float]:
    results = [r for r in results if r.text]
    weights: defaultdict[str, float] = defaultdict(float)
    for r in results:
        if r.state:
            weights[r.state] += r.state_confidence
    if not weights:
        return None, 0.0
    state, w = max(weights.items(), key=lambda kv: kv[1])
    return state, min(1.0, w / len(results))


class PlateTracker:
    """Tracks plates of one camera. Call ``update`` per frame, ``flush`` at the end.

    Results with an empty text (OCR skipped because :meth:`is_settled` said so) still move
    their track and keep it alive; they do not vote.
    """

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self._tracks: list[_Track] = []
        self._ids = itertools.count(1)

    @property
    def active(self) -> int:
        return len(self._tracks)

    def followed(self, t: float, still_widths_per_s: float = 0.5) -> list[tuple[Box, bool]]:
        """(predicted box at ``t``, quiet) of every track still followed; quiet: its text is
        settled and it moves less than ``still_widths_per_s`` plate widths a second (parked,
        waiting): looking at it now and then keeps it followed."""
        out = []
        for tr in self._tracks:
            width = max(1, tr.box[2] - tr.box[0])
            still = abs(tr.velocity[0]) + abs(tr.velocity[1]) <= still_widths_per_s * width
            out.append((tr.predicted(t), tr.settled and still))
        return out

    def is_settled(self, box: Box, t: float) -> bool:
        """True when ``box`` continues a track whose text is already settled (no OCR needed)."""
        return any(tr.settled and iou(tr.predicted(t), box) >= 0.3 for tr in self._tracks)

    def update(self, t: float, results: list[PlateResult], frame: Any = None) -> list[FinishedTrack]:
        """Add one frame's results (time ``t`` in seconds); returns tracks finished by now."""
        s = self.settings
        done = self._finish(t)  # vehicles that left before this frame are not candidates
        pairs: list[tuple[float, int, int]] = []
        for ti, tr in enumerate(self._tracks):
            pred = tr.predicted(t)
            for ri, r in enumerate(results):
                overlap = iou(pred, r.box)
                sim = text_similarity(_track_text(tr), r.text) if r.text else 0.0
                score = 0.0
                if overlap >= s.iou_min:
                    score = 1.0 + overlap + sim
                elif sim >= s.text_similarity_min and _near(pred, r.box, s.max_center_jump):
                    score = sim
                if score > 0:
                    pairs.append((score, ti, ri))
        used_t: set[int] = set()
        used_r: set[int] = set()
        for _score, ti, ri in sorted(pairs, reverse=True):
            if ti in used_t or ri in used_r:
                continue
            used_t.add(ti)
            used_r.add(ri)
            tr = self._tracks[ti]
            tr.add(t, results[ri], frame)
            if s.settle_reads and not tr.settled and results[ri].text:
                read = [r for r in tr.results if r.text]
                confident = len(read) >= s.settle_reads and vote(read)[1] >= s.settle_confidence
                if confident or (s.settle_max_reads and len(read) >= s.settle_max_reads):
                    tr.settled = True
        taken = [results[ri].box for ri in used_r]
        for ri, r in enumerate(results):
            if ri not in used_r:
                if any(_overlap_of_smaller(r.box, box) > 0.6 for box in taken):
                    continue  # a second, partial box on a plate already followed in this frame
                taken.append(r.box)
                tr = _Track(next(self._ids), t, t, r.box)
                tr.add(t, r, frame)
                self._tracks.append(tr)
        return done + self._finish(t)

    def _finish(self, t: float) -> list[FinishedTrack]:
        s = self.settings
        done: list[FinishedTrack] = []
        keep: list[_Track] = []
        for tr in self._tracks:
            gone = t - tr.last_t >= s.emit_delay_s
            if not tr.emitted and len(tr.results) >= s.min_hits and (gone or t - tr.first_t >= s.max_track_s):
                done.append(_finished(tr))
                tr.emitted = True
            if not gone:
                keep.append(tr)
        self._tracks = keep
        return done

    def flush(self) -> list[FinishedTrack]:
        """Finish every track (end of a video, shutdown)."""
        done = [_finished(tr) for tr in self._tracks if not tr.emitted and len(tr.results) >= self.settings.min_hits]
        self._tracks = []
        return done


def _track_text(tr: _Track) -> str:
    return tr.best.result.text if tr.best else ""


def _near(a: Box, b: Box, max_widths: float) -> bool:
    (ax, ay), (bx, by) = _center(a), _center(b)
    width = max(1, a[2] - a[0])
    return abs(ax - bx) <= max_widths * width and abs(ay - by) <= max_widths * width


def _finished(tr: _Track) -> FinishedTrack:
    assert tr.best is not None
    text, conf, char_confs = vote(tr.results)
    state, state_conf = _state_vote(tr.results)
    return FinishedTrack(
        track_id=tr.track_id,
        text=text,
        confidence=conf,
        char_confidences=char_confs,
        state=state,
        state_confidence=state_conf,
        best=tr.best,
        first_t=tr.first_t,
        last_t=tr.last_t,
        hits=len(tr.results),
    )
