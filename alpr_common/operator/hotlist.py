"""``alpr hotlist {add,remove,import,list,show}``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import grpc
from alpr.v1 import hotlist_pb2, hotlist_pb2_grpc

from alpr_common.hotlist_model import CATEGORIES, SOURCES, category_name, source_name
from alpr_common.operator.common import (
    ACTING_AS_HELP,
    CliError,
    Context,
    acting_as,
    emit_json,
    enum_arg,
    leaf_options,
    rpc_error,
    to_dict,
)
from alpr_common.timestamps import from_timestamp, utc

FORMATS = {"il-leads": "IL_LEADS", "il-sos": "IL_SOS", "csv": "CSV"}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("hotlist", help="hot-list entries: add, remove, import, list, show")
    s = p.add_subparsers(dest="action", required=True)
    common = [leaf_options()]

    a = s.add_parser("add", parents=common, help="manual entry (policy 4.5): reason and expiry required")
    a.add_argument("plate")
    a.add_argument("--state", default="", help="state of issuance, e.g. IL (empty: any state)")
    a.add_argument("--category", required=True, help="one of: " + ", ".join(c.lower() for c in CATEGORIES))
    a.add_argument("--reason", required=True, help="why the plate is entered")
    a.add_argument("--officer", default="", help=f"who enters it: {ACTING_AS_HELP}")
    a.add_argument("--expires", required=True, help="until when the plate is wanted: ISO date or date-time (required)")
    a.add_argument("--priority", type=int, default=0, help="1 (highest) .. 9")
    for f in ("year", "make", "model", "color"):
        a.add_argument(f"--{f}", default="")
    a.add_argument("--details", default="", help="description of the person or vehicle")

    r = s.add_parser("remove", parents=common, help="remove an entry: reason required")
    r.add_argument("entry_id")
    r.add_argument("--reason", required=True)
    r.add_argument("--officer", default="", help=f"who removes it: {ACTING_AS_HELP}")

    i = s.add_parser(
        "import", parents=common, help="full-list import of one source's extract (delta computed by the hub)"
    )
    i.add_argument("file", type=Path)
    i.add_argument("--format", required=True, choices=sorted(FORMATS), help="file layout")
    i.add_argument("--source", required=True, help="the list the file replaces: " + ", ".join(
        x.lower() for x in SOURCES if x != "MANUAL"))  # fmt: skip
    i.add_argument("--skip-bad", action="store_true", help="import the good rows and skip bad ones")
    i.add_argument("--dry-run", action="store_true", help="report the delta without changing anything")
    i.add_argument(
        "--allow-mass-removal",
        action="store_true",
        help="commit even if the file is empty or removes more than the hub's limit (default 20%%) of the source",
    )
    i.add_argument("--by", default="", help=f"who imports: {ACTING_AS_HELP} (default there: $USER)")

    ls = s.add_parser("list", parents=common, help="list entries")
    ls.add_argument("--plate", default="")
    ls.add_argument("--source", default="")
    ls.add_argument("--category", default="")
    ls.add_argument("--limit", type=int, default=100)

    sh = s.add_parser("show", parents=common, help="one entry in full")
    sh.add_argument("entry_id")


def _when(text: str) -> datetime:
    """An expiry: a date means the end of that day (UTC), like the console's date field."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise CliError(f"--expires {text!r} is not an ISO date (YYYY-MM-DD) or date-time") from e
    if len(text.strip()) == 10:
        dt = dt.replace(hour=23, minute=59, second=59)
    return utc(dt)


def _category(text: str) -> int:
    if enum_arg(text) not in CATEGORIES:
        raise CliError(f"unknown category {text!r}; one of {', '.join(c.lower() for c in CATEGORIES)}")
    return int(hotlist_pb2.HotListCategory.Value("HOT_LIST_CATEGORY_" + enum_arg(text)))


def _source(text: str) -> int:
    if enum_arg(text) not in SOURCES:
        raise CliError(f"unknown source {text!r}; one of {', '.join(s.lower() for s in SOURCES)}")
    return int(hotlist_pb2.HotListSource.Value("HOT_LIST_SOURCE_" + enum_arg(text)))


