"""Model releases: signed uploads stored in chunks (truncated, tampered and unsigned ones refused),
downloads that resume after a lost link, and a staged rollout to real nodes: a canary whose
self-test fails switches back by itself and pauses the rollout, a good release reaches every
unit (one that was off catches up), ``rollback`` returns them, and reads carry the models they
were read with."""

from __future__ import annotations

import io
import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import cv2
import grpc
import pytest
from alpr.v1 import fleet_models_pb2, fleet_models_pb2_grpc
from cassandra.cluster import Session

from alpr_common.model_release import new_key, parse_manifest, sha256_file
from alpr_common.operator.fleet import upload_requests
from alpr_common.operator_cli import main as alpr
from alpr_common.retry import Backoff
from node.config import ModelRolloutConfig, NodeConfig
from node.model_releases import Assignment, ModelManager, ReleaseClient, rate_drop
from node.recognition.loading import MODELS_DIR
from node.recognition.types import FrameRecognizer, PlateResult
from node.runtime import NodeRuntime
from tests.conftest import fresh_keyspace, make_hub_config
from tests.fleet_models_support import (
    CuttableLink,
    blind_detector,
    make_release,
    plate_frame,
    readable_seeds,
    relabelled_ocr,
    shared_loader,
)
from tests.support import HubThread

pytestmark = pytest.mark.timeout(900)
Stage = fleet_models_pb2.RolloutStage


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("keys")
    pub = new_key(folder / "release.key")
    new_key(folder / "stranger.key")
    return folder / "release.key", pub


@pytest.fixture(scope="module")
def models_hub(cassandra: tuple[list[str], int], keys: tuple[Path, Path]) -> Iterator[HubThread]:
    """A hub that trusts the release key, on its own keyspace (one rollout log per fleet)."""
    cfg = make_hub_config(
        cassandra, fresh_keyspace("m"), model_releases={"release_public_keys": [str(keys[1])], "chunk_bytes": 65536}
    )
    hub = HubThread(cfg).start()
    yield hub
    hub.stop()


def stub(target: str) -> fleet_models_pb2_grpc.ModelReleaseServiceStub:
    return fleet_models_pb2_grpc.ModelReleaseServiceStub(grpc.insecure_channel(target))


def upload(target: str, folder: Path, manifest: bytes, signature: bytes, *, chunk: int = 100_000,
           edit: Callable[[list[Any]], list[Any]] | None = None) -> fleet_models_pb2.ModelReleaseServiceUploadResponse:  # fmt: skip
    reqs = list(upload_requests(folder, manifest, signature, "test", chunk))
    reqs[0].header.uploaded_by = "ops-1"
    if edit is not None:
        reqs = edit(reqs)
    resp: fleet_models_pb2.ModelReleaseServiceUploadResponse = stub(target).Upload(iter(reqs), timeout=120)
    return resp


