#!/usr/bin/env python3
"""Fleet benchmark: configuration propagation to many subscribed units, and a model rollout.

    .venv/bin/python -m ops.bench.fleet [--nodes 200] [--changes 20] [--canary 10]

One hub (its own process) and ``--nodes`` simulated units in this process, each on its own
FleetConfigService.Subscribe stream as a real unit subscribes (node id, groups, the release it
runs). A unit acknowledges each configuration version when it receives it; config latency is
from the operator's SetOverlay call to each unit receiving the new overlay. Then a signed
release made of the shipped models (detector + OCR + plate config, ~15 MB) and a sample image
is uploaded and rolled out: first to a canary group, then to every unit. Each simulated unit
downloads every file in chunks, checks its size and SHA-256 and the manifest's signature (as a
unit does; it does not run the models) and reports RUNNING. ``rollout_s`` runs from the
``--all`` stage to the last unit reporting; ``hub_cpu_pct`` is the hub process's CPU over that
time (100 = one core). Baseline of the same run: one unit alone downloading the release
(``one_download_s``).

Progress on stderr; the last line is JSON:
{"config_p99_ms", "rollout_s", "hub_cpu_pct", "config_p50_ms", "canary_s", "one_download_s", ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
from alpr.v1 import fleet_config_pb2, fleet_config_pb2_grpc, fleet_models_pb2, fleet_models_pb2_grpc

from alpr_common.model_release import build_manifest, load_private_key, load_public_key, new_key, parse_manifest, sign
from alpr_common.model_release import verify as verify_signature
from alpr_common.operator.fleet import upload_requests
from ops.bench.common import ROOT, cassandra, hub_process, log, percentile, process_usage
from ops.bench.console import drop, migrate

MODELS = ROOT / "node" / "models"
GROUP = "bench-fleet"


class SimUnit:
    """One simulated unit on its configuration stream."""

    def __init__(self, node_id: str, groups: list[str], target: str, public_key: Any) -> None:
        self.node_id = node_id
        self.groups = groups
        self.target = target
        self.public_key = public_key
        self.received: dict[int, float] = {}  # config version -> monotonic time received
        self.running = ""
        self.done_at: float | None = None
        self.out: asyncio.Queue[fleet_config_pb2.FleetConfigServiceSubscribeRequest | None] = asyncio.Queue()
        self.connected = asyncio.Event()

    async def run(self, channel: grpc.aio.Channel) -> None:
        # aio stubs: the generated stubs are typed for the blocking API
        stub: Any = fleet_config_pb2_grpc.FleetConfigServiceStub(channel)
        models: Any = fleet_models_pb2_grpc.ModelReleaseServiceStub(channel)
        await self.out.put(
            fleet_config_pb2.FleetConfigServiceSubscribeRequest(
                start=fleet_config_pb2.FleetConfigSubscribeStart(
                    node_id=self.node_id, groups=self.groups, model_release_id=self.running
                )
            )
        )

        async def requests() -> Any:
            while (m := await self.out.get()) is not None:
                yield m

        call = stub.Subscribe(requests())
        work: asyncio.Task[None] | None = None
        async for resp in call:
            self.connected.set()
            kind = resp.WhichOneof("payload")
            if kind == "update":
                self.received.setdefault(resp.update.version, time.monotonic())
                await self.out.put(
                    fleet_config_pb2.FleetConfigServiceSubscribeRequest(
                        ack=fleet_config_pb2.FleetConfigAck(version=resp.update.version)
                    )
                )
            elif (
                kind == "model"
                and resp.model.release_id
                and resp.model.release_id != self.running
                and (work is None or work.done())
            ):
                work = asyncio.create_task(self.switch(models, resp.model.release_id))

    async def switch(self, models: Any, release_id: str) -> None:
        await self.report(release_id, fleet_models_pb2.NODE_MODEL_STATE_DOWNLOADING)
        await download(models, release_id, self.public_key)
        self.running = release_id
        self.done_at = time.monotonic()
        await self.report(release_id, fleet_models_pb2.NODE_MODEL_STATE_RUNNING)

    async def report(self, release_id: str, state: int) -> None:
        await self.out.put(
            fleet_config_pb2.FleetConfigServiceSubscribeRequest(
                model=fleet_models_pb2.ModelReport(
                    release_id=release_id,
                    state=state,  # type: ignore[arg-type]
                    running_release_id=self.running,
                )
            )
        )


async def download(models: Any, release_id: str, key: Any) -> int:
    """Fetch and check a whole release as a unit does (hashes and signature); bytes fetched."""
    rel = (await models.GetRelease(fleet_models_pb2.GetReleaseRequest(release_id=release_id))).release
    verify_signature(rel.manifest_json, rel.signature, [key])
    manifest = parse_manifest(rel.manifest_json)
    total = 0
    for f in manifest.files:
        h = hashlib.sha256()
        got = 0
        async for chunk in models.Download(fleet_models_pb2.DownloadRequest(release_id=release_id, file=f.name)):
            h.update(chunk.data)
            got += len(chunk.data)
        if got != f.size or h.hexdigest() != f.sha256:
            raise RuntimeError(f"{f.name}: does not match the manifest")
        total += got
    return total


def make_release(folder: Path, release_id: str, key: Path) -> tuple[bytes, bytes]:
    files: dict[str, tuple[Path, str]] = {
        "plate_detector.onnx": (MODELS / "plate_detector.onnx", "detector"),
        "plate_ocr.onnx": (MODELS / "plate_ocr.onnx", "ocr"),
        "plate_config.yaml": (MODELS / "plate_config.yaml", "plate_config"),
    }
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "samples" / "s.jpg"), np.full((720, 1280, 3), 90, np.uint8))
    files["samples/s.jpg"] = (folder / "samples" / "s.jpg", "sample")
    for name, (path, _) in files.items():
        if not (folder / name).exists():
            (folder / name).symlink_to(path)
    manifest = build_manifest(release_id, files, [("samples/s.jpg", ["BENCH1"])])
    return manifest, sign(manifest, load_private_key(key))


async def bench(target: str, hub_pid: int, args: argparse.Namespace, key: Path, pub: Path) -> dict[str, Any]:
    public = load_public_key(pub)
    opts = [("grpc.max_receive_message_length", 8 * 1024 * 1024)]
    channels = [grpc.aio.insecure_channel(target, options=opts) for _ in range(args.channels)]
    units = [
        SimUnit(f"bench-{i:04d}", [GROUP, "canary"] if i < args.canary else [GROUP], target, public)
        for i in range(args.nodes)
    ]
    tasks = [asyncio.create_task(u.run(channels[i % len(channels)])) for i, u in enumerate(units)]
    await asyncio.wait_for(asyncio.gather(*(u.connected.wait() for u in units)), 120)
    log(f"bench: {len(units)} units subscribed")
    cfg: Any = fleet_config_pb2_grpc.FleetConfigServiceStub(channels[0])
    latencies: list[float] = []
    for i in range(args.changes):
        start = time.monotonic()
        r = await cfg.SetOverlay(
            fleet_config_pb2.SetOverlayRequest(
                scope=fleet_config_pb2.OverlayScope(kind=fleet_config_pb2.OVERLAY_SCOPE_KIND_GROUP, name=GROUP),
                settings_json=json.dumps({"tracker": {"min_hits": 2 + i % 3}, "hub": {"window": 64 + i}}),
                reason="bench",
                changed_by="bench",
            )
        )
        deadline = time.monotonic() + 30
        while any(r.version not in u.received for u in units) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        missing = sum(r.version not in u.received for u in units)
        if missing:
            raise RuntimeError(f"config version {r.version} did not reach {missing} unit(s) in 30 s")
        latencies += [u.received[r.version] - start for u in units]
    log(
        f"bench: config p50 {percentile(latencies, 0.5) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms"
    )

    models: Any = fleet_models_pb2_grpc.ModelReleaseServiceStub(channels[0])
    release = f"bench-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        manifest, signature = make_release(Path(tmp), release, key)
        t0 = time.monotonic()
        await models.Upload(upload_requests(Path(tmp), manifest, signature, "bench"))
        upload_s = time.monotonic() - t0
    size = parse_manifest(manifest).total_bytes
    log(f"bench: release {release} ({size / 1e6:.1f} MB) uploaded in {upload_s:.1f} s")
    t0 = time.monotonic()
    await download(models, release, public)
    one_download_s = time.monotonic() - t0
    log(f"bench: one unit alone downloads and checks it in {one_download_s:.2f} s")

    async def until(group: list[SimUnit], limit: float) -> None:
        deadline = time.monotonic() + limit
        while any(u.running != release for u in group):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{sum(u.running != release for u in group)} unit(s) never switched")
            await asyncio.sleep(0.05)

    t0 = time.monotonic()
    await models.Rollout(fleet_models_pb2.RolloutRequest(
        release_id=release, stage=fleet_models_pb2.ROLLOUT_STAGE_CANARY, canary_group="canary", reason="bench",
        changed_by="bench"))  # fmt: skip
    await until(units[: args.canary], 600)
    canary_s = time.monotonic() - t0
    log(f"bench: canary ({args.canary} units) on the release in {canary_s:.1f} s")
    cpu0, _ = process_usage(hub_pid)
    t0 = time.monotonic()
    await models.Rollout(fleet_models_pb2.RolloutRequest(
        release_id=release, stage=fleet_models_pb2.ROLLOUT_STAGE_ALL, reason="bench", changed_by="bench"))  # fmt: skip
    await until(units, 1800)
    rollout_s = time.monotonic() - t0
    cpu1, rss = process_usage(hub_pid)
    hub_cpu_pct = 100 * (cpu1 - cpu0) / rollout_s
    log(f"bench: all {len(units)} units on the release in {rollout_s:.1f} s, hub CPU {hub_cpu_pct:.0f}%")
    for t in tasks:
        t.cancel()
    for u in units:
        u.out.put_nowait(None)
    for ch in channels:
        await ch.close(None)
    fetched = (len(units) - args.canary) * size
    return {
        "config_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "rollout_s": round(rollout_s, 2),
        "hub_cpu_pct": round(hub_cpu_pct, 1),
        "config_p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
        "config_changes": args.changes,
        "nodes": len(units),
        "canary_nodes": args.canary,
        "canary_s": round(canary_s, 2),
        "release_mb": round(size / 1e6, 2),
        "upload_s": round(upload_s, 2),
        "one_download_s": round(one_download_s, 3),
        "rollout_vs_one_download": round(rollout_s / one_download_s, 1),
        "rollout_mb_per_s": round(fetched / rollout_s / 1e6, 1),
        "hub_rss_mb": round(rss, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--canary", type=int, default=10)
    ap.add_argument("--channels", type=int, default=8, help="HTTP/2 connections the simulated units share")
    args = ap.parse_args()
    run = ROOT / ".run" / "bench-fleet"
    run.mkdir(parents=True, exist_ok=True)
    key = run / f"release-{uuid.uuid4().hex[:6]}.key"
    pub = new_key(key)
    ks = f"bench_fleet_{uuid.uuid4().hex[:8]}"
    with cassandra() as cass:
        migrate(cass, ks, run)  # without the hub's start-up time limit: schema changes crawl on a busy Cassandra
        try:
            with hub_process(
                cass, ks, run / "hub", cassandra={"write_consistency": "ONE", "read_consistency": "ONE"},
                model_releases={"release_public_keys": [str(pub)]}, start_timeout_s=900,
            ) as hub:  # fmt: skip
                result = asyncio.run(bench(hub, hub.pid, args, key, pub))
        finally:
            drop(cass, ks)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