def _line(e: hotlist_pb2.HotListEntry) -> str:
    exp = from_timestamp(e.expire_time).date().isoformat() if e.HasField("expire_time") else "-"
    veh = " ".join(x for x in (e.vehicle.year, e.vehicle.make, e.vehicle.model, e.vehicle.color) if x)
    return (
        f"{e.plate:<9} {e.state or '*':<3} {category_name(e.category).lower():<24} {source_name(e.source).lower():<10} "
        f"expires {exp:<10} {e.entry_id}  {veh}"
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.channel() as ch:
        stub = hotlist_pb2_grpc.HotListServiceStub(ch)
        md = ctx.metadata()
        try:
            return _dispatch(ctx, args, stub, md)
        except grpc.RpcError as e:
            raise rpc_error(ctx, e) from e


def _dispatch(ctx: Context, args: argparse.Namespace, stub: hotlist_pb2_grpc.HotListServiceStub, md) -> int:  # type: ignore[no-untyped-def]
    t = ctx.timeout
    if args.action == "add":
        req = hotlist_pb2.AddEntryRequest(
            plate=args.plate, state=args.state, category=_category(args.category),  # type: ignore[arg-type]
            reason=args.reason, entered_by=acting_as(ctx, args.officer, "--officer"), priority=args.priority, details=args.details,
            vehicle=hotlist_pb2.VehicleDescription(year=args.year, make=args.make, model=args.model, color=args.color),
        )  # fmt: skip
        req.expire_time.FromDatetime(_when(args.expires))
        resp = stub.AddEntry(req, timeout=t, metadata=md)
        if ctx.json:
            emit_json(to_dict(resp))
        else:
            print(f"added {resp.entry.entry_id} (hot-list version {resp.version})\n{_line(resp.entry)}")
        return 0
    if args.action == "remove":
        removed = stub.RemoveEntry(
            hotlist_pb2.RemoveEntryRequest(
                entry_id=args.entry_id, reason=args.reason, removed_by=acting_as(ctx, args.officer, "--officer")
            ),
            timeout=t,
            metadata=md,
        )
        if ctx.json:
            emit_json({"entry_id": args.entry_id, "version": removed.version})
        else:
            print(f"removed {args.entry_id} (hot-list version {removed.version})")
        return 0
    if args.action == "show":
        e = stub.GetEntry(hotlist_pb2.GetEntryRequest(entry_id=args.entry_id), timeout=t, metadata=md).entry
        if ctx.json:
            emit_json(to_dict(e))
        else:
            d = to_dict(e)
            for k in sorted(d):
                print(f"{k:>18}: {d[k]}")
        return 0
    if args.action == "list":
        lreq = hotlist_pb2.ListEntriesRequest(plate=args.plate, limit=args.limit)
        if args.source:
            lreq.source = _source(args.source)  # type: ignore[assignment]
        if args.category:
            lreq.category = _category(args.category)  # type: ignore[assignment]
        listed = stub.ListEntries(lreq, timeout=t, metadata=md)
        if ctx.json:
            emit_json(to_dict(listed))
        else:
            for e in listed.entries:
                print(_line(e))
            more = " (more match: use --limit or filters)" if listed.truncated else ""
            n = len(listed.entries)
            print(f"{n} entr{'y' if n == 1 else 'ies'}, version {listed.version}{more}")
        return 0
    if args.action == "import":
        return _import(ctx, args, stub, md)
    raise CliError(f"unknown action {args.action}")


def _import(ctx: Context, args: argparse.Namespace, stub: hotlist_pb2_grpc.HotListServiceStub, md) -> int:  # type: ignore[no-untyped-def]
    path: Path = args.file
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    size = path.stat().st_size
    fmt = hotlist_pb2.ImportFormat.Value("IMPORT_FORMAT_" + FORMATS[args.format])
    source = _source(args.source)
    import getpass

    by = args.by.strip() or ("" if ctx.token else getpass.getuser())
    bar = _Progress(quiet=ctx.json)

    def requests() -> Iterator[hotlist_pb2.ImportListRequest]:
        yield hotlist_pb2.ImportListRequest(
            header=hotlist_pb2.ImportHeader(
                format=fmt, source=source, skip_bad=args.skip_bad, dry_run=args.dry_run,  # type: ignore[arg-type]
                imported_by=by, file_name=path.name, allow_mass_removal=args.allow_mass_removal,
            )
        )  # fmt: skip
        sent = 0
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                sent += len(chunk)
                bar.show("upload", sent, size)
                yield hotlist_pb2.ImportListRequest(data=chunk)

    result: hotlist_pb2.ImportResult | None = None
    error: grpc.RpcError | None = None
    try:
        for resp in stub.ImportList(requests(), timeout=max(ctx.timeout, 900), metadata=md):
            if resp.WhichOneof("payload") == "progress":
                bar.show(resp.progress.phase, resp.progress.done, resp.progress.total)
            else:
                result = resp.result
    except grpc.RpcError as e:
        error = e
    bar.done()
    if result is not None:
        if ctx.json:
            emit_json(to_dict(result) | {"committed": error is None and result.version > 0})
        else:
            for b in result.bad_rows:
                print(f"{path}:{b.line}: {b.message}", file=sys.stderr)
            what = "would change" if result.dry_run or error is not None else "imported"
            print(
                f"{path.name}: {result.rows} rows, {len(result.bad_rows)} bad; {what}: +{result.added} added, "
                f"~{result.changed} changed, -{result.removed} removed, {result.unchanged} unchanged"
                + (f"; hot-list version {result.version}" if result.version else "")
            )
    if error is not None:
        raise rpc_error(ctx, error)
    return 0


class _Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, quiet: bool) -> None:
        self.on = sys.stderr.isatty() and not quiet
        self.last = 0.0

    def show(self, phase: str, done: int, total: int) -> None:
        if not self.on or (time.monotonic() - self.last < 0.1 and done != total):
            return
        self.last = time.monotonic()
        frac = done / total if total else 1.0
        filled = int(frac * 30)
        sys.stderr.write(f"\r{phase:<8} [{'#' * filled}{'.' * (30 - filled)}] {frac * 100:5.1f}% {done}/{total}   ")
        sys.stderr.flush()

    def done(self) -> None:
        if self.on:
            sys.stderr.write("\n")
