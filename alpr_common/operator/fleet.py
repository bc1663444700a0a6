"""``alpr fleet config {set,get,diff,history}`` (central node configuration) and
``alpr fleet models {keygen,upload,list,rollout,status,pause,rollback}`` (model releases and
their staged rollout). Changes need the fleet operator or admin role and are audited."""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
from alpr.v1 import fleet_config_pb2, fleet_config_pb2_grpc, fleet_models_pb2, fleet_models_pb2_grpc

from alpr_common.model_release import (
    ReleaseError,
    build_manifest,
    load_private_key,
    new_key,
    parse_manifest,
    sign,
)
from alpr_common.operator.common import CliError, Context, emit_json, leaf_options, output, rpc_error, to_dict

UPLOAD_CHUNK = 512 * 1024
_KINDS = {"group": fleet_config_pb2.OVERLAY_SCOPE_KIND_GROUP, "node": fleet_config_pb2.OVERLAY_SCOPE_KIND_NODE}
_STAGES = fleet_models_pb2.RolloutStage
_STATUS = fleet_models_pb2.RolloutStatus
_STATE = fleet_models_pb2.NodeModelState


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("fleet", help="central node configuration and model rollouts (fleet operators, admins)")
    s = p.add_subparsers(dest="part", required=True)
    common = [leaf_options()]
    cfg = s.add_parser("config", help="versioned configuration overlays per group and per unit")
    c = cfg.add_subparsers(dest="action", required=True)
    st = c.add_parser("set", parents=common, help="change a scope's overlay (a new version)")
    st.add_argument("scope", help="group:NAME or node:NODE_ID")
    src = st.add_mutually_exclusive_group(required=True)
    src.add_argument("--settings", help='JSON object of node settings, e.g. \'{"tracker": {"min_hits": 3}}\'')
    src.add_argument("--file", type=Path, help="a file holding that JSON object")
    st.add_argument("--replace", action="store_true", help="the scope's whole new overlay (default: merge)")
    st.add_argument("--reason", required=True, help="why (kept with the version and audited)")
    st.add_argument("--expect", type=int, help="refuse unless the scope is still at this version")
    st.add_argument("--dry-run", action="store_true", help="validate only")
    gt = c.add_parser("get", parents=common, help="a scope's overlay, or what one unit gets")
    gt.add_argument("scope", nargs="?", help="group:NAME or node:NODE_ID")
    gt.add_argument("--node", help="the unit's effective overlay (its groups, then its own)")
    gt.add_argument(
        "--group", dest="node_groups", action="append", default=[], help="the unit's groups, in order (with --node)"
    )
    gt.add_argument("--at", type=int, default=0, help="as it was at this version")
    df = c.add_parser("diff", parents=common, help="how a scope's overlay changed between two versions")
    df.add_argument("scope", help="group:NAME or node:NODE_ID")
    df.add_argument("--from", dest="from_version", type=int, required=True, help="the older version")
    df.add_argument("--to", dest="to_version", type=int, default=0, help="the newer version (default: now)")
    hi = c.add_parser("history", parents=common, help="versions, newest first")
    hi.add_argument("scope", nargs="?", help="only this scope (group:NAME or node:NODE_ID)")
    hi.add_argument("--limit", type=int, default=50)

    mod = s.add_parser("models", help="signed model releases and their staged rollout")
    m = mod.add_subparsers(dest="action", required=True)
    kg = m.add_parser("keygen", parents=common, help="make a release key (KEY, and KEY.pub for hubs and units)")
    kg.add_argument("key", type=Path)
    up = m.add_parser("upload", parents=common, help="build, sign and upload a release")
    up.add_argument("--release", required=True, help="the release id (immutable once stored)")
    up.add_argument("--detector", type=Path, help="detector ONNX")
    up.add_argument("--ocr", type=Path, help="OCR ONNX (needs --plate-config)")
    up.add_argument("--plate-config", type=Path, help="the OCR's plate config YAML")
    up.add_argument(
        "--sample", action="append", default=[], required=True,
        help="IMAGE=PLATE[,PLATE...]: a self-test image and the plates it must read as (repeatable)",
    )  # fmt: skip
    up.add_argument("--min-share", type=float, default=1.0, help="share of sample plates that must read right")
    up.add_argument("--figures", type=Path, help="JSON file of the release's figures (accuracy, speed, ...)")
    up.add_argument("--key", type=Path, required=True, help="the release key (private, PEM)")
    up.add_argument("--reason", required=True, help="why this release (audited)")
    m.add_parser("list", parents=common, help="stored releases")
    ro = m.add_parser("rollout", parents=common, help="start a rollout (canary group) or move it on")
    ro.add_argument("release")
    stage = ro.add_mutually_exclusive_group(required=True)
    stage.add_argument("--canary", metavar="GROUP", help="first stage: the units of this group")
    stage.add_argument("--percent", type=int, help="then: the canary group and this share of the fleet (1-99)")
    stage.add_argument("--all", action="store_true", help="last: every unit")
    ro.add_argument("--reason", required=True)
    m.add_parser("status", parents=common, help="the rollout and what each unit reports")
    pa = m.add_parser("pause", parents=common, help="stop the rollout where it is")
    pa.add_argument("--reason", required=True)
    rb = m.add_parser("rollback", parents=common, help="every unit back to the release before the rollout")
    rb.add_argument("--reason", required=True)