def refusal(fn: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details() or ""


def wait(cond: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what} not met in {timeout} s"
        time.sleep(0.1)


def rid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_upload_stores_a_signed_release_and_refuses_truncated_tampered_or_unsigned(
    models_hub: HubThread, keys: tuple[Path, Path], tmp_path: Path, cql: Session
) -> None:
    t = models_hub.target
    det = blind_detector(tmp_path / "det.onnx")
    good = rid("r")
    manifest, sig = make_release(tmp_path / "good", good, keys[0], detector=det)
    r = upload(t, tmp_path / "good", manifest, sig)
    assert r.release_id == good and r.files == 3 and r.key_id
    got = stub(t).GetRelease(fleet_models_pb2.GetReleaseRequest(release_id=good), timeout=30).release
    assert got.manifest_json == manifest and got.signature == sig and got.uploaded_by == "ops-1"
    # a download from any offset returns exactly the file's bytes from there (what a resume asks)
    name = f"samples/s{readable_seeds()[0]}.jpg"
    sample = (tmp_path / "good" / name).read_bytes()
    req = fleet_models_pb2.DownloadRequest(release_id=good, file=name, offset=70_000)
    assert b"".join(c.data for c in stub(t).Download(req, timeout=30)) == sample[70_000:]
    code, details = refusal(lambda: upload(t, tmp_path / "good", manifest, sig))
    assert code == grpc.StatusCode.ALREADY_EXISTS and good in details

    def refused_leaves_nothing(release_id: str) -> None:
        c, _ = refusal(lambda: stub(t).GetRelease(fleet_models_pb2.GetReleaseRequest(release_id=release_id)))
        assert c == grpc.StatusCode.NOT_FOUND
        rows = cql.execute(
            f"SELECT seq FROM {models_hub.config.cassandra.keyspace}.model_release_chunks WHERE release_id = %s "
            "ALLOW FILTERING", (release_id,)
        )  # fmt: skip
        assert not list(rows), "chunks of a refused upload were left behind"

    # truncated: the stream ends before the last file is complete
    short = rid("r")
    m2, s2 = make_release(tmp_path / "short", short, keys[0], detector=det)
    code, details = refusal(lambda: upload(t, tmp_path / "short", m2, s2, edit=lambda rs: rs[:-1]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "truncated" in details, details
    refused_leaves_nothing(short)

    # tampered: one byte of the detector changed on the way (its hash no longer matches)
    bad = rid("r")
    m3, s3 = make_release(tmp_path / "bad", bad, keys[0], detector=det)

    def flip(rs: list[Any]) -> list[Any]:
        data = bytearray(rs[1].chunk.data)
        data[len(data) // 2] ^= 0xFF
        rs[1].chunk.data = bytes(data)
        return rs

    code, details = refusal(lambda: upload(t, tmp_path / "bad", m3, s3, edit=flip))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "SHA-256" in details, details
    refused_leaves_nothing(bad)

    # signed with a key the hub does not trust, or a manifest changed after signing
    other = rid("r")
    m4, s4 = make_release(tmp_path / "other", other, keys[0].with_name("stranger.key"), detector=det)
    code, details = refusal(lambda: upload(t, tmp_path / "other", m4, s4))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "signature" in details, details
    edited = m4.replace(b'"note"', b'"NOTE"')
    code, details = refusal(lambda: upload(t, tmp_path / "other", edited, s2))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "signature" in details, details
    refused_leaves_nothing(other)


def test_a_download_resumes_after_the_link_is_lost(
    models_hub: HubThread, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    release = rid("ocr")
    manifest, sig = make_release(
        tmp_path / "rel", release, keys[0], ocr=relabelled_ocr(tmp_path / "ocr.onnx", release), seeds=readable_seeds(1)
    )
    upload(models_hub.target, tmp_path / "rel", manifest, sig)
    cut_once: list[int] = []
    link: CuttableLink

    def maybe_cut(n: int) -> None:
        if n > 1_000_000 and not cut_once:
            cut_once.append(n)
            link.cut()

    link = CuttableLink(models_hub.target, maybe_cut)
    try:
        client = ReleaseClient([link.target], None, Backoff(0.05, 0.2), attempts=10)
        settings = ModelRolloutConfig(release_key_file=keys[1])
        m = ModelManager(tmp_path / "node", settings, {}, client, loader=shared_loader())
        m.fetch(release)
    finally:
        link.close()
    assert cut_once, "the link was never cut"
    assert client.resumed_at and max(client.resumed_at) > 0, client.resumed_at
    folder, _got = m.checked(release)
    assert sha256_file(folder / "plate_ocr.onnx") == sha256_file(tmp_path / "ocr.onnx")


def test_read_rate_drop_against_the_units_own_baseline() -> None:
    s = ModelRolloutConfig(max_read_rate_drop=0.5, min_baseline_reads=10)
    assert rate_drop((600, 60), (600, 35), s) is None  # 0.058 vs 0.1: less than half lost
    why = rate_drop((600, 60), (600, 20), s)
    assert why is not None and "fell from 0.100 to 0.033" in why
    assert rate_drop((600, 5), (600, 0), s) is None  # too few reads before to judge


def node_settings(tmp_path: Path, node_id: str, target: str, groups: list[str], key: Path,
                  plates: bool = False) -> dict[str, Any]:  # fmt: skip
    folder = tmp_path / f"frames-{node_id}"
    folder.mkdir(exist_ok=True)
    frame = plate_frame(5)[0] if plates else plate_frame(5)[0] * 0
    cv2.imwrite(str(folder / "0.jpg"), frame)
    return {
        "insecure_dev": True,  # plain gRPC to a test hub on loopback
        "node_id": node_id,
        "kind": "FIXED",
        "state_dir": str(tmp_path / node_id),
        "location": {"latitude": 41.5, "longitude": -88.1},
        "cameras": [{"camera_id": f"{node_id}-cam", "source": str(folder), "loop": True, "max_fps": 1}],
        "hub": {"targets": [target], "backoff_initial_s": 0.05, "backoff_max_s": 0.5, "heartbeat_interval_s": 0.5},
        "hotlist": {"enabled": False},
        "tracker": {"min_hits": 1, "emit_delay_s": 0.5},  # a looped still: one read per frame
        "gating": {"enabled": False},
        "fleet": {"groups": groups, "models": {"release_key_file": str(key)}},
        "metrics_port": -1,
    }


def start_node(settings: dict[str, Any], loader: Any) -> NodeRuntime:
    cfg = NodeConfig.model_validate(settings)
    client = ReleaseClient(cfg.hub.targets, None, Backoff(0.05, 0.5), attempts=10)
    models = ModelManager(Path(cfg.state_dir), cfg.fleet.models, dict(cfg.recognizer), client, loader=loader)
    return NodeRuntime(cfg, models=models).start()


def running(n: NodeRuntime) -> str:
    assert n.models is not None
    return n.models.current


def test_staged_rollout_canary_failure_pause_good_release_catch_up_and_rollback(
    models_hub: HubThread, keys: tuple[Path, Path], tmp_path: Path, cql: Session
) -> None:
    t = models_hub.target
    s = stub(t)
    canary = f"canary-{uuid.uuid4().hex[:6]}"
    loader = shared_loader()
    bad, good = rid("blind"), rid("good")
    mb, sb = make_release(tmp_path / "bad", bad, keys[0], detector=blind_detector(tmp_path / "blind.onnx"))
    upload(t, tmp_path / "bad", mb, sb)
    ocr = relabelled_ocr(tmp_path / "ocr.onnx", good)
    mg, sg = make_release(tmp_path / "good", good, keys[0], ocr=ocr)
    upload(t, tmp_path / "good", mg, sg)

    ids = [f"{canary}-n{i}" for i in range(3)]
    settings = [
        node_settings(tmp_path, ids[0], t, [canary, "pole"], keys[1]),
        node_settings(tmp_path, ids[1], t, ["pole"], keys[1]),
        node_settings(tmp_path, ids[2], t, ["patrol"], keys[1], plates=True),
    ]
    nodes = [start_node(x, loader) for x in settings]
    try:
        wait(lambda: all(n.fleet_sync is not None and n.fleet_sync.connected for n in nodes), what="subscribed")
        # 1. A release whose self-test fails: the canary keeps its models, the hub pauses.
        r = s.Rollout(fleet_models_pb2.RolloutRequest(release_id=bad, stage=Stage.ROLLOUT_STAGE_CANARY,
                                                      canary_group=canary, reason="new detector"), timeout=30)  # fmt: skip
        assert r.rollout.status == fleet_models_pb2.ROLLOUT_STATUS_ACTIVE

        def status() -> fleet_models_pb2.GetRolloutStatusResponse:
            resp: fleet_models_pb2.GetRolloutStatusResponse = s.GetRolloutStatus(
                fleet_models_pb2.GetRolloutStatusRequest(), timeout=30
            )
            return resp

        wait(lambda: status().rollout.status == fleet_models_pb2.ROLLOUT_STATUS_PAUSED, 300, "automatic pause")
        st = status()
        assert ids[0] in st.rollout.reason and "self-test" in st.rollout.reason, st.rollout.reason
        assert st.rollout.changed_by.startswith("hub:")
        assert running(nodes[0]) == "" and all(running(n) == "" for n in nodes)
        failed = {n.node_id: n for n in st.nodes}[ids[0]]
        assert failed.state == fleet_models_pb2.NODE_MODEL_STATE_FAILED and failed.running_release_id == ""
        for n in nodes[1:]:  # the others never fetched it
            assert not (Path(n.config.state_dir) / "models" / bad).exists()
        code, details = refusal(
            lambda: s.Rollout(
                fleet_models_pb2.RolloutRequest(
                    release_id=good, stage=Stage.ROLLOUT_STAGE_ALL, reason="skip the canary"
                ),
                timeout=30,
            )
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "canary" in details

        # 2. A good release: canary, then half, then all; a unit that was off catches up.
        s.Rollout(fleet_models_pb2.RolloutRequest(release_id=good, stage=Stage.ROLLOUT_STAGE_CANARY,
                                                  canary_group=canary, reason="OCR v2"), timeout=30)  # fmt: skip
        wait(lambda: running(nodes[0]) == good, 300, "canary on the good release")
        assert running(nodes[1]) == "" and running(nodes[2]) == ""
        nodes[1].stop(drain_s=0)
        s.Rollout(fleet_models_pb2.RolloutRequest(release_id=good, stage=Stage.ROLLOUT_STAGE_PERCENT, percent=50,
                                                  reason="half"), timeout=30)  # fmt: skip
        s.Rollout(fleet_models_pb2.RolloutRequest(release_id=good, stage=Stage.ROLLOUT_STAGE_ALL, reason="all"),
                  timeout=30)  # fmt: skip
        wait(lambda: running(nodes[2]) == good, 300, "the patrol unit on the good release")
        nodes[1] = start_node(settings[1], loader)  # back from the shop
        wait(lambda: running(nodes[1]) == good, 300, "the returning unit catches up")
        wait(lambda: models_hub.metric("alpr_hub_node_model_release", {"node_id": ids[1], "release": good}) == 1)
        assert models_hub.metric("alpr_hub_model_rollout_target_percent") == 100
        st = status()
        assert st.nodes_on_release == 3 and st.rollout.previous_release_id == ""

        # every read says which models read it: before the switch the shipped OCR, after it the release's
        # a read already in the pipeline at the switch still carries the shipped models: wait for
        # one read by the release's models rather than for a count of reads after the switch
        def by_release() -> bool:
            return any(e.read.model_versions.release == good for e in list(nodes[2].emitted))

        wait(by_release, 120, "a read by the release's models")
        own_ocr = f"plate_ocr.onnx@{sha256_file(MODELS_DIR / 'plate_ocr.onnx')[:12]}"
        new_ocr = f"plate_ocr.onnx@{sha256_file(ocr)[:12]}"
        seen = set()
        for e in list(nodes[2].emitted):
            mv = e.read.model_versions
            assert (mv.release, mv.ocr) in {("", own_ocr), (good, new_ocr)}, mv
            seen.add(mv.release)
        assert good in seen

        # 3. rollback: everyone back to the release before (their own models)
        s.Rollback(fleet_models_pb2.RollbackRequest(reason="complaints from district 3"), timeout=30)
        wait(lambda: all(running(n) == "" for n in nodes), 300, "everyone back")
        assert status().rollout.status == fleet_models_pb2.ROLLOUT_STATUS_ROLLED_BACK
        ks = models_hub.config.cassandra.keyspace
        read_ids = [uuid.UUID(e.read.read_id) for e in list(nodes[2].emitted)]
        wait(lambda: nodes[2].queue.depth() == 0, 60, "reads delivered")
        stored = {
            str(row.read_id): row.model_release or ""
            for rid_ in read_ids
            for row in cql.execute(f"SELECT read_id, model_release FROM {ks}.reads_by_id WHERE read_id = %s", (rid_,))
        }
        assert len(stored) == len(read_ids)
        assert {e.read.read_id: e.read.model_versions.release for e in nodes[2].emitted} == stored
    finally:
        for n in nodes:
            n.stop(drain_s=0)


def test_cli_config_and_models(models_hub: HubThread, keys: tuple[Path, Path], tmp_path: Path) -> None:
    t = models_hub.target

    def cli(*args: str) -> dict[str, Any]:
        buf = io.StringIO()
        with redirect_stdout(buf):
            rc = alpr(["--hub", t, "--json", *args])
        assert rc == 0, (args, buf.getvalue())
        out: dict[str, Any] = json.loads(buf.getvalue().strip().splitlines()[-1])
        return out

    g = f"group:cli-{uuid.uuid4().hex[:6]}"
    v1 = int(cli("fleet", "config", "set", g, "--settings", '{"tracker": {"min_hits": 3}}', "--reason", "a")["version"])
    cli("fleet", "config", "set", g, "--settings", '{"tracker": {"min_hits": 4}}', "--reason", "b")
    diff = cli("fleet", "config", "diff", g, "--from", str(v1))["diff"]
    assert any(line.startswith("-") and "3" in line for line in diff) and any("+" in x and "4" in x for x in diff)
    assert json.loads(cli("fleet", "config", "get", g)["overlay_json"]) == {"tracker": {"min_hits": 4}}
    assert len(cli("fleet", "config", "history", g)["versions"]) == 2
    img = tmp_path / "s.jpg"
    frame, text = plate_frame(4)
    cv2.imwrite(str(img), frame)
    release = rid("cli")
    up = cli("fleet", "models", "upload", "--release", release, "--detector", str(blind_detector(tmp_path / "d.onnx")),
             "--sample", f"{img}={text}", "--key", str(keys[0]), "--reason", "cli test")  # fmt: skip
    assert up["release_id"] == release
    assert release in [r["release_id"] for r in cli("fleet", "models", "list")["releases"]]
    ro = cli("fleet", "models", "rollout", release, "--canary", f"nobody-{release}", "--reason", "try")
    assert ro["rollout"]["release_id"] == release
    assert cli("fleet", "models", "pause", "--reason", "wait")["rollout"]["status"] == "ROLLOUT_STATUS_PAUSED"
    assert cli("fleet", "models", "status")["rollout"]["status"] == "ROLLOUT_STATUS_PAUSED"
    assert cli("fleet", "models", "rollback", "--reason", "no")["rollout"]["status"] == "ROLLOUT_STATUS_ROLLED_BACK"


class PlateEcho(FrameRecognizer):
    """Reads every frame as the given plates (the self-test passes; what is judged is the read rate)."""

    def __init__(self, name: str, plates: list[str]) -> None:
        self.name, self.plates = name, plates

    def recognize(
        self, frame: Any, skip_ocr: Callable[[Any], bool] | None = None, regions: list[Any] | None = None
    ) -> list[PlateResult]:
        return [PlateResult(box=(0, 0, 10, 5), detection_score=1.0, text=p, confidence=1.0) for p in self.plates]

    def versions(self) -> dict[str, str]:
        return {"detector": self.name, "ocr": self.name, "state_classifier": self.name}


class CountingHost:
    """The runtime's side as the manager sees it: frames and reads so far, and the swaps asked for."""

    def __init__(self) -> None:
        self.frames = self.reads = 0
        self.swaps: list[str] = []

    def swap_recognizer(self, recognizer: FrameRecognizer, release: str) -> None:
        self.swaps.append(release)

    def read_counts(self) -> tuple[int, int]:
        return self.frames, self.reads


def test_a_unit_switches_back_when_its_read_rate_drops(keys: tuple[Path, Path], tmp_path: Path) -> None:
    """A release that passes its self-test but reads far less than the unit did before is undone."""
    release = rid("quiet")
    manifest, sig = make_release(tmp_path / "rel", release, keys[0], detector=blind_detector(tmp_path / "d.onnx"))
    root = tmp_path / "unit" / "models"
    shutil.copytree(tmp_path / "rel", root / release)  # as if downloaded
    (root / release / "manifest.json").write_bytes(manifest)
    (root / release / "manifest.sig").write_bytes(sig)
    plates = [p for s in parse_manifest(manifest).samples for p in s.plates]
    settings = ModelRolloutConfig(release_key_file=keys[1], rate_window_frames=100, min_baseline_reads=10)
    m = ModelManager(
        tmp_path / "unit", settings, {}, None, loader=lambda cfg: PlateEcho(str(cfg.detector_path), plates)
    )
    host = CountingHost()
    m.host = host
    reports: list[fleet_models_pb2.ModelReport] = []
    m.on_report = reports.append
    for _ in range(5):  # the baseline: 0.1 reads per frame with the unit's own models
        host.frames, host.reads = host.frames + 50, host.reads + 5
        m._watch_rate()
    m.assign(release, paused=False, rollout_version=3)
    m._follow(Assignment(release, False, 3))
    assert m.current == release and host.swaps == [release]
    host.frames, host.reads = host.frames + 60, host.reads + 1
    m._watch_rate()
    assert m.current == release  # not judged before a whole window
    host.frames, host.reads = host.frames + 60, host.reads + 1
    m._watch_rate()
    assert m.current == "" and host.swaps == [release, ""]
    assert reports[-1].state == fleet_models_pb2.NODE_MODEL_STATE_FAILED and "read rate fell" in reports[-1].error
    assert release in m.failed and m.previous == release  # kept on disk, not retried under this rollout
    m._follow(Assignment(release, False, 3))
    assert m.current == "" and host.swaps == [release, ""]
    m._follow(Assignment(release, True, 4))  # the hub paused the rollout: still failed here
    assert m.current == "" and reports[-1].state == fleet_models_pb2.NODE_MODEL_STATE_FAILED
    # A unit restarted keeps what failed under which rollout.
    again = ModelManager(tmp_path / "unit", settings, {}, None, loader=m.loader)
    assert again.failed == m.failed and again.failed_at == {release: 3}
    # The operator rolls it out again (a later, unpaused rollout): the unit tries it once more.
    m._follow(Assignment(release, False, 5))
    assert m.current == release and host.swaps == [release, "", release] and release not in m.failed
    assert reports[-1].state == fleet_models_pb2.NODE_MODEL_STATE_RUNNING
