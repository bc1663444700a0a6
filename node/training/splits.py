"""The fixed validation / held-out splits of the real sets we train on (``node/recognition/splits.json``).

Made once with :func:`make_splits` (seeded) and committed: training never sees a split's
files, evaluation scores them (``alpr-node evaluate ... --split val``). Plates whose text
occurs twice (the same car in two frames) stay on one side of a split.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from pathlib import Path

from node.recognition.annotations import SPLITS_PATH, read_boxes, read_crop_labels


def _grouped(names_by_text: dict[str, list[str]], fraction: float, rng: random.Random) -> list[str]:
    texts = sorted(names_by_text)
    rng.shuffle(texts)
    want = round(fraction * sum(len(v) for v in names_by_text.values()))
    out: list[str] = []
    for t in texts:
        if len(out) >= want:
            break
        out.extend(names_by_text[t])
    return sorted(out)


def make_splits(data_root: Path, seed: int = 12) -> dict[str, object]:
    """us-ucsd: 25% of frames for validation; us-crops: 20% of every state's crops held out."""
    rng = random.Random(seed)
    ucsd_ann = data_root / "us-ucsd" / "annotations.tsv"
    by_text: dict[str, list[str]] = defaultdict(list)
    for name, truths in read_boxes(ucsd_ann).items():
        by_text[truths[0].text or name].append(name)
    ucsd_val = _grouped(by_text, 0.25, rng)
    crops_lab = data_root / "us-crops" / "labels.tsv"
    by_state: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name, (text, state) in read_crop_labels(crops_lab).items():
        by_state[state or "?"][text].append(name)
    held: list[str] = []
    taken_texts: set[str] = set()
    for state in sorted(by_state):
        groups = {t: v for t, v in by_state[state].items() if t not in taken_texts}
        if sum(len(v) for v in groups.values()) >= 3:
            part = _grouped(groups, 0.2, rng)
            held.extend(part)
            taken_texts.update(t for t, v in groups.items() if set(v) & set(part))
    # a text held out in one state is held out everywhere (no leak through a repeated plate)
    names_by_text = {n: t for n, (t, _) in read_crop_labels(crops_lab).items()}
    held = sorted({n for n, t in names_by_text.items() if t in taken_texts})
    return {
        "seed": seed,
        "sets": {
            "us-ucsd": {
                "labels_sha256": hashlib.sha256(ucsd_ann.read_bytes()).hexdigest(),
                "state": "CA",
                "boxes": "character_row",
                "val": ucsd_val,
            },
            "us-crops": {
                "labels_sha256": hashlib.sha256(crops_lab.read_bytes()).hexdigest(),
                "heldout": sorted(held),
            },
        },
    }


def write_splits(data_root: Path, path: Path = SPLITS_PATH, seed: int = 12) -> dict[str, object]:
    splits = make_splits(data_root, seed)
    path.write_text(json.dumps(splits, indent=1) + "\n")
    return splits
