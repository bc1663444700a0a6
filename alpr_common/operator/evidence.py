"""``alpr export --case N --read ID... --out DIR`` and ``alpr export verify DIR``.

The package: ``manifest.json`` (case, purpose, exporter, time, hub, and every read with its
fields and the SHA-256 of each image file), ``images/`` (the JPEGs) and ``manifest.sha256``
(the SHA-256 of manifest.json). ``verify`` recomputes every digest and reports any changed,
missing or added file; a manifest that names a file outside the package (an absolute path,
``..``, a symbolic link) is refused, never read. A package rewritten consistently (new images,
a new manifest and a new manifest digest) passes that check, so ``verify --against-hub`` also
compares the package with the hub's evidence of the case, which no operator can change: the
export's exact set of reads (a read dropped from the package is noticed), every field of every
read, each image digest, and the exporter, purpose and time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import grpc
from alpr.v1 import evidence_pb2, evidence_pb2_grpc

from alpr_common.operator.common import CliError, Context, emit_json, leaf_options, rpc_error, to_dict

FORMAT = "alpr-evidence/1"
MANIFEST, MANIFEST_DIGEST, IMAGES = "manifest.json", "manifest.sha256", "images"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "export",
        parents=[leaf_options()],
        help="export reads to evidence for a case (kept beyond 60 days); 'export verify DIR' checks a package",
    )
    p.add_argument("verb", nargs="?", choices=["verify"], help="verify DIR: check a package")
    p.add_argument("dir", nargs="?", type=Path, help="package directory (with verify)")
    p.add_argument("--case", help="case number")
    p.add_argument("--read", nargs="+", action="extend", default=[], help="read ids")
    p.add_argument("--purpose", help="why the reads are exported (required: the policy asks for a stated purpose)")
    p.add_argument("--out", type=Path, help="directory to write the package to (must not exist or be empty)")
    p.add_argument(
        "--against-hub",
        action="store_true",
        help="verify: also compare the package with the hub's evidence copy of the case (needs a token)",
    )


def write_package(out: Path, resp: evidence_pb2.ExportEvidenceResponse, case: str, purpose: str, hub: str) -> Path:
    """Write the package; returns the manifest path."""
    if out.exists() and any(out.iterdir()):
        raise CliError(f"{out} is not empty: choose a new directory")
    (out / IMAGES).mkdir(parents=True, exist_ok=True)
    reads: list[dict[str, Any]] = []
    for ev in resp.reads:
        r = ev.read
        images: dict[str, dict[str, Any]] = {}
        for kind, data in (("plate_crop", r.plate_crop_jpeg), ("frame", r.frame_jpeg)):
            if not data:
                continue
            name = f"{IMAGES}/{r.read_id}_{kind}.jpg"
            (out / name).write_bytes(data)
            images[kind] = {"file": name, "sha256": sha256(data), "bytes": len(data)}
        fields = to_dict(r)
        fields.pop("plate_crop_jpeg", None)
        fields.pop("frame_jpeg", None)
        reads.append({"read": fields, "images": images, "exported_by": ev.exported_by})
    manifest = {
        "format": FORMAT,
        "case_number": case,
        "purpose": purpose,
        "exported_by": resp.exported_by,
        "exported_time": resp.exported_time.ToJsonString(),
        "hub": hub,
        "missing_read_ids": list(resp.missing_read_ids),
        "export_id": resp.export_id,
        "reads": reads,
    }
    blob = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    (out / MANIFEST).write_bytes(blob)
    (out / MANIFEST_DIGEST).write_text(f"{sha256(blob)}  {MANIFEST}\n")
    return out / MANIFEST


def verify_package(d: Path) -> list[str]:
    """Every problem found in the package at ``d`` (empty: intact)."""
    problems: list[str] = []
    mpath, dpath = d / MANIFEST, d / MANIFEST_DIGEST
    if mpath.is_symlink() or dpath.is_symlink():
        return [f"{MANIFEST} or {MANIFEST_DIGEST} is a symbolic link (refused, not read)"]
    if not mpath.is_file() or not dpath.is_file():
        return [f"{MANIFEST} or {MANIFEST_DIGEST} is missing"]
    blob = mpath.read_bytes()
    recorded = dpath.read_text().split()[0] if dpath.read_text().split() else ""
    if sha256(blob) != recorded:
        problems.append(f"{MANIFEST} changed: SHA-256 {sha256(blob)} != recorded {recorded}")
    try:
        manifest = json.loads(blob)
    except ValueError:
        return [*problems, f"{MANIFEST} is not valid JSON"]
    if not isinstance(manifest, dict) or not isinstance(manifest.get("reads", []), list):
        return [*problems, f"{MANIFEST} is not an evidence manifest"]
    listed: set[str] = set()
    for entry in manifest.get("reads", []):
        images = entry.get("images", {}) if isinstance(entry, dict) else None
        if not isinstance(images, dict):
            problems.append(f"{MANIFEST}: a read entry is malformed")
            continue
        for img in images.values():
            name = img.get("file") if isinstance(img, dict) else None
            f = _inside(d, name)
            if f is None:
                problems.append(f"{name!r}: names a file outside the package's {IMAGES}/ folder (refused, not read)")
                continue
            listed.add(str(name))
            if not f.is_file():
                problems.append(f"{name}: missing")
            elif sha256(f.read_bytes()) != img.get("sha256"):
                problems.append(f"{name}: changed (SHA-256 differs from the manifest)")
    for f in sorted(d.rglob("*")):
        rel = f.relative_to(d).as_posix()
        if f.is_symlink():
            problems.append(f"{rel}: a symbolic link (a package holds plain files only)")
        elif f.is_file() and rel not in listed and rel not in (MANIFEST, MANIFEST_DIGEST):
            problems.append(f"{rel}: not part of the package (added)")
    return problems


def _inside(d: Path, name: object) -> Path | None:
    """``d/name`` when ``name`` is a plain relative path under ``images/`` that stays inside the
    package (no ``..``, not absolute, no symbolic link on the way); otherwise None."""
    if not isinstance(name, str) or not name.startswith(f"{IMAGES}/") or "\\" in name or "\x00" in name:
        return None
    rel = Path(name)
    if rel.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
        return None
    path = d / rel
    root = d.resolve()
    for p in (path, path.parent):
        if p.is_symlink():
            return None
    try:
        path.resolve().relative_to(root)
    except ValueError:
        return None
    return path


_IMAGE_FIELDS = ("plate_crop_jpeg", "frame_jpeg")


def compare_with_hub(
    d: Path, evidence: list[evidence_pb2.EvidenceRead], exports: list[evidence_pb2.EvidenceExport] | None = None
) -> list[str]:
    """Differences between the package at ``d`` and the hub's evidence of its case.

    The package must hold exactly the reads of its export (``export_id`` in the manifest;
    a package without one: every read the hub holds for the case), each with every field,
    image digest and exporter as the hub's copy, and the export's exporter, purpose and time.
    """
    try:
        manifest = json.loads((d / MANIFEST).read_bytes())
    except (OSError, ValueError):
        return [f"{MANIFEST} is unreadable: nothing to compare with the hub"]
    case = manifest.get("case_number")
    held = {ev.read.read_id: ev for ev in evidence}
    problems: list[str] = []
    expected = set(held)
    export_id = manifest.get("export_id") or ""
    if export_id:
        export = next((x for x in exports or [] if x.export_id == export_id), None)
        if export is None:
            return [f"the hub holds no export {export_id!r} for case {case!r}"]
        expected = set(export.read_ids)
        for key, hub_value in (
            ("exported_by", export.exported_by),
            ("purpose", export.purpose),
            ("exported_time", export.exported_time.ToJsonString()),
        ):
            if manifest.get(key) != hub_value:
                problems.append(f"{key} differs from the hub's record of export {export_id}")
    in_package: set[str] = set()
    for entry in manifest.get("reads", []):
        fields = dict(entry.get("read", {}))
        rid = str(fields.get("read_id", "?"))
        in_package.add(rid)
        ev = held.get(rid)
        if ev is None or rid not in expected:
            problems.append(f"read {rid}: the hub holds no evidence copy of it for this export of case {case!r}")
            continue
        hub_fields = to_dict(ev.read)
        for f in _IMAGE_FIELDS:
            hub_fields.pop(f, None)
        for key in sorted(set(fields) | set(hub_fields)):
            if fields.get(key) != hub_fields.get(key):
                problems.append(f"read {rid}: {key} differs from the hub's evidence copy")
        if entry.get("exported_by") != ev.exported_by:
            problems.append(f"read {rid}: exported_by differs from the hub's evidence copy")
        images = entry.get("images", {})
        for kind, data in (("plate_crop", ev.read.plate_crop_jpeg), ("frame", ev.read.frame_jpeg)):
            img = images.get(kind)
            if (img is None) != (not data) or (data and img.get("sha256") != sha256(data)):
                problems.append(f"read {rid}: {kind} image differs from the hub's evidence copy")
    for rid in sorted(expected - in_package):
        problems.append(f"read {rid}: the hub holds it for this export of case {case!r} but the package lacks it")
    return problems


def _hub_evidence(ctx: Context, case: str) -> evidence_pb2.GetEvidenceResponse:
    with ctx.channel() as ch:
        try:
            resp = evidence_pb2_grpc.EvidenceServiceStub(ch).GetEvidence(
                evidence_pb2.GetEvidenceRequest(case_number=case), timeout=ctx.timeout, metadata=ctx.metadata()
            )
        except grpc.RpcError as e:
            raise rpc_error(ctx, e) from e
    return resp


def run(ctx: Context, args: argparse.Namespace) -> int:
    if args.verb == "verify":
        if args.dir is None:
            raise CliError("usage: alpr export verify DIR [--against-hub]")
        problems = verify_package(args.dir)
        if args.against_hub:
            try:
                case = str(json.loads((args.dir / MANIFEST).read_bytes()).get("case_number", ""))
            except (OSError, ValueError):
                case = ""
            if not case:
                problems.append(f"{MANIFEST} names no case: cannot compare with the hub")
            else:
                held = _hub_evidence(ctx, case)
                problems += compare_with_hub(args.dir, list(held.reads), list(held.exports))
        if ctx.json:
            emit_json({"ok": not problems, "problems": problems, "dir": str(args.dir)})
        else:
            for p in problems:
                print(p)
            print(f"{args.dir}: {'intact' if not problems else 'CHANGED'}")
        return 0 if not problems else 1
    if not args.case or not args.read or not args.out or not (args.purpose or "").strip():
        raise CliError("usage: alpr export --case N --purpose TEXT --read ID... --out DIR (case and purpose required)")
    purpose = args.purpose.strip()
    with ctx.channel() as ch:
        stub = evidence_pb2_grpc.EvidenceServiceStub(ch)
        try:
            resp = stub.ExportEvidence(
                evidence_pb2.ExportEvidenceRequest(case_number=args.case, purpose=purpose, read_ids=args.read),
                timeout=ctx.timeout,
                metadata=ctx.metadata(),
            )
        except grpc.RpcError as e:
            raise rpc_error(ctx, e) from e
    manifest = write_package(args.out, resp, args.case, purpose, ctx.hub)
    if ctx.json:
        emit_json(
            {
                "manifest": str(manifest),
                "reads": len(resp.reads),
                "missing_read_ids": list(resp.missing_read_ids),
                "manifest_sha256": (args.out / MANIFEST_DIGEST).read_text().split()[0],
            }
        )
    else:
        print(f"case {args.case}: {len(resp.reads)} read(s) exported to {args.out}")
        for m in resp.missing_read_ids:
            print(f"  not found (expired?): {m}")
    return 0 if resp.reads else 1
