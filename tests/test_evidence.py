"""Evidence export: copies without TTL linked to a case, the package on disk, tamper detection."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from alpr.v1 import audit_pb2, audit_pb2_grpc, evidence_pb2, evidence_pb2_grpc, reads_pb2
from cassandra.cluster import Session

from alpr_common.operator.evidence import compare_with_hub, verify_package
from alpr_common.operator_cli import main as alpr
from alpr_common.simulation import make_read, noise_jpeg
from tests.access_support import AuthHub, call, rpc_code


class EvidenceHub(AuthHub):
    """The secured hub with two ingested reads (one with a frame) and an investigator's token."""

    reads: list[reads_pb2.PlateRead]
    inv: str


@pytest.fixture(scope="module")
def ehub(cassandra: tuple[list[str], int], cql: Session) -> Iterator[EvidenceHub]:
    h = EvidenceHub(cassandra, cql)
    rnd = random.Random(3)
    h.reads = [
        make_read(
            "n1", "cam-e", "EVI1001", rnd=rnd, crop_jpeg=noise_jpeg(96, 32, 1), frame_jpeg=noise_jpeg(160, 90, 2)
        ),
        make_read("n1", "cam-e", "EVI1002", rnd=rnd, crop_jpeg=noise_jpeg(96, 32, 3)),
    ]
    h.ingest(h.reads)
    h.inv = h.token("det-1", "investigator")
    yield h
    h.stop()


def test_export_writes_a_verifiable_package_and_an_evidence_copy(
    ehub: EvidenceHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [r.read_id for r in ehub.reads]
    out = tmp_path / "pkg"
    rc = alpr(
        ["--hub", ehub.thread.target, "--token", ehub.inv, "--json", "export", "--case", "C-77", "--purpose", "court", "--read", *ids,
         "--out", str(out)]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["reads"] == 2 and summary["missing_read_ids"] == []

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["case_number"] == "C-77" and manifest["exported_by"] == "det-1" and manifest["exported_time"]
    assert sorted(e["read"]["read_id"] for e in manifest["reads"]) == sorted(ids)
    assert sum(len(e["images"]) for e in manifest["reads"]) == 3
    assert verify_package(out) == []
    assert alpr(["export", "verify", str(out)]) == 0

    # Evidence rows: linked to the case, with the images, no TTL.
    rows = ehub.cql.execute(
        f"SELECT read_id, read, TTL(plate) AS ttl FROM {ehub.keyspace}.evidence_reads WHERE case_number = 'C-77'"
    ).all()
    assert sorted(str(r.read_id) for r in rows) == sorted(ids) and all(r.ttl is None for r in rows)
    got = call(
        evidence_pb2_grpc.EvidenceServiceStub(ehub.channel).GetEvidence,
        evidence_pb2.GetEvidenceRequest(case_number="C-77"),
        ehub.inv,
    )
    assert {r.read.plate_crop_jpeg for r in got.reads} == {r.plate_crop_jpeg for r in ehub.reads}

    entries = call(
        audit_pb2_grpc.AuditServiceStub(ehub.channel).ListAudit,
        audit_pb2.ListAuditRequest(action="evidence.export", limit=100),
        ehub.token("aud-e", "auditor"),
    ).entries
    assert any(e.case_number == "C-77" and e.actor == "det-1" and e.result_count == 2 for e in entries)


def test_tampered_packages_are_detected(ehub: EvidenceHub, tmp_path: Path) -> None:
    out = tmp_path / "pkg"
    assert (
        alpr(["--hub", ehub.thread.target, "--token", ehub.inv, "export", "--case", "C-78", "--purpose", "court", "--read",
              ehub.reads[0].read_id, "--out", str(out)])
        == 0
    )  # fmt: skip
    img = next((out / "images").iterdir())
    original = img.read_bytes()
    img.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    assert any("changed" in p for p in verify_package(out))
    assert alpr(["export", "verify", str(out)]) == 1
    img.write_bytes(original)
    assert verify_package(out) == []

    m = out / "manifest.json"
    text = m.read_text()
    m.write_text(text.replace("C-78", "C-79"))
    assert any("manifest.json changed" in p for p in verify_package(out))
    m.write_text(text)
    (out / "images" / "extra.jpg").write_bytes(b"x")
    assert any("added" in p for p in verify_package(out))
    (out / "images" / "extra.jpg").unlink()
    img.unlink()
    assert any("missing" in p for p in verify_package(out))


def test_a_consistently_rewritten_package_fails_against_the_hub(ehub: EvidenceHub, tmp_path: Path) -> None:
    """Images, manifest and manifest digest all rewritten: the offline check passes, the
    comparison with the hub's evidence copy does not."""
    out = tmp_path / "pkg-forged"
    rid = ehub.reads[1].read_id
    assert alpr(["--hub", ehub.thread.target, "--token", ehub.inv, "export", "--case", "C-80", "--purpose", "court", "--read", rid,
                 "--out", str(out)]) == 0  # fmt: skip
    base = ["--hub", ehub.thread.target, "--token", ehub.inv, "export", "verify", str(out)]
    assert alpr([*base, "--against-hub"]) == 0

    m = out / "manifest.json"
    manifest = json.loads(m.read_text())
    entry = manifest["reads"][0]
    entry["read"]["plate_text"] = "FORGED1"
    crop = out / entry["images"]["plate_crop"]["file"]
    forged = crop.read_bytes() + b"\x00"
    crop.write_bytes(forged)
    entry["images"]["plate_crop"]["sha256"] = hashlib.sha256(forged).hexdigest()
    blob = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    m.write_bytes(blob)
    (out / "manifest.sha256").write_text(f"{hashlib.sha256(blob).hexdigest()}  manifest.json\n")

    assert verify_package(out) == []  # consistent forgery: the package alone cannot tell
    held = call(
        evidence_pb2_grpc.EvidenceServiceStub(ehub.channel).GetEvidence,
        evidence_pb2.GetEvidenceRequest(case_number="C-80"), ehub.inv,
    )  # fmt: skip
    problems = compare_with_hub(out, list(held.reads), list(held.exports))
    assert any("plate_text differs" in p for p in problems), problems
    assert any("plate_crop image differs" in p for p in problems), problems
    assert alpr([*base, "--against-hub"]) == 1


def test_export_requires_case_and_role(ehub: EvidenceHub) -> None:
    stub = evidence_pb2_grpc.EvidenceServiceStub(ehub.channel)
    rid = ehub.reads[0].read_id
    code, msg = rpc_code(
        lambda: call(stub.ExportEvidence, evidence_pb2.ExportEvidenceRequest(purpose="x", read_ids=[rid]), ehub.inv)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "case_number" in msg
    officer = ehub.token("ofc-e", "officer")
    req = evidence_pb2.ExportEvidenceRequest(case_number="C-1", purpose="x", read_ids=[rid])
    code, _ = rpc_code(lambda: call(stub.ExportEvidence, req, officer))
    assert code == grpc.StatusCode.PERMISSION_DENIED
