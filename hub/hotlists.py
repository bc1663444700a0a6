"""Hot lists on the hub: the versioned change log in Cassandra, the in-memory mirror every
hub matches reads against, and ``HotListService`` (subscribe, manual entries, import).

Versions: the changes of a version are written first (in chunks keyed by a batch id), then
the version number is claimed with ``INSERT ... IF NOT EXISTS`` on ``hotlist_versions``
after a SERIAL read of the latest version. Whoever loses the race retries with the next
number, so versions are gap-free and monotonic with any number of hub replicas, and a
version visible in the log is always complete. The current-entries table is then updated
``USING TIMESTAMP <version>`` (later versions win whatever order writes land in) and the
version is marked applied; a hub that starts finishes versions left unapplied by a crash.

Every hub tails the log (``hotlists.poll_interval_s``) into a ``Matcher`` and pushes new
versions to its subscribed nodes: nothing lives only in one hub's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from alpr.v1 import hotlist_pb2, hotlist_pb2_grpc
from cassandra import ConsistencyLevel, OperationTimedOut, ReadTimeout, WriteTimeout
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionBusy
from cassandra.query import BatchStatement, BatchType, PreparedStatement
from google.protobuf.internal import encoder as _pb_encoder

from alpr_common.hotlist_model import (
    CATEGORIES,
    SOURCES,
    HotListEntry,
    category_name,
    entry_from_proto,
    entry_to_proto,
    source_name,
)
from alpr_common.matching import Matcher, MatchOptions
from alpr_common.plates import normalize_plate, plate_problem
from alpr_common.timestamps import from_timestamp, to_timestamp, utc_or_none
from hub.config import HubConfig
from hub.hotlist_import import FORMATS, parse_file
from hub.metrics import HotListMetrics
from hub.storage import await_response, prepare

log = logging.getLogger(__name__)
Ctx = grpc.aio.ServicerContext[Any, Any]

LOG = "main"
BUCKETS = 64
UPSERT = hotlist_pb2.CHANGE_KIND_UPSERT
REMOVE = hotlist_pb2.CHANGE_KIND_REMOVE
MAX_IMPORT_BYTES = 1 << 30
BATCH_ROWS = 40  # rows per single-partition UNLOGGED batch into hotlist_entries (~10 KB)


def bucket_of(entry_id: str) -> int:
    return zlib.crc32(entry_id.encode()) % BUCKETS


@dataclass(frozen=True)
class Change:
    kind: int  # UPSERT or REMOVE
    entry_id: str
    entry: HotListEntry | None = None

    def entry_blob(self) -> bytes | None:
        """The entry as stored (alpr.v1.HotListEntry without version: that is a column)."""
        return entry_to_proto(self.entry).SerializeToString() if self.entry is not None else None

    def to_proto(self) -> hotlist_pb2.HotListChange:
        msg = hotlist_pb2.HotListChange(kind=self.kind, entry_id=self.entry_id)  # type: ignore[arg-type]
        if self.entry is not None:
            msg.entry.CopyFrom(entry_to_proto(self.entry))
        return msg


@dataclass(frozen=True)
class Prepared:
    """A batch of changes written to the log, waiting for its version number."""

    batch_id: uuid.UUID
    changes: list[Change]
    blobs: list[bytes | None]
    chunk_count: int


_VarintBytes: Callable[[int], bytes] = _pb_encoder._VarintBytes  # type: ignore[attr-defined]


def _change_bytes(kind: int, entry_id: str, entry_blob: bytes | None) -> bytes:
    """One ``changes`` field of an alpr.v1.HotListDelta, encoded directly (an import has a million)."""
    eid = entry_id.encode()
    body = b"\x08" + _VarintBytes(kind) + b"\x12" + _VarintBytes(len(eid)) + eid
    if entry_blob is not None:
        body += b"\x1a" + _VarintBytes(len(entry_blob)) + entry_blob
    return b"\x12" + _VarintBytes(len(body)) + body


@dataclass(frozen=True)
class VersionInfo:
    version: int
    batch_id: uuid.UUID
    change_count: int
    chunk_count: int
    committed_at: datetime
    applied: bool


def match_options(config: HubConfig) -> MatchOptions:
    return MatchOptions(**config.hotlists.match.model_dump())


async def bounded(aws: Iterable[Callable[[], Awaitable[Any]]], limit: int) -> None:
    """Run coroutine factories with at most ``limit`` in flight; raise the first error."""
    pending: set[asyncio.Future[Any]] = set()
    try:
        for make in aws:
            if len(pending) >= limit:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for d in done:
                    d.result()
            pending.add(asyncio.ensure_future(make()))
        if pending:
            done, pending = await asyncio.wait(pending)
            for d in done:
                d.result()
    finally:
        for p in pending:
            p.cancel()


class HotListStore:
    """Cassandra side of the hot lists, on the hub's one session."""

    def __init__(self, session: Any, config: HubConfig) -> None:
        self.session = session
        self.config = config
        ks = config.cassandra.keyspace
        wcl = getattr(ConsistencyLevel, config.cassandra.write_consistency)
        rcl = getattr(ConsistencyLevel, config.cassandra.read_consistency)
        p = self._prep
        self._ins_chunk = p(f"INSERT INTO {ks}.hotlist_change_chunks (batch_id, chunk, changes) VALUES (?, ?, ?)", wcl)
        self._get_chunk = p(f"SELECT changes FROM {ks}.hotlist_change_chunks WHERE batch_id = ? AND chunk = ?", rcl)
        self._latest_serial = p(f"SELECT version, batch_id FROM {ks}.hotlist_versions WHERE log = ? LIMIT 1", rcl)
        self._latest_serial.consistency_level = ConsistencyLevel.LOCAL_SERIAL
        self._claim = p(
            f"INSERT INTO {ks}.hotlist_versions (log, version, batch_id, change_count, chunk_count, committed_at, "
            "committed_by, description, hub_id, applied) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, false) IF NOT EXISTS",
            wcl,
        )
        self._claim.is_idempotent = False
        self._mark_applied = p(f"UPDATE {ks}.hotlist_versions SET applied = true WHERE log = ? AND version = ?", wcl)
        cols = "version, batch_id, change_count, chunk_count, committed_at, applied"
        self._versions_after = p(
            f"SELECT {cols} FROM {ks}.hotlist_versions WHERE log = ? AND version > ? ORDER BY version ASC LIMIT ?",
            rcl,
        )
        self._latest = p(f"SELECT {cols} FROM {ks}.hotlist_versions WHERE log = ? LIMIT ?", rcl)
        self._one_version = p(f"SELECT {cols} FROM {ks}.hotlist_versions WHERE log = ? AND version = ?", rcl)
        self._put_entry = p(
            f"INSERT INTO {ks}.hotlist_entries (source, bucket, entry_id, entry, plate, version) "
            "VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
            wcl,
        )
        self._del_entry = p(
            f"DELETE FROM {ks}.hotlist_entries USING TIMESTAMP ? WHERE source = ? AND bucket = ? AND entry_id = ?",
            wcl,
        )
        self._get_entry = p(
            f"SELECT entry, version FROM {ks}.hotlist_entries WHERE source = ? AND bucket = ? AND entry_id = ?", rcl
        )
        self._scan = p(f"SELECT entry, version FROM {ks}.hotlist_entries WHERE source = ? AND bucket = ?", rcl)
        self._scan.fetch_size = 5000
        self._node_state = p(
            f"INSERT INTO {ks}.node_hotlist_state (node_id, version, acked_at, hub_id) VALUES (?, ?, ?, ?)", wcl
        )
        self._lock_take = p(
            f"INSERT INTO {ks}.hotlist_import_locks (source, holder, since) VALUES (?, ?, ?) IF NOT EXISTS "
            "USING TTL 3600",
            wcl,
        )
        self._lock_free = p(f"DELETE FROM {ks}.hotlist_import_locks WHERE source = ? IF holder = ?", wcl)
        self._lock_get = p(f"SELECT holder, since FROM {ks}.hotlist_import_locks WHERE source = ?", rcl)
        self._lock_take.is_idempotent = self._lock_free.is_idempotent = False
        self.write_cl = wcl

    def _prep(self, cql: str, cl: int) -> PreparedStatement:
        return prepare(self.session, cql, cl)

    def _exec(self, stmt: Any, values: Any = ()) -> asyncio.Future[Any]:
        return await_response(self.session.execute_async(stmt, values))

    async def _write(self, stmt: Any, values: Any = ()) -> Any:
        """An idempotent bulk write; waits and retries while the driver's connection is
        saturated (``ConnectionBusy``: its socket buffer is full) instead of failing the import."""
        timeouts = 0
        for attempt in range(200):
            try:
                return await self._exec(stmt, values)
            except NoHostAvailable as e:
                if not e.errors or not all(isinstance(x, ConnectionBusy) for x in e.errors.values()):
                    raise
                await asyncio.sleep(min(0.5, 0.01 * (attempt + 1)))
            except (WriteTimeout, OperationTimedOut):
                # Same values, same USING TIMESTAMP: a retry cannot change the outcome.
                timeouts += 1
                if timeouts > 5:
                    raise
                await asyncio.sleep(0.2 * timeouts)
        return await self._exec(stmt, values)

    # -- the log ----------------------------------------------------------------------

    async def latest_versions(self, n: int = 1) -> list[VersionInfo]:
        return [_vinfo(r) for r in await self._exec(self._latest, (LOG, n))]

    async def current_version(self) -> int:
        rows = await self.latest_versions(1)
        return rows[0].version if rows else 0

    async def versions_after(self, version: int, limit: int = 100) -> list[VersionInfo]:
        return [_vinfo(r) for r in await self._exec(self._versions_after, (LOG, version, limit))]

    async def version(self, version: int) -> VersionInfo | None:
        rows = await self._exec(self._one_version, (LOG, version))
        return _vinfo(rows[0]) if rows else None

    async def read_changes(self, info: VersionInfo) -> list[hotlist_pb2.HotListDelta]:
        """The stored chunks of one version, as deltas stamped with the version."""
        rows = await asyncio.gather(*(self._exec(self._get_chunk, (info.batch_id, i)) for i in range(info.chunk_count)))
        out = []
        for i, r in enumerate(rows):
            if not r:
                raise RuntimeError(f"hot-list version {info.version}: change chunk {i} is missing")
            d = hotlist_pb2.HotListDelta.FromString(r[0].changes)
            d.version = info.version
            d.more = i < info.chunk_count - 1
            d.committed_time.CopyFrom(to_timestamp(info.committed_at))
            out.append(d)
        return out

    async def write_changes(
        self, changes: list[Change], progress: Callable[[str, int, int], None] | None = None
    ) -> Prepared:
        """Phase 1 of a commit: store the changes in chunks under a new batch id."""
        cfg = self.config.hotlists
        batch_id = uuid.uuid4()
        size = cfg.chunk_size
        blobs: list[bytes | None] = [None] * len(changes)
        chunk_count = (len(changes) + size - 1) // size
        done = 0

        def chunk_writer(i: int) -> Callable[[], Awaitable[Any]]:
            async def run() -> None:
                nonlocal done
                part = []
                for j in range(i * size, min(len(changes), (i + 1) * size)):
                    c = changes[j]
                    blobs[j] = b = c.entry_blob()
                    part.append(_change_bytes(c.kind, c.entry_id, b))
                await self._write(self._ins_chunk, (batch_id, i, b"".join(part)))
                done += len(part)
                if progress:
                    progress("log", done, len(changes))

            return run

        await bounded((chunk_writer(i) for i in range(chunk_count)), max(1, min(4, cfg.write_concurrency)))
        return Prepared(batch_id, changes, blobs, chunk_count)

    async def claim(self, prepared: Prepared, committed_by: str, description: str) -> int:
        """Phase 2: claim the next version number for a written batch (LWT; retried on a lost race).

        Paxos contention between replicas shows up as timeouts: they are retried with jittered
        backoff. A claim whose outcome is unknown (timed out) is recognised on the next serial
        read by its batch id, so the same batch never takes two versions.
        """
        now = datetime.now(UTC)
        for attempt in range(60):
            try:
                rows = await self._exec(self._latest_serial, (LOG,))
                if rows and rows[0].batch_id == prepared.batch_id:
                    return int(rows[0].version)  # an earlier attempt did win
                version = (rows[0].version if rows else 0) + 1
                res = await self._exec(
                    self._claim,
                    (LOG, version, prepared.batch_id, len(prepared.changes), prepared.chunk_count, now,
                     committed_by, description[:2000], self.config.hub_id),
                )  # fmt: skip
                if res and res[0][0]:
                    return version
            except (ReadTimeout, WriteTimeout, OperationTimedOut) as exc:
                log.info("hot-list version claim contended (%r); retrying", exc)
            await asyncio.sleep(random.uniform(0, min(2.0, 0.02 * 2 ** min(attempt, 7))))
        raise RuntimeError("could not claim a hot-list version after 60 attempts (Cassandra overloaded?)")

    async def finish(
        self, version: int, prepared: Prepared, progress: Callable[[str, int, int], None] | None = None
    ) -> None:
        """Phase 3: bring hotlist_entries in line with the version and mark it applied."""
        await self.apply_entries(version, prepared.changes, prepared.blobs, progress)
        await self._exec(self._mark_applied, (LOG, version))

    async def commit(
        self,
        changes: list[Change],
        committed_by: str,
        description: str,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> int:
        """Write ``changes`` as one new version and return its number."""
        prepared = await self.write_changes(changes, progress)
        version = await self.claim(prepared, committed_by, description)
        await self.finish(version, prepared, progress)
        return version

    async def apply_entries(
        self,
        version: int,
        changes: list[Change],
        blobs: list[bytes | None],
        progress: Callable[[str, int, int], None] | None = None,
    ) -> None:
        """Bring hotlist_entries in line with one version (idempotent)."""
        by_part: dict[tuple[str, int], list[tuple[PreparedStatement, tuple[Any, ...]]]] = {}
        for c, blob in zip(changes, blobs, strict=True):
            source = c.entry.source if c.entry is not None else c.entry_id.split(":", 1)[0]
            b = bucket_of(c.entry_id)
            stmt: tuple[PreparedStatement, tuple[Any, ...]]
            if c.kind == UPSERT and c.entry is not None:
                stmt = (self._put_entry, (source, b, c.entry_id, blob, c.entry.plate, version, version))
            else:
                stmt = (self._del_entry, (version, source, b, c.entry_id))
            by_part.setdefault((source, b), []).append(stmt)
        batches: list[list[tuple[PreparedStatement, tuple[Any, ...]]]] = []
        for stmts in by_part.values():
            batches.extend(stmts[i : i + BATCH_ROWS] for i in range(0, len(stmts), BATCH_ROWS))
        done = 0
        total = len(changes)

        def writer(items: list[tuple[PreparedStatement, tuple[Any, ...]]]) -> Callable[[], Awaitable[Any]]:
            async def run() -> None:
                nonlocal done
                if len(items) == 1:
                    await self._write(items[0][0], items[0][1])
                else:
                    batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=self.write_cl)
                    for stmt, values in items:
                        batch.add(stmt, values)
                    await self._write(batch)
                done += len(items)
                if progress and (done == total or done % 5000 < len(items)):
                    progress("entries", done, total)

            return run

        await bounded((writer(b) for b in batches), self.config.hotlists.write_concurrency)

    async def finish_unapplied(self, min_age_s: float = 0.0) -> None:
        """Apply versions a crashed hub claimed but did not finish writing to hotlist_entries."""
        now = datetime.now(UTC)
        for info in sorted(await self.latest_versions(50), key=lambda i: i.version):
            if info.applied or (now - info.committed_at).total_seconds() < min_age_s:
                continue
            log.warning("hot-list version %d was not fully applied; applying it now", info.version)
            protos = [c for d in await self.read_changes(info) for c in d.changes]
            changes = [
                Change(c.kind, c.entry_id, entry_from_proto(c.entry) if c.kind == UPSERT else None) for c in protos
            ]
            blobs = [c.entry.SerializeToString() if c.kind == UPSERT else None for c in protos]
            await self.apply_entries(info.version, changes, blobs)
            await self._exec(self._mark_applied, (LOG, info.version))

    # -- entries ----------------------------------------------------------------------

    async def get_entry(self, entry_id: str) -> HotListEntry | None:
        source = entry_id.split(":", 1)[0]
        if source not in SOURCES:
            return None
        rows = await self._exec(self._get_entry, (source, bucket_of(entry_id), entry_id))
        if not rows:
            return None
        e = entry_from_proto(hotlist_pb2.HotListEntry.FromString(rows[0].entry))
        e.version = rows[0].version
        return e

    def scan_entries(self) -> list[HotListEntry]:
        """Every current entry (blocking: run in an executor)."""
        out: list[HotListEntry] = []
        for source in SOURCES:
            for b in range(BUCKETS):
                for row in self.session.execute(self._scan, (source, b)):
                    e = entry_from_proto(hotlist_pb2.HotListEntry.FromString(row.entry))
                    e.version = row.version
                    out.append(e)
        return out

    async def lock_import(self, source: str, holder: str) -> str | None:
        """Take the import lock of ``source``; None when taken, else who holds it and since when."""
        rows = await self._exec(self._lock_take, (source, holder, datetime.now(UTC)))
        if rows and rows[0][0]:
            return None
        cur = await self._exec(self._lock_get, (source,))
        if not cur:
            return "another import (just finished: retry)"
        return f"{cur[0].holder} since {utc_or_none(cur[0].since).isoformat(timespec='seconds')}"  # type: ignore[union-attr]

    async def unlock_import(self, source: str, holder: str) -> None:
        await self._exec(self._lock_free, (source, holder))

    async def record_node_version(self, node_id: str, version: int) -> None:
        await self._exec(self._node_state, (node_id, version, datetime.now(UTC), self.config.hub_id))


