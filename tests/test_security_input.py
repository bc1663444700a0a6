"""Hostile and careless input against real hubs on loopback with a real Cassandra: access
control on, and the ingest cases against a hub as deployed (mutual TLS, node identity).

Stored reads are write-once, evidence is append-only, evidence packages cannot point outside
themselves and are compared with the hub's whole record of their export; searches are bounded,
refused clearly and audited, and never stall the hub's other calls.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import random
import secrets
import socket
import sqlite3
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from alpr.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    alert_pb2,
    evidence_pb2,
    evidence_pb2_grpc,
    ingest_pb2,
    reads_pb2,
    search_pb2,
    search_pb2_grpc,
)

from alpr_common import tls
from alpr_common.operator.evidence import MANIFEST, MANIFEST_DIGEST, compare_with_hub, sha256, verify_package
from alpr_common.operator_cli import main as alpr
from alpr_common.simulation import make_read, noise_jpeg
from hub.hotlists.file_formats import parse_file
from node.queue import ReadQueue
from tests.access_support import AuthHub, call, rpc_code, slow_ok
from tests.conftest import make_hub_config
from tests.hotlist_support import SAMPLES
from tests.support import ROOT, HubThread, LatencyProbe, PacedStream, read_request, run_stream

pytestmark = pytest.mark.security


class SecHub(AuthHub):
    """An access-controlled hub plus an ingest hub (standing in for a node's hub) on one keyspace."""

    def __init__(self, cassandra: tuple[list[str], int], cql: Any) -> None:
        super().__init__(cassandra, cql)
        try:
            self.ingest_hub = HubThread(slow_ok(make_hub_config(cassandra, self.keyspace, hub_id="ingest-hub"))).start()
        except BaseException:
            self.stop()  # drops the keyspace: a failed start must not leave it on the shared Cassandra
            raise
        self._open = self.ingest_hub
        self.inv = self.token("det-1", "investigator")

    def audit_actions(self, action: str) -> list[dict[str, Any]]:
        rows = self.cql.execute(f"SELECT action, outcome, details_json FROM {self.keyspace}.audit_log")
        return [json.loads(r.details_json or "{}") | {"outcome": r.outcome} for r in rows if r.action == action]


@pytest.fixture(scope="module")
def sec(cassandra: tuple[list[str], int], cql: Any) -> Iterator[SecHub]:
    h = SecHub(cassandra, cql)
    yield h
    h.stop()


def _evidence(h: SecHub, case: str) -> evidence_pb2.GetEvidenceResponse:
    stub = evidence_pb2_grpc.EvidenceServiceStub(h.channel)
    resp: evidence_pb2.GetEvidenceResponse = call(
        stub.GetEvidence, evidence_pb2.GetEvidenceRequest(case_number=case), h.inv
    )
    return resp


# -- stored reads are write-once ---------------------------------------------------------


def test_a_stored_read_cannot_be_overwritten_and_the_attempt_is_audited(sec: SecHub) -> None:
    rnd = random.Random(11)
    original = make_read("n-w1", "cam-w1", "WRITE01", rnd=rnd)
    with LatencyProbe(sec.ingest_hub.target) as probe:
        first = run_stream(sec.ingest_hub.target, [read_request(original)])
        assert set(first.acks) == {original.read_id}

        resend = reads_pb2.PlateRead()
        resend.CopyFrom(original)
        forged = reads_pb2.PlateRead()
        forged.CopyFrom(original)
        forged.plate_text = "FORGED1"
        forged.char_confidences[:] = [0.9] * 7
        later = make_read("n-w1", "cam-w1", "WRITE02", rnd=rnd)
        stream = PacedStream(sec.ingest_hub.target)
        stream.send(read_request(resend))  # identical: acked as before
        stream.send(read_request(forged))  # same id, other content: refused
        stream.send(read_request(later))  # the stream lives on
        result = stream.close()
    probe.assert_responsive()

    assert result.status == grpc.StatusCode.OK, result
    assert original.read_id in result.acks
    err = result.errors[original.read_id]
    assert err.code == grpc.StatusCode.ALREADY_EXISTS.value[0] and not err.retryable, err
    assert "plate" in err.message, err.message
    assert later.read_id in result.acks
    row = sec.cql.execute(
        f"SELECT plate FROM {sec.keyspace}.reads_by_id WHERE read_id = %s", [uuid.UUID(original.read_id)]
    ).one()
    assert row.plate == "WRITE01"
    forged_index = sec.cql.execute(
        f"SELECT read_id FROM {sec.keyspace}.reads_by_plate WHERE plate = 'FORGED1' AND day = %s",
        [original.capture_time.ToDatetime().date()],
    ).all()
    assert forged_index == []
    refusals = sec.audit_actions("ingest.overwrite_refused")
    assert any(r["read_id"] == original.read_id and "plate" in r["fields"] for r in refusals), refusals
    assert sec.ingest_hub.metric("alpr_hub_reads_rejected_total", {"reason": "already_exists"}) >= 1


def test_re_export_keeps_the_first_copy_exporter_and_purpose(sec: SecHub) -> None:
    read = make_read("n-w2", "cam-w2", "EVID01", rnd=random.Random(12))
    sec.ingest([read])
    stub = evidence_pb2_grpc.EvidenceServiceStub(sec.channel)
    req = evidence_pb2.ExportEvidenceRequest(case_number="SEC-1", purpose="first purpose", read_ids=[read.read_id])
    with LatencyProbe(sec.thread.target) as probe:
        first = call(stub.ExportEvidence, req, sec.inv)
        other = sec.token("det-2", "investigator")
        again = call(
            stub.ExportEvidence,
            evidence_pb2.ExportEvidenceRequest(case_number="SEC-1", purpose="second purpose", read_ids=[read.read_id]),
            other,
        )
    probe.assert_responsive()
    assert first.export_id and again.export_id and first.export_id != again.export_id
    assert again.exported_by == "det-2"
    assert again.reads[0].exported_by == "det-1" and again.reads[0].purpose == "first purpose"

    row = sec.cql.execute(
        f"SELECT exported_by, purpose FROM {sec.keyspace}.evidence_reads WHERE case_number = 'SEC-1'"
    ).one()
    assert (row.exported_by, row.purpose) == ("det-1", "first purpose")
    held = _evidence(sec, "SEC-1")
    assert [(x.exported_by, x.purpose) for x in held.exports] == [
        ("det-1", "first purpose"),
        ("det-2", "second purpose"),
    ]
    assert all(list(x.read_ids) == [read.read_id] for x in held.exports)


# -- evidence packages ------------------------------------------------------------------


def _alpr(argv: list[str]) -> tuple[int, str]:
    """The operators' CLI in this process: its exit code and what it printed (for failure messages)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        rc = alpr(argv)
    return rc, buf.getvalue()


def _export(sec: SecHub, case: str, reads: list[reads_pb2.PlateRead], out: Path) -> None:
    ids = [r.read_id for r in reads]
    args = ["--hub", sec.thread.target, "--token", sec.inv]
    rc, said = _alpr([*args, "export", "--case", case, "--purpose", "test", "--read", *ids, "--out", str(out)])
    assert rc == 0, said


def _rewrite(out: Path, manifest: dict[str, Any]) -> None:
    """Rewrite the manifest and its digest consistently (what a forger would do)."""
    blob = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    (out / MANIFEST).write_bytes(blob)
    (out / MANIFEST_DIGEST).write_text(f"{sha256(blob)}  {MANIFEST}\n")


def test_a_manifest_cannot_point_outside_the_package(sec: SecHub, tmp_path: Path) -> None:
    read = make_read("n-w3", "cam-w3", "PATH01", rnd=random.Random(13), crop_jpeg=noise_jpeg(96, 32, 5))
    sec.ingest([read])
    out = tmp_path / "pkg"
    _export(sec, "SEC-2", [read], out)
    assert verify_package(out) == []
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"not evidence")
    manifest = json.loads((out / MANIFEST).read_text())
    crop = manifest["reads"][0]["images"]["plate_crop"]
    for hostile in ("../../etc/hostname", "../secret.txt", str(outside), "images/../../secret.txt", "/etc/hostname"):
        crop["file"], crop["sha256"] = hostile, sha256(outside.read_bytes())
        _rewrite(out, manifest)
        problems = verify_package(out)
        assert any("outside the package" in p for p in problems), (hostile, problems)
    assert alpr(["export", "verify", str(out)]) == 1

    # A symbolic link inside the package, pointing out of it, is refused too.
    manifest["reads"][0]["images"]["plate_crop"] = {"file": "images/link.jpg", "sha256": sha256(b"not evidence")}
    (out / "images" / "link.jpg").symlink_to(outside)
    _rewrite(out, manifest)
    assert any("link" in p for p in verify_package(out))


def test_against_hub_notices_a_dropped_read_and_every_rewritten_field(sec: SecHub, tmp_path: Path) -> None:
    rnd = random.Random(14)
    reads = [make_read("n-w4", "cam-w4", f"DROP0{i}", rnd=rnd, crop_jpeg=noise_jpeg(96, 32, 20 + i)) for i in range(3)]
    sec.ingest(reads)
    out = tmp_path / "pkg"
    with LatencyProbe(sec.thread.target) as probe:
        _export(sec, "SEC-3", reads, out)
        base = ["--hub", sec.thread.target, "--token", sec.inv, "export", "verify", str(out), "--against-hub"]
        rc, said = _alpr(base)
        assert rc == 0, said
    probe.assert_responsive()
    held = _evidence(sec, "SEC-3")
    pristine = json.loads((out / MANIFEST).read_text())

    # A read dropped consistently (entry, image and digests): the package alone is intact.
    dropped = json.loads(json.dumps(pristine))
    gone = dropped["reads"].pop(0)
    for img in gone["images"].values():
        (out / img["file"]).unlink()
    _rewrite(out, dropped)
    assert verify_package(out) == []
    problems = compare_with_hub(out, list(held.reads), list(held.exports))
    assert any(gone["read"]["read_id"] in p and "lacks" in p for p in problems), problems
    assert alpr(base) == 1

    # Fields the old comparison skipped: confidence, box, per-read and package exporter.
    for path, value in (
        (("read", "confidence"), 0.1),
        (("read", "plate_box"), {"x1": 1, "y1": 2, "x2": 3, "y2": 4}),
        (("read", "char_confidences"), [0.1]),
        (("exported_by",), "someone-else"),
    ):
        forged = json.loads(json.dumps(pristine))
        target = forged["reads"][1]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        _rewrite(out, forged)
        problems = compare_with_hub(out, list(held.reads), list(held.exports))
        assert any(f"{path[-1]} differs" in p for p in problems), (path, problems)
    forged = json.loads(json.dumps(pristine))
    forged["purpose"] = "a better-sounding purpose"
    _rewrite(out, forged)
    assert any("purpose differs" in p for p in compare_with_hub(out, list(held.reads), list(held.exports)))


# -- searches are bounded and cannot stall the hub ---------------------------------------


def _search(h: SecHub, **kw: Any) -> search_pb2.SearchResponse:
    kw.setdefault("purpose", "hostile-input test")
    kw.setdefault("case_number", "SEC-S")
    resp: search_pb2.SearchResponse = call(
        search_pb2_grpc.SearchServiceStub(h.channel).Search, search_pb2.SearchRequest(**kw), h.inv, timeout=120
    )
    return resp


@pytest.fixture(scope="module")
def many_plates(sec: SecHub) -> SecHub:
    """400 distinct plates (none with a Z), so listing partition keys has real work to do."""
    rnd = random.Random(15)
    alphabet = "ABCDEFGHJKLMNPRSTUVWXY0123456789"
    plates = {"".join(rnd.choice(alphabet) for _ in range(7)) for _ in range(400)}
    sec.ingest([make_read("n-s", f"cam-s{i % 5}", p, rnd=rnd) for i, p in enumerate(sorted(plates))])
    return sec


def test_a_wildcard_storm_does_not_stall_the_hub(many_plates: SecHub) -> None:
    """18 '*' and a letter: exponential for a backtracking regex over every partition key."""
    hostile = "*" * 18 + "Z"
    with LatencyProbe(many_plates.thread.target) as probe:
        t0 = time.perf_counter()
        resp = _search(many_plates, plate=hostile, mode=search_pb2.PLATE_MATCH_MODE_PARTIAL)
        took = time.perf_counter() - t0
        time.sleep(0.1)
    assert list(resp.hits) == []
    probe.assert_responsive(took)
    many = _search(many_plates, plate="A*", mode=search_pb2.PLATE_MATCH_MODE_PARTIAL)
    assert many.hits and all(h.plate.startswith("A") for h in many.hits)


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"plate": "A" * 100_000}, "100000 characters"),
        ({"plate": "A?B?C?D?E?", "mode": search_pb2.PLATE_MATCH_MODE_PARTIAL}, "wildcards"),
        ({"plate": "ABCDEFGHJKLMNPRST*", "mode": search_pb2.PLATE_MATCH_MODE_PARTIAL}, "characters"),
        ({"camera_ids": [f"cam-{i}" for i in range(51)]}, "at most 50"),
        ({"camera_ids": [f"cam-{i}" for i in range(10)]}, "camera-hours"),
        ({"plate": "ABC123", "purpose": "x" * 100_000}, "purpose"),
        ({"plate": "ABC123", "case_number": "9" * 100_000}, "case_number"),
    ],
)
def test_oversized_searches_are_refused_clearly_and_audited(sec: SecHub, kw: dict[str, Any], words: str) -> None:
    with LatencyProbe(sec.thread.target) as probe:
        try:
            _search(sec, **kw)
        except grpc.RpcError as e:
            code, msg = e.code(), e.details() or ""
        else:
            raise AssertionError("the search was answered")
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, msg[:200])
    assert words in msg and len(msg) < 400, msg[:400]
    probe.assert_responsive()
    rows = sec.cql.execute(f"SELECT action, outcome, details_json FROM {sec.keyspace}.audit_log")
    refused = [json.loads(r.details_json) for r in rows if r.action == "search" and r.outcome == "refused"]
    assert any(d.get("refused") == msg for d in refused), msg


def test_camera_searches_are_paged_without_reading_everything(many_plates: SecHub) -> None:
    first = _search(many_plates, camera_ids=["cam-s1"], page_size=5)
    assert len(first.hits) == 5 and first.next_page_token
    second = _search(many_plates, camera_ids=["cam-s1"], page_size=5, page_token=first.next_page_token)
    assert len(second.hits) == 5 and not {h.read_id for h in first.hits} & {h.read_id for h in second.hits}
    times = [h.capture_time.ToDatetime() for h in [*first.hits, *second.hits]]
    assert times == sorted(times, reverse=True)


def test_area_and_wildcard_searches_that_would_read_too_much_are_refused(many_plates: SecHub) -> None:
    """A hub allowed 3 partitions per query (on the same data): an area alone over five cameras'
    hours, or a wildcard matching a dozen plates, is refused before any read is fetched, with
    what to narrow, audited, and without stalling the hub."""
    cfg = make_hub_config(many_plates.cassandra, many_plates.keyspace, hub_id="narrow-hub", auth={"enabled": True},
                          search={"max_partitions": 3}, migrate_on_start=False)  # fmt: skip
    narrow = HubThread(slow_ok(cfg)).start()
    everywhere = alert_pb2.GeoBox(min_latitude=-90, min_longitude=-180, max_latitude=90, max_longitude=180)
    try:
        with grpc.insecure_channel(narrow.target) as ch, LatencyProbe(narrow.target) as probe:
            stub = search_pb2_grpc.SearchServiceStub(ch)
            refusals = []
            for kw, words in (
                ({"area": everywhere}, "the query covers more than 3 partitions"),
                ({"plate": "A*", "mode": search_pb2.PLATE_MATCH_MODE_PARTIAL}, "the query matches more than 3"),
            ):
                req = search_pb2.SearchRequest(purpose="hostile-input test", case_number="SEC-N", **kw)
                code, msg = rpc_code(partial(call, stub.Search, req, many_plates.inv, timeout=120))
                assert code == grpc.StatusCode.INVALID_ARGUMENT and words in msg and "narrow" in msg, (code, msg)
                refusals.append(msg)
        probe.assert_responsive()
    finally:
        narrow.stop()
    refused = [d.get("refused") for d in many_plates.audit_actions("search") if d["outcome"] == "refused"]
    assert all(msg in refused for msg in refusals), refusals


# -- retention ---------------------------------------------------------------------------

_LOGGERS = {"log", "logger", "logging", "LOG", "_log"}
_LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
_PLATE_NAMES = {"plate", "plate_text", "plates", "normalized_plate"}


def test_no_log_call_carries_plate_text() -> None:
    """Logs are kept outside the retention's reach, so they never name a plate (policy 5.4-5.5)."""
    offenders: list[str] = []
    for package in ("hub", "node", "dispatch_bridge", "alpr_common", "console"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in _LOG_METHODS
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in _LOGGERS
                ):
                    continue
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    for sub in ast.walk(arg):
                        name = (
                            sub.attr if isinstance(sub, ast.Attribute) else sub.id if isinstance(sub, ast.Name) else ""
                        )
                        if name in _PLATE_NAMES:
                            offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == [], offenders


def test_read_tables_keep_expired_data_hours_not_days(sec: SecHub) -> None:
    rows = sec.cql.execute(
        "SELECT table_name, gc_grace_seconds FROM system_schema.tables WHERE keyspace_name = %s", [sec.keyspace]
    )
    grace = {r.table_name: r.gc_grace_seconds for r in rows}
    for table in ("reads_by_id", "reads_by_plate", "reads_by_camera", "alerts_by_id", "alerts_by_day", "alert_feed"):
        assert grace[table] <= 3 * 3600, (table, grace[table])
    assert grace["hotlist_entries"] == 864000  # real deletes: the default grace stays


def test_reads_the_hub_refused_expire_on_the_node(tmp_path: Path) -> None:
    now = [1_000_000.0]
    q = ReadQueue(tmp_path / "q.db", budget_bytes=10_000_000, clock=lambda: now[0], retention_s=60 * 86400)
    q.put("r-old", b"plate image of an old read")
    q.reject("r-old", grpc.StatusCode.INVALID_ARGUMENT.value[0], "plate_text has 9 characters")
    now[0] += 30 * 86400
    q.put("r-queued", b"a read the hub never took")
    q.put("r-new", b"a newer read")
    q.reject("r-new", grpc.StatusCode.INVALID_ARGUMENT.value[0], "bad box")
    assert [r[0] for r in q.rejected()] == ["r-old", "r-new"]
    now[0] += 30 * 86400 + 1
    q.put("r-today", b"today")
    assert [r[0] for r in q.rejected()] == ["r-new"]
    now[0] += 30 * 86400
    assert q.expire() == 2  # r-new (refused) and r-queued (never sent) are past 60 days
    assert q.rejected() == [] and q.depth() == 1
    q.close()
    with sqlite3.connect(tmp_path / "q.db") as db:
        assert db.execute("SELECT COUNT(*) FROM rejected").fetchone()[0] == 0


# -- hot-list imports cannot wipe a list --------------------------------------------------


def _leads_lines() -> list[str]:
    """The good records of the LEADS sample (the broken ones deliberately in it dropped)."""
    lines = (SAMPLES / "il_leads_sample.txt").read_text().splitlines(keepends=True)
    good = {b.line for b in parse_file("IL_LEADS", "".join(lines).encode(), "LEADS", "t").bad_rows}
    return [line for i, line in enumerate(lines, start=1) if i not in good and line.strip()]


def _import(sec: SecHub, capsys: pytest.CaptureFixture[str], path: Path, *extra: str) -> tuple[int, str]:
    args = ["--hub", sec.thread.target, "--token", sec.admin, "hotlist", "import", str(path)]
    rc = alpr([*args, "--format", "il-leads", "--source", "leads", *extra])
    out = capsys.readouterr()
    return rc, out.out + out.err


def _leads_held(sec: SecHub) -> int:
    rows = sec.cql.execute(f"SELECT entry_id FROM {sec.keyspace}.hotlist_entries")
    return sum(1 for r in rows if str(r.entry_id).startswith("LEADS:"))


def test_empty_truncated_or_shrunken_imports_do_not_wipe_the_list(
    sec: SecHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _leads_lines()
    n = len(lines)
    full = tmp_path / "leads.txt"
    full.write_text("".join(lines))
    with LatencyProbe(sec.thread.target) as probe:
        rc, out = _import(sec, capsys, full)
        assert rc == 0, out
        held = _leads_held(sec)
        assert held == n

        empty = tmp_path / "empty.txt"
        empty.write_bytes(b"")
        rc, out = _import(sec, capsys, empty)
        assert rc == 1 and "FAILED_PRECONDITION" in out and f"remove all {n}" in out, out
        assert "--allow-mass-removal" in out

        cut = tmp_path / "cut.txt"  # cut at a line boundary: 60% of the records
        cut.write_text("".join(lines[: n * 6 // 10]))
        rc, out = _import(sec, capsys, cut)
        removed = n - n * 6 // 10
        assert rc == 1 and f"remove {removed} of the {n}" in out and "20%" in out, out

        mid = tmp_path / "mid.txt"  # cut in the middle of a record
        mid.write_text("".join(lines)[:-20])
        rc, out = _import(sec, capsys, mid)
        assert rc == 1 and "truncated" in out, out
        assert _leads_held(sec) == held  # nothing was removed by any of them

        small = tmp_path / "small.txt"  # a real removal of a few entries is allowed
        small.write_text("".join(lines[:-2]))
        rc, out = _import(sec, capsys, small)
        assert rc == 0, out
        rc, out = _import(sec, capsys, cut, "--allow-mass-removal")
        assert rc == 0, out
        assert _leads_held(sec) == n * 6 // 10
    probe.assert_responsive()
    refusals = sec.audit_actions("hotlist.import_refused")
    assert len(refusals) >= 3 and all(r["outcome"] == "refused" for r in refusals)


# -- hostile ingest input ----------------------------------------------------------------


def half_message_stream(
    port: int, tls: ssl.SSLContext | None = None, declared: int = 1_000_000, sent: int = 1000
) -> socket.socket:
    """Open an Ingest stream by hand (HTTP/2, over ``tls`` when given) and send only the start of
    one message: the gRPC prefix declares ``declared`` bytes, ``sent`` of them follow, then nothing."""

    def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
        return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload

    def literal(name: bytes, value: bytes) -> bytes:  # HPACK literal without indexing, no Huffman
        return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value

    headers = b"".join(
        literal(k, v)
        for k, v in (
            (b":method", b"POST"), (b":scheme", b"https" if tls else b"http"), (b":path", b"/alpr.v1.IngestService/Ingest"),
            (b":authority", b"127.0.0.1"), (b"content-type", b"application/grpc"), (b"te", b"trailers"),
        )
    )  # fmt: skip
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls is not None:
        s = tls.wrap_socket(s, server_hostname="localhost")
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(0x4, 0, 0, b""))
    s.sendall(frame(0x1, 0x4, 1, headers))
    s.sendall(frame(0x0, 0, 1, b"\x00" + declared.to_bytes(4, "big") + b"\x01" * sent))
    return s


@pytest.fixture(scope="module")
def ingest_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ingest-pki")
    tls.init_ca(d / "ca")
    tls.issue(d / "ca", "ingest-hub", "service", d, ["127.0.0.1", "localhost"])
    for node in ("n-i", "n-big"):
        tls.issue(d / "ca", node, "node", d)
    (d / "audit.key").write_text(secrets.token_hex(32) + "\n")
    return d


class SecuredIngestHub:
    """An ingest hub as deployed (mutual TLS, access control, node identity, keyed audit chain)
    on the suite's keyspace; ``nodes`` are registered with their cameras first."""

    def __init__(self, sec: SecHub, pki: Path, hub_id: str, nodes: dict[str, str], **overrides: Any) -> None:
        self.pki = pki
        admin = admin_pb2_grpc.AdminServiceStub(sec.channel)
        for node, camera in nodes.items():
            call(admin.RegisterNode, admin_pb2.RegisterNodeRequest(node_id=node, camera_ids=[camera]), sec.admin)
        cfg = make_hub_config(
            sec.cassandra, sec.keyspace, hub_id=hub_id, insecure_dev=False, migrate_on_start=False,
            auth={"enabled": True, "audit_key_file": str(pki / "audit.key"),
                  "audit_checkpoint_dir": str(pki / f"checkpoints-{hub_id}")},
            tls={"enabled": True, "cert_file": str(pki / "ingest-hub.crt"), "key_file": str(pki / "ingest-hub.key"),
                 "ca_file": str(pki / "ca" / "ca.crt")},
            **overrides,
        )  # fmt: skip
        assert cfg.security_problems() == []
        self.thread = HubThread(slow_ok(cfg)).start()
        self.target, self.port, self.metric = self.thread.target, self.thread.port, self.thread.metric

    def creds(self, node: str) -> grpc.ChannelCredentials:
        p = self.pki
        return tls.channel_credentials(str(p / "ca" / "ca.crt"), str(p / f"{node}.crt"), str(p / f"{node}.key"))

    def ssl_context(self, node: str) -> ssl.SSLContext:
        """For a hand-made HTTP/2 connection with the node's certificate."""
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca" / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / f"{node}.crt"), str(self.pki / f"{node}.key"))
        ctx.set_alpn_protocols(["h2"])
        return ctx


@pytest.fixture(scope="module")
def strict_ingest(sec: SecHub, ingest_pki: Path) -> Iterator[SecuredIngestHub]:
    """A secured ingest hub with a 2 s idle timeout, on the security suite's keyspace."""
    hub = SecuredIngestHub(sec, ingest_pki, "strict-hub", {"n-i": "cam-i"}, ingest={"idle_timeout_s": 2.0})
    yield hub
    hub.thread.stop()


def test_oversize_and_fake_images_get_per_read_errors_and_the_stream_lives(strict_ingest: SecuredIngestHub) -> None:
    rnd = random.Random(16)
    huge = make_read("n-i", "cam-i", "HUGE01", rnd=rnd)
    huge.frame_jpeg = noise_jpeg(96, 32, 1)[:-2] + b"\x00" * (20 * 1024 * 1024) + b"\xff\xd9"  # a 20 MB frame
    fake = make_read("n-i", "cam-i", "FAKE01", rnd=rnd)
    fake.plate_crop_jpeg = b"\xff\xd8\xff\xe0" + b"this is not a JPEG" * 20 + b"\xff\xd9"
    outside = make_read("n-i", "cam-i", "BOX001", rnd=rnd, frame_jpeg=noise_jpeg(160, 90, 2))
    outside.frame_width = outside.frame_height = 0  # frame size not stated: checked against the image, 160x90
    outside.plate_box.x1, outside.plate_box.x2 = 100, 500
    mismatch = make_read("n-i", "cam-i", "BOX002", rnd=rnd, frame_jpeg=noise_jpeg(160, 90, 3))
    mismatch.frame_width, mismatch.frame_height = 100, 400  # not the frame image's shape
    good = make_read("n-i", "cam-i", "GOOD01", rnd=rnd, frame_jpeg=noise_jpeg(160, 90, 4))
    good.plate_box.x1, good.plate_box.y1, good.plate_box.x2, good.plate_box.y2 = 10, 10, 150, 80
    creds = strict_ingest.creds("n-i")
    with LatencyProbe(strict_ingest.target, creds) as probe:
        reads = [read_request(r) for r in (huge, fake, outside, mismatch, good)]
        result = run_stream(strict_ingest.target, reads, credentials=creds)
    assert result.status == grpc.StatusCode.OK, result.status
    probe.assert_responsive()
    assert set(result.acks) == {good.read_id}, result
    invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    for read, field, words in (
        (huge, "frame_jpeg", "over the"),
        (fake, "plate_crop_jpeg", "not a valid JPEG"),
        (outside, "plate_box", "outside the 160x90 frame"),
        (mismatch, "frame_width", "160x90"),
    ):
        err = result.errors[read.read_id]
        assert (err.code, err.field) == (invalid, field) and words in err.message, err


def test_stalled_streams_are_closed(strict_ingest: SecuredIngestHub) -> None:
    """Over mutual TLS with a registered node's certificate, as an attacker holding one would."""
    before = strict_ingest.metric("alpr_hub_idle_streams_closed_total")
    ctx = strict_ingest.ssl_context("n-i")
    with LatencyProbe(strict_ingest.target, strict_ingest.creds("n-i")) as probe:
        socks = [half_message_stream(strict_ingest.port, ctx) for _ in range(5)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if strict_ingest.metric("alpr_hub_idle_streams_closed_total") - before >= 5:
                break
            time.sleep(0.2)
    try:
        assert strict_ingest.metric("alpr_hub_idle_streams_closed_total") - before >= 5
        assert strict_ingest.metric("alpr_hub_open_streams") == 0
        probe.assert_responsive()
    finally:
        for s in socks:
            s.close()
    # A quiet node that heartbeats is not idle: only silence is.
    stream = PacedStream(strict_ingest.target, strict_ingest.creds("n-i"))
    for _ in range(4):
        stream.send(
            ingest_pb2.IngestRequest(heartbeat=ingest_pb2.Heartbeat(node_id="n-i", node_kind=reads_pb2.NODE_KIND_FIXED))
        )
        time.sleep(1.0)
    assert stream.result.status == grpc.StatusCode.OK and len(stream.result.heartbeat_acks) == 4
    assert stream.wait_closed(10).status == grpc.StatusCode.DEADLINE_EXCEEDED


def _large_read(rnd: random.Random, size: int) -> reads_pb2.PlateRead:
    """A valid read whose frame is a real JPEG padded with comment segments to about ``size`` bytes."""
    base = noise_jpeg(320, 240, seed=rnd.randrange(1000))
    comments = b"".join(b"\xff\xfe" + (60_002).to_bytes(2, "big") + bytes(60_000) for _ in range(size // 60_004))
    read = make_read("n-big", "cam-big", rnd=rnd, frame_jpeg=base[:2] + comments + base[2:])
    read.frame_width, read.frame_height = 320, 240
    return read


@pytest.fixture(scope="module")
def budget_ingest(sec: SecHub, ingest_pki: Path) -> Iterator[SecuredIngestHub]:
    """A secured ingest hub that may hold only 1 MB of reads being stored at once."""
    hub = SecuredIngestHub(sec, ingest_pki, "budget-hub", {"n-big": "cam-big"}, ingest={"max_bytes_in_flight": 1 << 20})
    yield hub
    hub.thread.stop()


def test_large_reads_are_slowed_not_buffered_or_refused(budget_ingest: SecuredIngestHub) -> None:
    """Four nodes send 300 KB reads at once: the hub never holds more than its byte budget,
    pauses the streams instead (back-pressure), acks every read, and stays responsive."""
    rnd = random.Random(17)
    per_node = [[_large_read(rnd, 300_000) for _ in range(6)] for _ in range(4)]
    peak = [0.0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], budget_ingest.metric("alpr_hub_ingest_bytes_in_flight"))
            stop.wait(0.005)

    results: list[Any] = []
    watcher = threading.Thread(target=watch, daemon=True)
    waits_before = budget_ingest.metric("alpr_hub_ingest_backpressure_waits_total")
    creds = budget_ingest.creds("n-big")
    with LatencyProbe(budget_ingest.target, creds) as probe:
        watcher.start()
        senders = [
            threading.Thread(
                target=lambda reads=reads: results.append(
                    run_stream(budget_ingest.target, [read_request(r) for r in reads], timeout=240, credentials=creds)
                )
            )
            for reads in per_node
        ]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        stop.set()
        watcher.join()
    acked = {rid for r in results for rid in r.acks}
    assert acked == {r.read_id for reads in per_node for r in reads}, [(r.status, r.errors) for r in results]
    assert 0 < peak[0] <= 1 << 20, peak[0]
    assert budget_ingest.metric("alpr_hub_ingest_backpressure_waits_total") > waits_before
    assert budget_ingest.metric("alpr_hub_ingest_bytes_in_flight") == 0
    probe.assert_responsive()
