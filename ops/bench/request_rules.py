"""Cost of the request rules (protovalidate) per read, against the per-read work without them.

    .venv/bin/python -m ops.bench.request_rules [--reads 5000] [--rounds 5]

Per read the hub decodes the IngestRequest and runs the config checks (hub.validation); the
rules add one cached-validator call. Both are timed on the same reads in the same run, best
of --rounds; prints JSON with microseconds per read and the ratio with/without the rules.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

from alpr.v1 import ingest_pb2

from alpr_common.simulation import make_read, noise_jpeg
from hub.config import HubConfig
from hub.request_rules import problem
from hub.validation import validate_read


def best_us(fns: list[Callable[[], None]], n: int, rounds: int) -> list[float]:
    """Microseconds per read of each function, best of ``rounds``, the functions taking turns
    so that a busy machine slows them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return [b / n * 1e6 for b in best]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reads", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    rnd = random.Random(1)
    crop = noise_jpeg(136, 40, seed=1, quality=80)
    now = datetime.now(UTC)
    wire = [
        ingest_pb2.IngestRequest(
            read=make_read(node_id="n1", camera_id="c1", captured=now, rnd=rnd, crop_jpeg=crop)
        ).SerializeToString()
        for _ in range(args.reads)
    ]
    config = HubConfig.model_validate({})
    problem(ingest_pb2.IngestRequest.FromString(wire[0]).read)  # compile the rules once, as the hub does

    def without_rules() -> None:
        for w in wire:
            validate_read(ingest_pb2.IngestRequest.FromString(w).read, config, now)

    def with_rules() -> None:
        for w in wire:
            read = ingest_pb2.IngestRequest.FromString(w).read
            assert problem(read) is None
            validate_read(read, config, now)

    reads = [ingest_pb2.IngestRequest.FromString(w).read for w in wire]

    def rules_only() -> None:
        for r in reads:
            problem(r)

    base, full, alone = best_us([without_rules, with_rules, rules_only], len(wire), args.rounds)
    print(json.dumps({
        "reads": len(wire),
        "read_bytes": len(wire[0]),
        "us_per_read_without_rules": round(base, 2),
        "us_per_read_with_rules": round(full, 2),
        "us_per_read_rules_alone": round(alone, 2),
        "ratio_with_vs_without": round(full / base, 2),
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
