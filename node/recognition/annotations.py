"""Read the annotation files of ``shared/data/real-plates`` (tab-separated, top-left boxes)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GroundTruth:
    box: tuple[int, int, int, int]  # x1, y1, x2, y2
    text: str | None  # None when the file has boxes only


def read_boxes(path: Path) -> dict[str, list[GroundTruth]]:
    """``filename x y width height [plate_text]`` per line -> {filename: [GroundTruth]}."""
    out: dict[str, list[GroundTruth]] = defaultdict(list)
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) < 5 or parts[0].startswith("#"):
            continue
        x, y, w, h = (int(float(v)) for v in parts[1:5])
        text = "".join(c for c in parts[5].upper() if c.isalnum()) if len(parts) > 5 else None
        out[parts[0]].append(GroundTruth((x, y, x + w, y + h), text))
    return dict(out)


def read_labels(path: Path) -> dict[str, str]:
    """``filename plate_text`` per line (crop folders)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out[parts[0]] = "".join(c for c in parts[1].upper() if c.isalnum())
    return out
