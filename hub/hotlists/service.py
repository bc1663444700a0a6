"""``HotListService``: node subscriptions (snapshot, then deltas), manual entries (policy
4.5), list imports, and reads of the current list."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import grpc
from alpr.v1 import hotlist_pb2, hotlist_pb2_grpc

from alpr_common.hotlist_model import HotListEntry, category_name, entry_to_proto, source_name
from alpr_common.lifecycle import cancel_task
from alpr_common.matching import varint
from alpr_common.plates import normalize_plate, plate_problem
from alpr_common.timestamps import from_timestamp, now_utc, to_timestamp
from hub.audit import AuditLog
from hub.config import HubConfig
from hub.hotlists.file_formats import ParsedFile, parse_file
from hub.hotlists.mirror import HotListMirror
from hub.hotlists.store import REMOVE, UPSERT, Change, HotListStore
from hub.metrics import HotListMetrics
from hub.principal import Context

log = logging.getLogger(__name__)

MAX_IMPORT_BYTES = 1 << 30


class HotListServicer(hotlist_pb2_grpc.HotListServiceServicer):
    def __init__(
        self,
        *,
        store: HotListStore,
        mirror: HotListMirror,
        config: HubConfig,
        metrics: HotListMetrics,
        audit: AuditLog,
    ) -> None:
        self.store = store
        self.mirror = mirror
        self.config = config
        self.metrics = metrics
        self.audit = audit
        self._nodes: dict[str, int] = {}  # subscribed node -> acked version
        self._streams: dict[str, int] = {}  # node -> how many of its Subscribe streams are open here
        self._metrics_task: asyncio.Task[None] | None = None
        self.closing = asyncio.Event()

    def start(self) -> None:
        self._metrics_task = asyncio.create_task(self._metrics_loop())

    async def stop(self) -> None:
        self.closing.set()
        if self._metrics_task:
            await cancel_task(self._metrics_task)

    async def _metrics_loop(self) -> None:
        while True:
            self.refresh_node_metrics()
            await asyncio.sleep(1.0)

    def refresh_node_metrics(self) -> None:
        now = now_utc()
        for node, v in list(self._nodes.items()):
            self.metrics.node_version.labels(node).set(v)
            self.metrics.node_lag.labels(node).set(max(0, self.mirror.version - v))
            since = self.mirror.stale_since(v)
            self.metrics.node_age.labels(node).set(0 if since is None else (now - since).total_seconds())

    # -- Subscribe --------------------------------------------------------------------

    async def Subscribe(
        self, request_iterator: AsyncIterator[hotlist_pb2.SubscribeRequest], context: Context
    ) -> AsyncIterator[hotlist_pb2.SubscribeResponse]:
        try:
            first = await asyncio.wait_for(request_iterator.__anext__(), 30)
        except (StopAsyncIteration, TimeoutError):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "send SubscribeStart (node_id, have_version) first, within 30 s"
            )
        if first.WhichOneof("payload") != "start":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a SubscribeStart")
        node_id = first.start.node_id.strip()
        have = first.start.have_version
        self._nodes[node_id] = have  # the newest stream knows best (a node may have been reset)
        self._streams[node_id] = self._streams.get(node_id, 0) + 1
        self.metrics.subscribers.inc()
        self.refresh_node_metrics()
        acks = asyncio.create_task(self._read_acks(node_id, request_iterator))
        try:
            pos = have
            threshold = self.config.hotlists.snapshot_threshold_changes
            if pos == 0 or pos > self.mirror.version or await self.mirror.changes_since(pos, threshold) > threshold:
                # The mirror holds every entry encoded: a chunk is their concatenation as field 1.
                entries = self.mirror.matcher.serialized()
                pos = self.mirror.version
                yield hotlist_pb2.SubscribeResponse(
                    snapshot_begin=hotlist_pb2.SnapshotBegin(version=pos, entry_count=len(entries))
                )
                size = self.config.hotlists.chunk_size
                for i in range(0, len(entries), size):
                    chunk = hotlist_pb2.SnapshotChunk.FromString(
                        b"".join(b"\x0a" + varint(len(b)) + b for b in entries[i : i + size])
                    )
                    yield hotlist_pb2.SubscribeResponse(snapshot_chunk=chunk)
                yield hotlist_pb2.SubscribeResponse(snapshot_end=hotlist_pb2.SnapshotEnd(version=pos))
            while not acks.done():
                if self.closing.is_set():
                    await context.abort(
                        grpc.StatusCode.UNAVAILABLE,
                        "hub is shutting down; resubscribe (to another hub) with your version",
                    )
                while pos < self.mirror.version:
                    for d in await self.mirror.deltas(pos + 1):
                        yield hotlist_pb2.SubscribeResponse(delta=d)
                    pos += 1
                yield hotlist_pb2.SubscribeResponse(
                    current=hotlist_pb2.VersionNotice(version=pos, server_time=to_timestamp(now_utc()))
                )
                await self.mirror.wait_newer(pos, self.config.hotlists.notice_interval_s, self.closing)
        finally:
            acks.cancel()
            self.metrics.subscribers.dec()
            self._streams[node_id] -= 1
            if self._streams[node_id] <= 0:  # a reconnect may have opened a newer stream already
                del self._streams[node_id]
                self._nodes.pop(node_id, None)
                for g in (self.metrics.node_version, self.metrics.node_lag, self.metrics.node_age):
                    with contextlib.suppress(KeyError):
                        g.remove(node_id)

    async def _read_acks(self, node_id: str, requests: AsyncIterator[hotlist_pb2.SubscribeRequest]) -> None:
        with contextlib.suppress(Exception):
            async for req in requests:
                if req.WhichOneof("payload") != "ack":
                    continue
                v = req.ack.version
                if v < self._nodes.get(node_id, 0) or v > self.mirror.version:
                    continue
                self._nodes[node_id] = v
                self.refresh_node_metrics()
                try:
                    await self.store.record_node_version(node_id, v)
                except Exception as exc:
                    log.warning("recording hot-list version of %s failed: %r", node_id, exc)

    # -- reads ------------------------------------------------------------------------

    async def GetVersion(
        self, request: hotlist_pb2.GetVersionRequest, context: Context
    ) -> hotlist_pb2.GetVersionResponse:
        await self.mirror.catch_up()
        resp = hotlist_pb2.GetVersionResponse(version=self.mirror.version, entry_count=len(self.mirror.matcher))
        t = self.mirror.version_times.get(self.mirror.version)
        if t:
            resp.committed_time.CopyFrom(to_timestamp(t))
        return resp

    async def GetEntry(self, request: hotlist_pb2.GetEntryRequest, context: Context) -> hotlist_pb2.GetEntryResponse:
        e = await self.store.get_entry(request.entry_id)
        if e is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no hot-list entry {request.entry_id!r}; `alpr hotlist list --plate PLATE` finds entry ids",
            )
        return hotlist_pb2.GetEntryResponse(entry=entry_to_proto(e))

    async def ListEntries(
        self, request: hotlist_pb2.ListEntriesRequest, context: Context
    ) -> hotlist_pb2.ListEntriesResponse:
        limit = request.limit or 100
        await self.mirror.catch_up()
        plate = normalize_plate(request.plate)
        source = source_name(request.source) if request.source else None
        category = category_name(request.category) if request.category else None
        matcher = self.mirror.matcher
        pool = matcher.by_plate(plate) if plate else matcher.entries(source, category)
        out: list[HotListEntry] = []
        truncated = False
        for e in pool:
            if (source and e.source != source) or (category and e.category != category):
                continue
            if len(out) >= limit:
                truncated = True
                break
            out.append(e)
        return hotlist_pb2.ListEntriesResponse(
            entries=[entry_to_proto(e) for e in out], version=self.mirror.version, truncated=truncated
        )

    # -- changes ----------------------------------------------------------------------

    async def AddEntry(self, request: hotlist_pb2.AddEntryRequest, context: Context) -> hotlist_pb2.AddEntryResponse:
        plate = normalize_plate(request.plate)
        problem = plate_problem(plate, 1, self.config.ingest.plate_max_length)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem.replace("plate_text", "plate"))
        state = request.state.strip().upper()
        now = now_utc()
        source = source_name(request.source) if request.source else "MANUAL"
        expires = await self._expiry(request, source, now, context)
        v = request.vehicle
        entry = HotListEntry(
            entry_id=f"{source}:{uuid.uuid4()}", plate=plate, state=state, category=category_name(request.category),
            source=source, priority=request.priority or 5, reason=request.reason.strip(),
            entered_by=request.entered_by.strip(), entered_at=now, expires_at=expires,
            source_record_id=request.source_record_id, year=v.year, make=v.make, model=v.model, style=v.style,
            color=v.color, vehicle_type=v.vehicle_type, details=request.details,
        )  # fmt: skip
        version = await self._commit(
            context, [Change(UPSERT, entry.entry_id, entry)], entry.entered_by, f"add {entry.entry_id}: {entry.reason}"
        )
        self.metrics.changes.labels("add").inc()
        return hotlist_pb2.AddEntryResponse(entry=entry_to_proto(entry), version=version)

    async def _expiry(
        self, request: hotlist_pb2.AddEntryRequest, source: str, now: datetime, context: Context
    ) -> datetime | None:
        """A manual entry states when it expires (policy 4.5), in the future and within
        ``hotlists.manual_max_expiry_days``; an entry copied from another source keeps its own."""
        if not request.HasField("expire_time"):
            if source == "MANUAL":
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "expire_time is required for a manual entry (policy 4.5): say until when the plate is "
                    "wanted (`alpr hotlist add ... --expires YYYY-MM-DD`)",
                )
            return None
        expires = from_timestamp(request.expire_time)
        if expires <= now:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"expire_time {expires.isoformat()} is past")
        limit = self.config.hotlists.manual_max_expiry_days
        if source == "MANUAL" and expires > now + timedelta(days=limit):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"expire_time {expires.date().isoformat()} is more than {limit:g} days ahead "
                "(hotlists.manual_max_expiry_days): enter a nearer date and renew the entry if still needed",
            )
        return expires

    async def SubmitLocalEntries(
        self, request: hotlist_pb2.SubmitLocalEntriesRequest, context: Context
    ) -> hotlist_pb2.SubmitLocalEntriesResponse:
        """Entries officers made at a unit, offline too: each becomes the MANUAL entry
        ``MANUAL:<local_id>`` once (a resend after a lost answer finds it and changes nothing),
        entered by the officer named at the unit, with the node that vouches for it (its
        certificate) in the details and the audit."""
        node = request.node_id.strip()
        now = now_utc()
        out: list[HotListEntry] = []
        changes: list[Change] = []
        for i, le in enumerate(request.entries):
            entry_id = f"MANUAL:{le.local_id.lower()}"
            held = await self.store.get_entry(entry_id)
            if held is not None:
                out.append(held)
                continue
            plate = normalize_plate(le.plate)
            problem = plate_problem(plate, 1, self.config.ingest.plate_max_length)
            expires = from_timestamp(le.expire_time)
            limit = now + timedelta(days=self.config.hotlists.manual_max_expiry_days)
            if problem or expires > limit:
                why = problem.replace("plate_text", "plate") if problem else (
                    f"expire_time {expires.date().isoformat()} is more than "
                    f"{self.config.hotlists.manual_max_expiry_days:g} days ahead"
                )  # fmt: skip
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"entries[{i}] ({le.local_id}): {why}")
            entered = from_timestamp(le.entered_time)
            e = HotListEntry(
                entry_id=entry_id, plate=plate, state=le.state.strip().upper(), category=category_name(le.category),
                source="MANUAL", priority=5, reason=le.reason.strip(), entered_by=le.officer_id.strip(),
                entered_at=min(entered, now), expires_at=expires,
                details=f"entered at unit {node} at {entered.isoformat(timespec='seconds')}",
            )  # fmt: skip
            out.append(e)
            if not e.expired(now):  # an entry that lapsed while the unit was offline is not listed
                changes.append(Change(UPSERT, e.entry_id, e))
        version = self.mirror.version
        if changes:
            officers = sorted({c.entry.entered_by for c in changes if c.entry is not None})
            version = await self._commit(
                context, changes, ",".join(officers),
                f"{len(changes)} manual entr{'y' if len(changes) == 1 else 'ies'} from unit {node}: "
                + "; ".join(f"{c.entry_id}: {c.entry.reason}" for c in changes if c.entry is not None),
            )  # fmt: skip
            self.metrics.changes.labels("add").inc(len(changes))
        return hotlist_pb2.SubmitLocalEntriesResponse(entries=[entry_to_proto(e) for e in out], version=version)

    async def RemoveEntry(
        self, request: hotlist_pb2.RemoveEntryRequest, context: Context
    ) -> hotlist_pb2.RemoveEntryResponse:
        if await self.store.get_entry(request.entry_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no hot-list entry {request.entry_id!r} (already removed?)")
        version = await self._commit(
            context,
            [Change(REMOVE, request.entry_id)],
            request.removed_by.strip(),
            f"remove {request.entry_id}: {request.reason.strip()}",
        )
        self.metrics.changes.labels("remove").inc()
        return hotlist_pb2.RemoveEntryResponse(version=version)

    async def _commit(
        self,
        context: Context,
        changes: list[Change],
        by: str,
        description: str,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> int:
        try:
            version = await self.mirror.commit(changes, by, description, progress)
        except Exception as exc:
            log.warning("hot-list commit failed: %r", exc)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"storage unavailable ({type(exc).__name__}); check `alpr hotlist list` and retry "
                "(a change already committed is completed by the hubs)",
            )
        await self.mirror.catch_up()
        # Every hot-list change is audited (policy 3.2, 4.5).
        details = {"version": version, "changes": len(changes), "description": description}
        await self.audit.record_call("hotlist.change", fallback_actor=by, details=details)
        return version

    async def ImportList(
        self, request_iterator: AsyncIterator[hotlist_pb2.ImportListRequest], context: Context
    ) -> AsyncIterator[hotlist_pb2.ImportListResponse]:
        header: hotlist_pb2.ImportHeader | None = None
        parts: list[bytes] = []
        size = 0
        async for req in request_iterator:
            kind = req.WhichOneof("payload")
            if kind == "header":
                header = req.header
            elif kind == "data":
                if header is None:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "send the ImportHeader before the data")
                parts.append(req.data)
                size += len(req.data)
                if size > MAX_IMPORT_BYTES:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "file larger than 1 GiB; split it")
        if header is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no ImportHeader received")
        fmt = hotlist_pb2.ImportFormat.Name(header.format).removeprefix("IMPORT_FORMAT_")
        source = source_name(header.source)
        if source == "MANUAL":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "manual entries cannot be imported (each needs its own reason): use `alpr hotlist add`",
            )
        by = header.imported_by.strip()
        yield _progress("parse", 0, size)
        loop = asyncio.get_running_loop()
        parsed = await loop.run_in_executor(None, parse_file, fmt, b"".join(parts), source, by)
        parts.clear()
        yield _progress("parse", parsed.rows, parsed.rows)
        if parsed.problem:
            await self.audit.record_call(
                "hotlist.import_refused", fallback_actor=by, outcome="refused",
                details={"source": source, "file": header.file_name, "refused": parsed.problem},
            )  # fmt: skip
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{parsed.problem}; nothing imported")
        bad = [hotlist_pb2.BadRow(line=b.line, message=b.message) for b in parsed.bad_rows]
        if bad and not header.skip_bad:
            yield hotlist_pb2.ImportListResponse(
                result=hotlist_pb2.ImportResult(rows=parsed.rows, bad_rows=bad, dry_run=header.dry_run)
            )
            first = "; ".join(f"line {b.line}: {b.message}" for b in parsed.bad_rows[:5])
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{len(bad)} bad row(s), nothing imported ({first}{'; …' if len(bad) > 5 else ''}); "
                "fix the file or import with --skip-bad",
            )
        holder = f"{by} on {self.config.hub_id} ({uuid.uuid4().hex[:8]})"
        if not header.dry_run:
            held = await self.store.lock_import(source, holder)
            if held is not None:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"an import of {source.lower()} is already running ({held}); wait for it to finish and retry",
                )
        refused: list[str] = []
        try:
            async for msg in self._import_delta(context, header, fmt, source, by, parsed, bad, refused):
                yield msg
        finally:
            if not header.dry_run:
                with contextlib.suppress(Exception):
                    await self.store.unlock_import(source, holder)
        if refused:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, refused[0])

    def _mass_removal(self, source: str, held: int, removed: int, entries: int) -> str:
        """Why an import is too destructive to commit without ``allow_mass_removal`` ("" if it is not)."""
        limit = self.config.hotlists.max_removal_share
        if entries == 0:
            return (
                f"the file has no {source.lower()} entries: importing it would remove all {held} current entries"
                " (an empty or failed download?)"
            )
        share = _removal_share(removed, held)
        if share > limit:
            return (
                f"the import would remove {removed} of the {held} current {source.lower()} entries ({share:.0%}), "
                f"more than the {limit:.0%} limit (the file has {entries} entries; truncated?)"
            )
        return ""

    async def _import_delta(
        self,
        context: Context,
        header: hotlist_pb2.ImportHeader,
        fmt: str,
        source: str,
        by: str,
        parsed: ParsedFile,
        bad: list[hotlist_pb2.BadRow],
        refused: list[str],
    ) -> AsyncIterator[hotlist_pb2.ImportListResponse]:
        """The delta and its commit; a refusal (too many removals) is appended to ``refused``
        and nothing is committed (the caller answers it once the import lock is released)."""
        await self.mirror.catch_up()
        matcher = self.mirror.matcher
        current = set(matcher.entry_ids(source))
        changes: list[Change] = []
        added = changed = unchanged = 0
        for e in parsed.entries:
            if e.entry_id not in current:
                added += 1
                changes.append(Change(UPSERT, e.entry_id, e))
                continue
            current.discard(e.entry_id)
            if not matcher.same_content(e):
                changed += 1
                changes.append(Change(UPSERT, e.entry_id, e))
            else:
                unchanged += 1
        removed = len(current)
        changes.extend(Change(REMOVE, eid) for eid in current)
        result = hotlist_pb2.ImportResult(
            rows=parsed.rows, added=added, changed=changed, removed=removed, unchanged=unchanged, bad_rows=bad,
            dry_run=header.dry_run,
        )  # fmt: skip
        yield _progress("delta", len(changes), len(changes))
        held = removed + changed + unchanged
        refusal = self._mass_removal(source, held, removed, len(parsed.entries))
        if refusal and not header.allow_mass_removal and not header.dry_run:
            yield hotlist_pb2.ImportListResponse(result=result)
            await self.audit.record_call(
                "hotlist.import_refused", fallback_actor=by, outcome="refused",
                details={"source": source, "file": header.file_name, "entries": len(parsed.entries), "held": held,
                         "removed": removed, "refused": refusal},
            )  # fmt: skip
            refused.append(
                f"{refusal}; nothing imported. If the source really dropped them, import again with "
                "--allow-mass-removal"
            )
            return
        if changes and not header.dry_run:
            queue: asyncio.Queue[hotlist_pb2.ImportListResponse] = asyncio.Queue()
            last = [0.0]

            def progress(phase: str, done: int, total: int) -> None:
                now = time.monotonic()
                if now - last[0] > 0.5 or done == total:
                    last[0] = now
                    queue.put_nowait(_progress(phase, done, total))

            desc = (
                f"import {fmt} {header.file_name or '-'} as {source}: +{added} ~{changed} -{removed}"
                f" ({len(bad)} bad rows skipped)"
            )
            commit = asyncio.create_task(self._commit(context, changes, by, desc, progress))
            while not commit.done() or not queue.empty():
                with contextlib.suppress(TimeoutError):
                    yield await asyncio.wait_for(queue.get(), 0.25)
            result.version = commit.result()
            for kind, n in (("add", added), ("change", changed), ("remove", removed)):
                self.metrics.changes.labels(kind).inc(n)
        yield hotlist_pb2.ImportListResponse(result=result)


def _removal_share(removed: int, held: int) -> float:
    return removed / held if held else 0.0


def _progress(phase: str, done: int, total: int) -> hotlist_pb2.ImportListResponse:
    return hotlist_pb2.ImportListResponse(progress=hotlist_pb2.ImportProgress(phase=phase, done=done, total=total))