def run(ctx: Context, args: argparse.Namespace) -> int:
    if args.part == "models" and args.action == "keygen":
        return _keygen(ctx, args.key)
    with ctx.channel() as ch:
        try:
            if args.part == "config":
                return _config(ctx, args, fleet_config_pb2_grpc.FleetConfigServiceStub(ch))
            return _models(ctx, args, fleet_models_pb2_grpc.ModelReleaseServiceStub(ch))
        except grpc.RpcError as e:
            raise rpc_error(ctx, e) from e


# -- configuration ---------------------------------------------------------------------------


def scope_arg(text: str) -> fleet_config_pb2.OverlayScope:
    kind, _, name = text.partition(":")
    if kind not in _KINDS or not name:
        raise CliError(f"scope {text!r}: write group:NAME or node:NODE_ID")
    return fleet_config_pb2.OverlayScope(kind=_KINDS[kind], name=name)


def _pretty(overlay_json: str) -> str:
    return json.dumps(json.loads(overlay_json or "{}"), indent=2, sort_keys=True)


def _config(ctx: Context, args: argparse.Namespace, stub: fleet_config_pb2_grpc.FleetConfigServiceStub) -> int:
    md, t = ctx.metadata(), ctx.timeout
    if args.action == "set":
        try:
            text = args.settings if args.settings is not None else args.file.read_text()
        except OSError as e:
            raise CliError(f"cannot read {args.file}: {e.strerror}") from None
        req = fleet_config_pb2.SetOverlayRequest(
            scope=scope_arg(args.scope), settings_json=text, replace=args.replace, reason=args.reason,
            dry_run=args.dry_run,
        )  # fmt: skip
        if args.expect is not None:
            req.expected_scope_version = args.expect
        r = stub.SetOverlay(req, timeout=t, metadata=md)
        head = "valid (dry run, nothing changed)" if r.dry_run else f"version {r.version}"
        return output(ctx, r, f"{args.scope}: {head}\n{_pretty(r.overlay_json)}")
    if args.action == "get":
        if args.node:
            req2 = fleet_config_pb2.GetConfigRequest(
                node=fleet_config_pb2.NodeTarget(node_id=args.node, groups=args.node_groups), at_version=args.at
            )
        elif args.scope:
            req2 = fleet_config_pb2.GetConfigRequest(scope=scope_arg(args.scope), at_version=args.at)
        else:
            raise CliError("name a scope (group:NAME, node:NODE_ID) or --node NODE_ID [--group G ...]")
        g = stub.GetConfig(req2, timeout=t, metadata=md)
        what = args.scope or f"unit {args.node}"
        return output(
            ctx, g, f"{what} at version {g.version} (last changed at {g.scope_version})\n{_pretty(g.overlay_json)}"
        )
    if args.action == "diff":
        scope = scope_arg(args.scope)
        old = stub.GetConfig(fleet_config_pb2.GetConfigRequest(scope=scope, at_version=args.from_version),
                             timeout=t, metadata=md)  # fmt: skip
        new = stub.GetConfig(fleet_config_pb2.GetConfigRequest(scope=scope, at_version=args.to_version),
                             timeout=t, metadata=md)  # fmt: skip
        a, b = _pretty(old.overlay_json).splitlines(), _pretty(new.overlay_json).splitlines()
        lines = list(
            difflib.unified_diff(a, b, f"{args.scope}@{old.version}", f"{args.scope}@{new.version}", lineterm="")
        )
        if ctx.json:
            emit_json({"from": old.version, "to": new.version, "diff": lines})
        else:
            print("\n".join(lines) if lines else f"{args.scope}: no change between {old.version} and {new.version}")
        return 0
    req3 = fleet_config_pb2.ListHistoryRequest(limit=args.limit)
    if args.scope:
        req3.scope.CopyFrom(scope_arg(args.scope))
    h = stub.ListHistory(req3, timeout=t, metadata=md)
    rows = [
        f"v{v.version:<6} {v.changed_time.ToDatetime():%Y-%m-%d %H:%M:%S} {v.scope.name:16} {v.changed_by:12} "
        f"{'replace' if v.replace else 'patch':7} {v.change_json}  ({v.reason})"
        for v in h.versions
    ]
    return output(ctx, h, "\n".join([*rows, f"current version {h.current_version}"]))