def _vinfo(r: Any) -> VersionInfo:
    return VersionInfo(
        r.version, r.batch_id, r.change_count or 0, r.chunk_count or 0, utc_or_none(r.committed_at) or datetime.now(UTC),
        bool(r.applied),
    )  # fmt: skip


class HotListMirror:
    """This hub's in-memory copy of the list, kept current by tailing the change log."""

    CACHE_VERSIONS = 64

    def __init__(self, store: HotListStore, config: HubConfig, metrics: HotListMetrics) -> None:
        self.store = store
        self.config = config
        self.metrics = metrics
        self.matcher = Matcher(match_options(config))
        self.version = 0
        self.version_times: dict[int, datetime] = {}
        self._cache: OrderedDict[int, list[hotlist_pb2.HotListDelta]] = OrderedDict()
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def load(self) -> None:
        """Load the current list, then catch up with the log (call before serving)."""
        await self.store.finish_unapplied()
        latest = await self.store.latest_versions(1)
        base = latest[0].version if latest else 0
        loop = asyncio.get_running_loop()
        entries = await loop.run_in_executor(None, self.store.scan_entries)

        def build() -> None:
            for e in entries:
                self.matcher.upsert(e)

        await loop.run_in_executor(None, build)
        self.version = base
        if latest:
            self.version_times[base] = latest[0].committed_at
        await self.catch_up()
        self._update_metrics()
        log.info("hot list loaded: version %d, %d entries", self.version, len(self.matcher))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        last_repair = time.monotonic()
        while True:
            try:
                await self.catch_up()
                if time.monotonic() - last_repair > 300:
                    last_repair = time.monotonic()
                    # A version left half-applied by a hub that crashed mid-commit (10+ min old).
                    await self.store.finish_unapplied(min_age_s=600)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("hot-list log poll failed: %r", exc)
            await asyncio.sleep(self.config.hotlists.poll_interval_s)

    async def catch_up(self) -> None:
        """Apply every complete version after ours, in order."""
        async with self._lock:
            await self._catch_up_locked()

    async def _catch_up_locked(self) -> None:
        while True:
            infos = await self.store.versions_after(self.version, 50)
            if not infos:
                return
            for info in infos:
                if info.version != self.version + 1:
                    return  # not visible yet; next poll
                deltas = await self.store.read_changes(info)
                n = 0
                for d in deltas:
                    for c in d.changes:
                        if c.kind == UPSERT:
                            e = entry_from_proto(c.entry)
                            e.version = info.version
                            self.matcher.upsert(e)
                        else:
                            self.matcher.remove(c.entry_id)
                        n += 1
                        if n % 5000 == 0:
                            await asyncio.sleep(0)
                self._advance(info.version, info.committed_at, deltas)
            if len(infos) < 50:
                return

    def _advance(self, version: int, committed_at: datetime, deltas: list[hotlist_pb2.HotListDelta] | None) -> None:
        self.version = version
        self.version_times[version] = committed_at
        if deltas is not None:
            self._cache[version] = deltas
            while len(self._cache) > self.CACHE_VERSIONS:
                self._cache.popitem(last=False)
        self._update_metrics()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def commit(
        self,
        changes: list[Change],
        committed_by: str,
        description: str,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> int:
        """Commit a change set through the store, applying it to this mirror from memory.

        The version is claimed while holding the mirror's lock, right after catching up, so
        that (unless another hub committed in between) the mirror applies the changes it
        already holds instead of reading a million of them back from Cassandra.
        """
        prepared = await self.store.write_changes(changes, progress)
        async with self._lock:
            await self._catch_up_locked()
            version = await self.store.claim(prepared, committed_by, description)
            # Cassandra writes the entries while this process updates its matcher (2 cores, both busy).
            finishing = asyncio.create_task(self.store.finish(version, prepared, progress))
            if version == self.version + 1:
                for i, c in enumerate(changes):
                    if c.kind == UPSERT and c.entry is not None:
                        c.entry.version = version
                        self.matcher.upsert(c.entry)
                    else:
                        self.matcher.remove(c.entry_id)
                    if i % 5000 == 4999:
                        await asyncio.sleep(0)
                now = datetime.now(UTC)
                deltas = None
                if len(changes) <= self.config.hotlists.chunk_size:
                    d = hotlist_pb2.HotListDelta(version=version, changes=[c.to_proto() for c in changes])
                    d.committed_time.CopyFrom(to_timestamp(now))
                    deltas = [d]
                self._advance(version, now, deltas)
        await finishing
        return version

    def _update_metrics(self) -> None:
        self.metrics.version.set(self.version)
        self.metrics.entries.set(len(self.matcher))

    async def wait_newer(self, version: int, timeout: float, closing: asyncio.Event | None = None) -> None:
        """Return when a version newer than ``version`` is loaded, ``closing`` is set, or after ``timeout``."""
        if self.version > version:
            return
        waits = [asyncio.ensure_future(self._changed.wait())]
        if closing is not None:
            waits.append(asyncio.ensure_future(closing.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def deltas(self, version: int) -> list[hotlist_pb2.HotListDelta]:
        cached = self._cache.get(version)
        if cached is not None:
            return cached
        info = await self.store.version(version)
        if info is None:
            raise RuntimeError(f"hot-list version {version} is not in the log")
        return await self.store.read_changes(info)

    async def changes_since(self, version: int, limit: int) -> int:
        """Changes a node holding ``version`` lacks, counted up to ``limit``+1."""
        total = 0
        pos = version
        while pos < self.version and total <= limit:
            infos = await self.store.versions_after(pos, 500)
            if not infos:
                break
            total += sum(i.change_count for i in infos)
            pos = infos[-1].version
        return total

    def stale_since(self, version: int) -> datetime | None:
        """When a node holding ``version`` became out of date (the next version's commit time)."""
        if version >= self.version:
            return None
        t = self.version_times.get(version + 1)
        if t is None:
            t = min(self.version_times.values(), default=datetime.now(UTC))
        return t


def _abort_msg(field: str, msg: str) -> str:
    return f"{field}: {msg}"


class HotListServicer(hotlist_pb2_grpc.HotListServiceServicer):
    def __init__(self, store: HotListStore, mirror: HotListMirror, config: HubConfig, metrics: HotListMetrics) -> None:
        self.store = store
        self.mirror = mirror
        self.config = config
        self.metrics = metrics
        self._nodes: dict[str, int] = {}  # subscribed node -> acked version
        self._streams: dict[str, int] = {}  # node -> how many of its Subscribe streams are open here
        self.audit: Any = None  # issue 7: hub/audit.py AuditLog, set by create_server
        self._metrics_task: asyncio.Task[None] | None = None
        self.closing = asyncio.Event()

    def start(self) -> None:
        self._metrics_task = asyncio.create_task(self._metrics_loop())

    async def stop(self) -> None:
        self.closing.set()
        if self._metrics_task:
            self._metrics_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._metrics_task

    async def _metrics_loop(self) -> None:
        while True:
            self.refresh_node_metrics()
            await asyncio.sleep(1.0)

    def refresh_node_metrics(self) -> None:
        now = datetime.now(UTC)
        for node, v in list(self._nodes.items()):
            self.metrics.node_version.labels(node).set(v)
            self.metrics.node_lag.labels(node).set(max(0, self.mirror.version - v))
            since = self.mirror.stale_since(v)
            self.metrics.node_age.labels(node).set(0 if since is None else (now - since).total_seconds())

    # -- Subscribe --------------------------------------------------------------------

    async def Subscribe(
        self, request_iterator: AsyncIterator[hotlist_pb2.SubscribeRequest], context: Ctx
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
        if not node_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "start.node_id is empty: send the node's id")
        if have < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"start.have_version {have} is negative")
        self._nodes[node_id] = have  # the newest stream knows best (a node may have been reset)
        self._streams[node_id] = self._streams.get(node_id, 0) + 1
        self.metrics.subscribers.inc()
        self.refresh_node_metrics()
        acks = asyncio.create_task(self._read_acks(node_id, request_iterator))
        try:
            pos = have
            threshold = self.config.hotlists.snapshot_threshold_changes
            if pos == 0 or pos > self.mirror.version or await self.mirror.changes_since(pos, threshold) > threshold:
                entries = list(self.mirror.matcher.entries.values())
                pos = self.mirror.version
                yield hotlist_pb2.SubscribeResponse(
                    snapshot_begin=hotlist_pb2.SnapshotBegin(version=pos, entry_count=len(entries))
                )
                size = self.config.hotlists.chunk_size
                for i in range(0, len(entries), size):
                    chunk = hotlist_pb2.SnapshotChunk(entries=[entry_to_proto(e) for e in entries[i : i + size]])
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
                    current=hotlist_pb2.VersionNotice(version=pos, server_time=to_timestamp(datetime.now(UTC)))
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

    async def GetVersion(self, request: hotlist_pb2.GetVersionRequest, context: Ctx) -> hotlist_pb2.GetVersionResponse:
        await self.mirror.catch_up()
        resp = hotlist_pb2.GetVersionResponse(version=self.mirror.version, entry_count=len(self.mirror.matcher))
        t = self.mirror.version_times.get(self.mirror.version)
        if t:
            resp.committed_time.CopyFrom(to_timestamp(t))
        return resp

    async def GetEntry(self, request: hotlist_pb2.GetEntryRequest, context: Ctx) -> hotlist_pb2.GetEntryResponse:
        if not request.entry_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "entry_id is empty")
        e = await self.store.get_entry(request.entry_id)
        if e is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no hot-list entry {request.entry_id!r}; `alpr hotlist list --plate PLATE` finds entry ids",
            )
        return hotlist_pb2.GetEntryResponse(entry=entry_to_proto(e))

    async def ListEntries(
        self, request: hotlist_pb2.ListEntriesRequest, context: Ctx
    ) -> hotlist_pb2.ListEntriesResponse:
        limit = request.limit or 100
        if not 1 <= limit <= 10_000:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"limit {limit} is outside 1-10000")
        await self.mirror.catch_up()
        plate = normalize_plate(request.plate)
        source = source_name(request.source) if request.source else None
        category = category_name(request.category) if request.category else None
        pool = self.mirror.matcher.by_plate(plate) if plate else self.mirror.matcher.entries.values()
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

    async def AddEntry(self, request: hotlist_pb2.AddEntryRequest, context: Ctx) -> hotlist_pb2.AddEntryResponse:
        plate = normalize_plate(request.plate)
        problem = plate_problem(plate, 1, self.config.ingest.plate_max_length)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem.replace("plate_text", "plate"))
        state = request.state.strip().upper()
        if state and not (len(state) == 2 and state.isalpha()):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"state {request.state!r} is not a 2-letter code (or empty for any)"
            )
        if not request.category:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"category is required: one of {', '.join(c.lower() for c in CATEGORIES)}",
            )
        if not request.reason.strip():
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "reason is required for a manual entry (policy 4.5): say why"
            )
        if not request.entered_by.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "entered_by is required: the officer's id")
        if not 0 <= request.priority <= 9:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"priority {request.priority} is outside 1-9")
        now = datetime.now(UTC)
        if request.HasField("expire_time"):
            expires = from_timestamp(request.expire_time)
            if expires <= now:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"expire_time {expires.isoformat()} is past")
        else:
            expires = now + timedelta(days=self.config.hotlists.manual_default_expiry_days)
        source = source_name(request.source) if request.source else "MANUAL"
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

    async def RemoveEntry(
        self, request: hotlist_pb2.RemoveEntryRequest, context: Ctx
    ) -> hotlist_pb2.RemoveEntryResponse:
        if not request.entry_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "entry_id is empty")
        if not request.reason.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "reason is required to remove an entry: say why")
        if not request.removed_by.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "removed_by is required: the officer's id")
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
        context: Ctx,
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
        if self.audit is not None:  # issue 7: every hot-list change is audited
            details = {"version": version, "changes": len(changes), "description": description}
            await self.audit.record_call("hotlist.change", fallback_actor=by, details=details)
        return version

    async def ImportList(
        self, request_iterator: AsyncIterator[hotlist_pb2.ImportListRequest], context: Ctx
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
        if fmt not in FORMATS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"header.format is required: one of {', '.join(FORMATS)}"
            )
        if not header.source:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "header.source is required (the list this file is)")
        source = source_name(header.source)
        if source == "MANUAL":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "manual entries cannot be imported (each needs its own reason): use `alpr hotlist add`",
            )
        by = header.imported_by.strip()
        if not by:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "header.imported_by is required: who imports")
        yield _progress("parse", 0, size)
        loop = asyncio.get_running_loop()
        parsed = await loop.run_in_executor(None, parse_file, fmt, b"".join(parts), source, by)
        parts.clear()
        yield _progress("parse", parsed.rows, parsed.rows)
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
        try:
            async for msg in self._import_delta(context, header, fmt, source, by, parsed, bad):
                yield msg
        finally:
            if not header.dry_run:
                with contextlib.suppress(Exception):
                    await self.store.unlock_import(source, holder)

    async def _import_delta(
        self,
        context: Ctx,
        header: hotlist_pb2.ImportHeader,
        fmt: str,
        source: str,
        by: str,
        parsed: Any,
        bad: list[hotlist_pb2.BadRow],
    ) -> AsyncIterator[hotlist_pb2.ImportListResponse]:
        await self.mirror.catch_up()
        current = {e.entry_id: e for e in self.mirror.matcher.entries.values() if e.source == source}
        changes: list[Change] = []
        added = changed = unchanged = 0
        for e in parsed.entries:
            old = current.pop(e.entry_id, None)
            if old is None:
                added += 1
                changes.append(Change(UPSERT, e.entry_id, e))
            elif old.content() != e.content():
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


def _progress(phase: str, done: int, total: int) -> hotlist_pb2.ImportListResponse:
    return hotlist_pb2.ImportListResponse(progress=hotlist_pb2.ImportProgress(phase=phase, done=done, total=total))
