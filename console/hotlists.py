"""Hot lists: browse and filter, manual add (reason and expiry), remove with a reason, and
file imports with a dry-run delta preview before the commit (policy 4.5)."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
from alpr.v1 import hotlist_pb2
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from alpr_common.hotlist_model import CATEGORIES, SOURCES
from console.hubclient import HubFailure
from console.sessions import Session
from console.web import Console, page

FORMATS = {
    "leads": hotlist_pb2.IMPORT_FORMAT_IL_LEADS,
    "sos": hotlist_pb2.IMPORT_FORMAT_IL_SOS,
    "csv": hotlist_pb2.IMPORT_FORMAT_CSV,
}
MAX_UPLOAD = 64 * 1024 * 1024
# An uploaded file waits this long for its commit after the preview.
PENDING_IMPORT_S = 15 * 60.0
# Any sworn member may add a plate by hand (policy §2, 4.5); removals and imports are for
# supervisors and admins (the hub's access table decides; the console only offers what it allows).
ADDERS = frozenset({"officer", "investigator", "supervisor", "admin"})
EDITORS = frozenset({"supervisor", "admin"})


def console_of(request: Request) -> Console:
    c: Console = request.app.state.console
    return c


@dataclass
class PendingImport:
    user_id: str
    data: bytes
    header: hotlist_pb2.ImportHeader
    at: float


# Previewed files waiting for a commit, per console process, by a random id.
_pending: dict[str, PendingImport] = {}


def _enum(prefix: str, name: str, names: tuple[str, ...]) -> int:
    key = name.strip().upper().replace(" ", "_").replace("-", "_")
    if not key:
        return 0
    if key not in names:
        raise ValueError(f"unknown {prefix.lower()} {name!r}; one of {', '.join(n.lower() for n in names)}")
    enum = hotlist_pb2.HotListCategory if prefix == "CATEGORY" else hotlist_pb2.HotListSource
    return int(enum.Value(f"HOT_LIST_{prefix}_{key}"))


async def _list(request: Request, s: Session, problem: str = "", status: int = 200, done: str = "") -> Response:
    c = console_of(request)
    q = request.query_params
    try:
        req = hotlist_pb2.ListEntriesRequest(
            plate=q.get("plate", "").strip().upper(),
            category=_enum("CATEGORY", q.get("category", ""), CATEGORIES),  # type: ignore[arg-type]
            source=_enum("SOURCE", q.get("source", ""), SOURCES),  # type: ignore[arg-type]
            limit=200,
        )
    except ValueError as e:
        return c.error(request, HubFailure(400, "INVALID_ARGUMENT", str(e)))
    resp = await c.hub.hotlists.ListEntries(req, metadata=c.md(s), timeout=c.settings.rpc_timeout_s)
    return c.render(
        request, "hotlists.html", status=status, entries=list(resp.entries), version=resp.version, truncated=resp.truncated,
        q=q, categories=CATEGORIES, sources=SOURCES, problem=problem, done=done or q.get("done", ""),
        editor=s.role in EDITORS, adder=s.role in ADDERS, formats=FORMATS,
    )  # fmt: skip


@page(console_of)
async def hotlists(request: Request, s: Session) -> Response:
    return await _list(request, s)


@page(console_of)
async def add(request: Request, s: Session) -> Response:
    c = console_of(request)
    f = await request.form()
    expires = str(f.get("expires", "")).strip()
    if not expires:
        return await _list(request, s, "policy 4.5: a manual entry needs an expiry date", 400)
    try:
        exp = datetime.strptime(expires, "%Y-%m-%d").replace(hour=23, minute=59, tzinfo=UTC)
        category = _enum("CATEGORY", str(f.get("category", "")), CATEGORIES)
        priority = int(str(f.get("priority", "0")) or 0)
    except ValueError as e:
        return await _list(request, s, str(e), 400)
    req = hotlist_pb2.AddEntryRequest(
        plate=str(f.get("plate", "")), state=str(f.get("state", "")).strip().upper(), category=category,  # type: ignore[arg-type]
        reason=str(f.get("reason", "")).strip(), entered_by=s.user_id, priority=priority,
        details=str(f.get("details", "")).strip(),
    )  # fmt: skip
    req.expire_time.FromDatetime(exp)
    try:
        r = await c.hub.hotlists.AddEntry(req, metadata=c.md(s), timeout=c.settings.rpc_timeout_s)
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
            return await _list(request, s, e.details() or "", 400)
        raise
    return RedirectResponse(f"/hotlists?plate={r.entry.plate}&done=added+{r.entry.entry_id}", status_code=303)


@page(console_of)
async def remove(request: Request, s: Session) -> Response:
    c = console_of(request)
    f = await request.form()
    req = hotlist_pb2.RemoveEntryRequest(
        entry_id=str(f.get("entry_id", "")), reason=str(f.get("reason", "")).strip(), removed_by=s.user_id
    )
    try:
        await c.hub.hotlists.RemoveEntry(req, metadata=c.md(s), timeout=c.settings.rpc_timeout_s)
    except grpc.aio.AioRpcError as e:
        if e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
            return await _list(request, s, e.details() or "", 400)
        raise
    return RedirectResponse(f"/hotlists?done=removed+{req.entry_id}", status_code=303)


async def _import(c: Console, s: Session, header: hotlist_pb2.ImportHeader, data: bytes) -> hotlist_pb2.ImportResult:
    async def requests() -> AsyncIterator[hotlist_pb2.ImportListRequest]:
        yield hotlist_pb2.ImportListRequest(header=header)
        for i in range(0, len(data), 256 * 1024):
            yield hotlist_pb2.ImportListRequest(data=data[i : i + 256 * 1024])

    result = hotlist_pb2.ImportResult()
    async for resp in c.hub.hotlists.ImportList(requests(), metadata=c.md(s), timeout=600):
        if resp.WhichOneof("payload") == "result":
            result = resp.result
    return result


@page(console_of, roles=EDITORS)
async def import_file(request: Request, s: Session) -> Response:
    """Upload → dry run (delta shown) → commit of the very same bytes."""
    c = console_of(request)
    f = await request.form()
    now = time.monotonic()
    for k in [k for k, p in _pending.items() if now - p.at > PENDING_IMPORT_S]:
        del _pending[k]
    commit_id = str(f.get("commit", ""))
    if commit_id:
        p = _pending.pop(commit_id, None)
        if p is None or p.user_id != s.user_id:
            return c.error(request, HubFailure(410, "GONE", "that preview has expired: upload the file again"))
        header = hotlist_pb2.ImportHeader()
        header.CopyFrom(p.header)
        header.dry_run = False
        result = await _import(c, s, header, p.data)
        return c.render(request, "import.html", result=result, header=header, commit_id="")
    upload = f.get("file")
    if not isinstance(upload, UploadFile):
        return c.error(request, HubFailure(400, "INVALID_ARGUMENT", "choose a file to import"))
    data = await upload.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        return c.error(
            request, HubFailure(413, "INVALID_ARGUMENT", f"the file is larger than {MAX_UPLOAD // 2**20} MB")
        )
    try:
        source = _enum("SOURCE", str(f.get("source", "")), SOURCES)
    except ValueError as e:
        return c.error(request, HubFailure(400, "INVALID_ARGUMENT", str(e)))
    header = hotlist_pb2.ImportHeader(
        format=FORMATS.get(str(f.get("format", "")), hotlist_pb2.IMPORT_FORMAT_UNSPECIFIED), source=source,  # type: ignore[arg-type]
        skip_bad=f.get("skip_bad") == "on", dry_run=True, imported_by=s.user_id, file_name=upload.filename or "",
    )  # fmt: skip
    result = await _import(c, s, header, data)
    pid = secrets.token_urlsafe(16)
    _pending[pid] = PendingImport(s.user_id, data, header, now)
    return c.render(request, "import.html", result=result, header=header, commit_id=pid)


ROUTES = [
    Route("/hotlists", hotlists),
    Route("/hotlists/add", add, methods=["POST"]),
    Route("/hotlists/remove", remove, methods=["POST"]),
    Route("/hotlists/import", import_file, methods=["POST"]),
]