# -- model releases --------------------------------------------------------------------------


def _keygen(ctx: Context, key: Path) -> int:
    try:
        pub = new_key(key)
    except FileExistsError:
        raise CliError(f"{key} exists: never overwrite a release key") from None
    except OSError as e:
        raise CliError(f"cannot write {key}: {e.strerror}") from None
    if ctx.json:
        emit_json({"key": str(key), "public_key": str(pub)})
    else:
        print(f"release key {key} (keep it offline); give {pub} to the hubs and the units")
    return 0


def upload_requests(
    folder: Path, manifest: bytes, signature: bytes, reason: str, chunk: int = UPLOAD_CHUNK
) -> Iterator[fleet_models_pb2.ModelReleaseServiceUploadRequest]:
    """The Upload stream for a release whose files are in ``folder`` under their release names."""
    yield fleet_models_pb2.ModelReleaseServiceUploadRequest(
        header=fleet_models_pb2.ReleaseUploadHeader(manifest_json=manifest, signature=signature, reason=reason)
    )
    for f in parse_manifest(manifest).files:
        with (folder / f.name).open("rb") as src:
            offset = 0
            while data := src.read(chunk):
                yield fleet_models_pb2.ModelReleaseServiceUploadRequest(
                    chunk=fleet_models_pb2.ReleaseFileChunk(file=f.name, offset=offset, data=data)
                )
                offset += len(data)


def stage_release(args: argparse.Namespace, folder: Path) -> bytes:
    """Link the release's files into ``folder`` under their release names; the manifest's bytes."""
    files: dict[str, tuple[Path, str]] = {}
    for role, path in (("detector", args.detector), ("ocr", args.ocr), ("plate_config", args.plate_config)):
        if path is not None:
            files[path.name] = (path, role)
    samples = []
    for spec in args.sample:
        image, _, plates = spec.partition("=")
        if not plates:
            raise CliError(f"--sample {spec!r}: write IMAGE=PLATE[,PLATE...]")
        name = f"samples/{Path(image).name}"
        files[name] = (Path(image), "sample")
        samples.append((name, [p.strip().upper() for p in plates.split(",") if p.strip()]))
    for name, (path, _) in files.items():
        if not path.is_file():
            raise CliError(f"{path}: no such file")
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).symlink_to(path.resolve())
    figures = {}
    if args.figures is not None:
        try:
            figures = json.loads(args.figures.read_text())
        except (OSError, ValueError) as e:
            raise CliError(f"--figures {args.figures}: {e}") from None
    return build_manifest(args.release, files, samples, min_share=args.min_share, figures=figures)


