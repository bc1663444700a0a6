"""Read the annotation files of ``shared/data/real-plates`` (tab-separated, top-left boxes)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GroundTruth:
    box: tuple[int, int, int, int]  # x1, y1, x2, y2
    text: str | None  # None when the file has boxes only
    state: str | None = None  # state of issuance when the set knows it


def _clean(text: str) -> str:
    return "".join(c for c in text.upper() if c.isalnum())


def plate_box_from_character_row(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The whole plate around a box of its character row only (``us-ucsd`` labels): US plates
    are about 2:1 and the row sits a little below the middle. Detectors and ``us/`` boxes
    cover the whole plate; scoring one against the other would miss good detections."""
    x1, y1, x2, y2 = box
    w = (x2 - x1) * 1.1
    h = w / 2.0
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 - 0.04 * h
    return round(cx - w / 2), round(cy - h / 2), round(cx + w / 2), round(cy + h / 2)


def read_boxes(path: Path, state: str | None = None, character_rows: bool = False) -> dict[str, list[GroundTruth]]:
    """``filename x y width height [plate_text]`` per line -> {filename: [GroundTruth]}.

    ``state`` is the state of every plate of the file when the set is of one state
    (``us-ucsd/`` is all California); ``character_rows``: the boxes cover only the
    characters and are widened to the plate.
    """
    out: dict[str, list[GroundTruth]] = defaultdict(list)
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) < 5 or parts[0].startswith("#"):
            continue
        x, y, w, h = (int(float(v)) for v in parts[1:5])
        text = _clean(parts[5]) if len(parts) > 5 else None
        box = (x, y, x + w, y + h)
        out[parts[0]].append(GroundTruth(plate_box_from_character_row(box) if character_rows else box, text, state))
    return dict(out)


def read_labels(path: Path) -> dict[str, str]:
    """``filename plate_text`` per line (crop folders)."""
    return {name: text for name, (text, _) in read_crop_labels(path).items()}


def read_crop_labels(path: Path) -> dict[str, tuple[str, str | None]]:
    """``filename plate_text [state]`` per line (crop folders) -> {filename: (text, state)}."""
    out: dict[str, tuple[str, str | None]] = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#"):
            out[parts[0]] = (_clean(parts[1]), parts[2].upper() if len(parts) > 2 else None)
    return out


SPLITS_PATH = Path(__file__).resolve().parent / "splits.json"


def split_info(set_name: str, path: Path = SPLITS_PATH) -> dict[str, object]:
    """The fixed splits of one real set (``us-ucsd``, ``us-crops``); {} when it has none."""
    if not path.exists():
        return {}
    import json

    info = json.loads(path.read_text()).get("sets", {}).get(set_name, {})
    return dict(info) if isinstance(info, dict) else {}


def split_names(set_name: str, split: str, path: Path = SPLITS_PATH) -> set[str]:
    """File names of ``split`` (e.g. ``val``, ``heldout``) of ``set_name``; KeyError if unknown."""
    info = split_info(set_name, path)
    names = info.get(split)
    if not isinstance(names, list):
        known = sorted(k for k, v in info.items() if isinstance(v, list))
        raise KeyError(f"set {set_name!r} has no split {split!r} (known: {known or 'none'}) in {path}")
    return {str(n) for n in names}