def _models(ctx: Context, args: argparse.Namespace, stub: fleet_models_pb2_grpc.ModelReleaseServiceStub) -> int:
    md, t = ctx.metadata(), ctx.timeout
    if args.action == "upload":
        with tempfile.TemporaryDirectory() as tmp:
            try:
                manifest = stage_release(args, Path(tmp))
                signature = sign(manifest, load_private_key(args.key))
            except ReleaseError as e:
                raise CliError(str(e)) from None
            total = parse_manifest(manifest).total_bytes
            print(f"uploading release {args.release}: {total / 1e6:.1f} MB", file=sys.stderr)
            r = stub.Upload(
                upload_requests(Path(tmp), manifest, signature, args.reason), timeout=max(t, 600), metadata=md
            )
        return output(
            ctx, r, f"release {r.release_id} stored: {r.files} file(s), {r.total_bytes} bytes, key {r.key_id}"
        )
    if args.action == "list":
        rs = stub.ListReleases(fleet_models_pb2.ListReleasesRequest(), timeout=t, metadata=md)
        rows = [
            f"{x.release_id:24} {x.uploaded_time.ToDatetime():%Y-%m-%d %H:%M} {x.total_bytes / 1e6:7.1f} MB "
            f"key {x.key_id} by {x.uploaded_by}"
            for x in rs.releases
        ]
        return output(ctx, rs, "\n".join([*rows, f"{len(rs.releases)} release(s)"]))
    if args.action == "rollout":
        if args.canary:
            req = fleet_models_pb2.RolloutRequest(stage=_STAGES.ROLLOUT_STAGE_CANARY, canary_group=args.canary)
        elif args.percent is not None:
            req = fleet_models_pb2.RolloutRequest(stage=_STAGES.ROLLOUT_STAGE_PERCENT, percent=args.percent)
        else:
            req = fleet_models_pb2.RolloutRequest(stage=_STAGES.ROLLOUT_STAGE_ALL)
        req.release_id, req.reason = args.release, args.reason
        r2 = stub.Rollout(req, timeout=t, metadata=md)
        return output(ctx, r2, describe_rollout(r2.rollout))
    if args.action == "pause":
        r3 = stub.PauseRollout(fleet_models_pb2.PauseRolloutRequest(reason=args.reason), timeout=t, metadata=md)
        return output(ctx, r3, describe_rollout(r3.rollout))
    if args.action == "rollback":
        r4 = stub.Rollback(fleet_models_pb2.RollbackRequest(reason=args.reason), timeout=t, metadata=md)
        return output(ctx, r4, describe_rollout(r4.rollout))
    s = stub.GetRolloutStatus(fleet_models_pb2.GetRolloutStatusRequest(), timeout=t, metadata=md)
    if ctx.json:
        emit_json(to_dict(s))
        return 0
    print(describe_rollout(s.rollout) if s.HasField("rollout") else "no rollout was ever started")
    for n in s.nodes:
        state = _STATE.Name(n.state).removeprefix("NODE_MODEL_STATE_").lower()
        err = f"  {n.error}" if n.error else ""
        print(f"  {n.node_id:24} runs {n.running_release_id or '(own models)':20} {state:11} {n.release_id}{err}")
    print(f"{s.nodes_on_release} unit(s) on the release, {s.nodes_failed} failed, {len(s.nodes)} reporting")
    return 0


def describe_rollout(r: fleet_models_pb2.Rollout) -> str:
    stage = _STAGES.Name(r.stage).removeprefix("ROLLOUT_STAGE_").lower()
    if r.stage == _STAGES.ROLLOUT_STAGE_PERCENT:
        stage += f" {r.percent}%"
    status = _STATUS.Name(r.status).removeprefix("ROLLOUT_STATUS_").lower().replace("_", " ")
    return (
        f"rollout v{r.version}: {r.release_id} ({status}, stage {stage}, canary group {r.canary_group}; "
        f"previous {r.previous_release_id or '(own models)'}) by {r.changed_by}: {r.reason}"
    )
