"""The hot lists' change log and current entries in Cassandra.

Versions: the changes of a version are written first (in chunks keyed by a batch id), then
the version number is claimed with ``INSERT ... IF NOT EXISTS`` on ``hotlist_versions``
after a SERIAL read of the latest version. Whoever loses the race retries with the next
number, so versions are gap-free and monotonic with any number of hub replicas, and a
version visible in the log is always complete. The current-entries table is then updated
``USING TIMESTAMP <version>`` (later versions win whatever order writes land in) and the
version is marked applied; a hub that starts finishes versions left unapplied by a crash.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alpr.v1 import hotlist_pb2
from cassandra import ConsistencyLevel, OperationTimedOut, ReadTimeout, WriteTimeout
from cassandra.cluster import Session
from cassandra.query import BatchStatement, BatchType, BoundStatement

from alpr_common.cassandra import CassandraStore, Row, Statement, Values, connection_busy, insert_cql
from alpr_common.hotlist_model import SOURCES, HotListEntry, entry_from_proto, entry_to_proto
from alpr_common.matching import with_version
from alpr_common.retry import Backoff, retry_async
from alpr_common.timestamps import now_utc, to_timestamp, utc_or_none
from hub.config import HubConfig

log = logging.getLogger(__name__)

LOG = "main"
BUCKETS = 64
UPSERT = hotlist_pb2.CHANGE_KIND_UPSERT
REMOVE = hotlist_pb2.CHANGE_KIND_REMOVE
# A single-partition UNLOGGED batch into hotlist_entries holds up to this many rows and about
# this many bytes: big enough that Cassandra applies many rows per mutation (a million-entry
# import wrote its entries in 104 s with 40-row batches, 71 s with 150), well under Cassandra's
# default batch_size_fail_threshold (50 KiB) whatever the entries carry.
BATCH_ROWS = 200
BATCH_BYTES = 32 * 1024
# Bulk writes of an import wait while the driver's connection is saturated (``ConnectionBusy``:
# its socket buffer is full) and retry client-side timeouts (same values, same USING
# TIMESTAMP: a retry cannot change the outcome). Server-side timeouts are retried by the
# driver's policy (alpr_common.cassandra.TimeoutRetryPolicy).
BULK_WRITE_BACKOFF = Backoff(initial_s=0.01, max_s=0.5)
BULK_WRITE_ATTEMPTS = 200
# Claiming a version: Paxos contention between replicas shows up as timeouts.
CLAIM_BACKOFF = Backoff(initial_s=0.02, max_s=2.0)
CLAIM_ATTEMPTS = 60


def _bulk_write_transient(exc: BaseException) -> bool:
    return connection_busy(exc) or isinstance(exc, OperationTimedOut)


def bucket_of(entry_id: str) -> int:
    return zlib.crc32(entry_id.encode()) % BUCKETS


@dataclass(frozen=True)
class Change:
    kind: int  # UPSERT or REMOVE
    entry_id: str
    entry: HotListEntry | None = None

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


@dataclass(frozen=True)
class VersionInfo:
    version: int
    batch_id: uuid.UUID
    change_count: int
    chunk_count: int
    committed_at: datetime
    applied: bool


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


def sized_batches(
    rows: Iterable[tuple[Statement, Values, int]], max_rows: int = BATCH_ROWS, max_bytes: int = BATCH_BYTES
) -> list[list[tuple[Statement, Values]]]:
    """One partition's statements (with each row's estimated size) cut into batches of at most
    ``max_rows`` rows and about ``max_bytes`` (a row larger than that goes alone)."""
    out: list[list[tuple[Statement, Values]]] = []
    batch: list[tuple[Statement, Values]] = []
    held = 0
    for stmt, values, size in rows:
        if batch and (len(batch) >= max_rows or held + size > max_bytes):
            out.append(batch)
            batch, held = [], 0
        batch.append((stmt, values))
        held += size
    if batch:
        out.append(batch)
    return out


class HotListStore(CassandraStore):
    """Cassandra side of the hot lists, on the hub's one session."""

    def __init__(self, *, session: Session, config: HubConfig) -> None:
        super().__init__(session=session, cassandra=config.cassandra)
        self.config = config
        ks = self.keyspace
        w, r = self.writer, self.reader
        serial = ConsistencyLevel.LOCAL_SERIAL
        self._ins_chunk = w(insert_cql(f"{ks}.hotlist_change_chunks", ("batch_id", "chunk", "changes")))
        self._get_chunk = r(
            f"SELECT changes FROM {ks}.hotlist_change_chunks WHERE batch_id = :batch_id AND chunk = :chunk"
        )
        self._latest_serial = r(
            f"SELECT version, batch_id FROM {ks}.hotlist_versions WHERE log = :log LIMIT 1", consistency=serial
        )
        version_cols = (
            "log", "version", "batch_id", "change_count", "chunk_count", "committed_at", "committed_by",
            "description", "hub_id",
        )  # fmt: skip
        self._claim = w(
            f"INSERT INTO {ks}.hotlist_versions ({', '.join(version_cols)}, applied) "
            f"VALUES ({', '.join(':' + c for c in version_cols)}, false) IF NOT EXISTS"
        )
        self._mark_applied = w(
            f"UPDATE {ks}.hotlist_versions SET applied = true WHERE log = :log AND version = :version"
        )
        cols = "version, batch_id, change_count, chunk_count, committed_at, applied"
        self._versions_after = r(
            f"SELECT {cols} FROM {ks}.hotlist_versions WHERE log = :log AND version > :version "
            "ORDER BY version ASC LIMIT :max_rows"
        )
        self._latest = r(f"SELECT {cols} FROM {ks}.hotlist_versions WHERE log = :log LIMIT :max_rows")
        self._one_version = r(f"SELECT {cols} FROM {ks}.hotlist_versions WHERE log = :log AND version = :version")
        self._put_entry = w(
            f"INSERT INTO {ks}.hotlist_entries (source, bucket, entry_id, entry, plate, version) "
            "VALUES (:source, :bucket, :entry_id, :entry, :plate, :version) USING TIMESTAMP :written"
        )
        self._del_entry = w(
            f"DELETE FROM {ks}.hotlist_entries USING TIMESTAMP :written "
            "WHERE source = :source AND bucket = :bucket AND entry_id = :entry_id"
        )
        where_entry = "WHERE source = :source AND bucket = :bucket AND entry_id = :entry_id"
        self._get_entry = r(f"SELECT entry, version FROM {ks}.hotlist_entries {where_entry}")
        self._scan = r(
            f"SELECT entry, version FROM {ks}.hotlist_entries WHERE source = :source AND bucket = :bucket",
            fetch_size=5000,
        )
        self._node_state = w(insert_cql(f"{ks}.node_hotlist_state", ("node_id", "version", "acked_at", "hub_id")))
        self._lock_take = w(
            f"INSERT INTO {ks}.hotlist_import_locks (source, holder, since) VALUES (:source, :holder, :since) "
            "IF NOT EXISTS USING TTL 3600"
        )
        self._lock_free = w(f"DELETE FROM {ks}.hotlist_import_locks WHERE source = :source IF holder = :holder")
        self._lock_get = r(f"SELECT holder, since FROM {ks}.hotlist_import_locks WHERE source = :source")

    async def _bulk_write(self, query: BoundStatement | BatchStatement) -> None:
        """An idempotent write of a commit, retried while the client is saturated or timed out."""
        await retry_async(
            lambda: self.submit(query),
            transient=_bulk_write_transient,
            backoff=BULK_WRITE_BACKOFF,
            attempts=BULK_WRITE_ATTEMPTS,
            what="hot-list write",
        )

    # -- the log ----------------------------------------------------------------------

    async def latest_versions(self, n: int = 1) -> list[VersionInfo]:
        return [_vinfo(r) for r in await self.run(self._latest, {"log": LOG, "max_rows": n})]

    async def versions_after(self, version: int, limit: int = 100) -> list[VersionInfo]:
        rows = await self.run(self._versions_after, {"log": LOG, "version": version, "max_rows": limit})
        return [_vinfo(r) for r in rows]

    async def version(self, version: int) -> VersionInfo | None:
        row = await self.one(self._one_version, {"log": LOG, "version": version})
        return _vinfo(row) if row is not None else None

    async def read_changes(self, info: VersionInfo) -> list[hotlist_pb2.HotListDelta]:
        """The stored chunks of one version, as deltas stamped with the version."""
        rows = await asyncio.gather(
            *(self.run(self._get_chunk, {"batch_id": info.batch_id, "chunk": i}) for i in range(info.chunk_count))
        )
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
                # The chunk is an alpr.v1.HotListDelta (without version: a column of the log);
                # each entry's own encoding is kept for hotlist_entries.
                delta = hotlist_pb2.HotListDelta()
                for j in range(i * size, min(len(changes), (i + 1) * size)):
                    c = changes[j]
                    change = delta.changes.add(kind=c.kind, entry_id=c.entry_id)
                    if c.entry is not None:
                        entry = entry_to_proto(c.entry)
                        blobs[j] = entry.SerializeToString()
                        change.entry.CopyFrom(entry)
                blob = delta.SerializeToString()
                await self._bulk_write(self._ins_chunk.bind({"batch_id": batch_id, "chunk": i, "changes": blob}))
                done += len(delta.changes)
                if progress:
                    progress("log", done, len(changes))

            return run

        await bounded((chunk_writer(i) for i in range(chunk_count)), max(1, min(4, cfg.write_concurrency)))
        return Prepared(batch_id, changes, blobs, chunk_count)

    async def claim(self, prepared: Prepared, committed_by: str, description: str) -> int:
        """Phase 2: claim the next version number for a written batch (LWT; retried on a lost race).

        Paxos contention between replicas shows up as timeouts: they are retried with
        :data:`CLAIM_BACKOFF`. A claim whose outcome is unknown (timed out) is recognised on the
        next serial read by its batch id, so the same batch never takes two versions.
        """
        now = now_utc()
        claim = {
            "log": LOG, "batch_id": prepared.batch_id, "change_count": len(prepared.changes),
            "chunk_count": prepared.chunk_count, "committed_at": now, "committed_by": committed_by,
            "description": description[:2000], "hub_id": self.config.hub_id,
        }  # fmt: skip
        for attempt in range(CLAIM_ATTEMPTS):
            try:
                rows = await self.run(self._latest_serial, {"log": LOG})
                if rows and rows[0].batch_id == prepared.batch_id:
                    return int(rows[0].version)  # an earlier attempt did win
                version = (rows[0].version if rows else 0) + 1
                res = await self.run(self._claim, {**claim, "version": version})
                if res and res[0].applied:
                    return version
            except (ReadTimeout, WriteTimeout, OperationTimedOut) as exc:
                log.info("hot-list version claim contended (%r); retrying", exc)
            await asyncio.sleep(CLAIM_BACKOFF.delay(attempt))
        raise RuntimeError(
            f"could not claim a hot-list version after {CLAIM_ATTEMPTS} attempts (Cassandra overloaded?)"
        )

    async def finish(
        self, version: int, prepared: Prepared, progress: Callable[[str, int, int], None] | None = None
    ) -> None:
        """Phase 3: bring hotlist_entries in line with the version and mark it applied."""
        await self.apply_entries(version, prepared.changes, prepared.blobs, progress)
        await self.run(self._mark_applied, {"log": LOG, "version": version})

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
        by_part: dict[tuple[str, int], list[tuple[Statement, Values, int]]] = {}
        for c, blob in zip(changes, blobs, strict=True):
            source = c.entry.source if c.entry is not None else c.entry_id.split(":", 1)[0]
            b = bucket_of(c.entry_id)
            stmt: tuple[Statement, Values]
            if c.kind == UPSERT and c.entry is not None:
                put = {"source": source, "bucket": b, "entry_id": c.entry_id, "entry": blob, "plate": c.entry.plate,
                       "version": version, "written": version}  # fmt: skip
                stmt = (self._put_entry, put)
            else:
                stmt = (self._del_entry, {"source": source, "bucket": b, "entry_id": c.entry_id, "written": version})
            size = len(blob or b"") + 2 * len(c.entry_id) + 64  # the row's key, entry and bookkeeping
            by_part.setdefault((source, b), []).append((*stmt, size))
        batches = [b for stmts in by_part.values() for b in sized_batches(stmts)]
        done = 0
        total = len(changes)

        def writer(items: list[tuple[Statement, Values]]) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                nonlocal done
                if len(items) == 1:
                    await self._bulk_write(items[0][0].bind(items[0][1]))
                else:
                    # Same values, same USING TIMESTAMP: the batch may be retried.
                    batch = self.batch(BatchType.UNLOGGED, idempotent=True)
                    for stmt, values in items:
                        batch.add(stmt.bind(values))
                    await self._bulk_write(batch)
                done += len(items)
                if progress and (done == total or done % 5000 < len(items)):
                    progress("entries", done, total)

            return run

        await bounded((writer(b) for b in batches), self.config.hotlists.write_concurrency)

    async def finish_unapplied(self, min_age_s: float = 0.0) -> None:
        """Apply versions a crashed hub claimed but did not finish writing to hotlist_entries."""
        now = now_utc()
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
            await self.run(self._mark_applied, {"log": LOG, "version": info.version})

    # -- entries ----------------------------------------------------------------------

    async def get_entry(self, entry_id: str) -> HotListEntry | None:
        source = entry_id.split(":", 1)[0]
        if source not in SOURCES:
            return None
        rows = await self.run(self._get_entry, {"source": source, "bucket": bucket_of(entry_id), "entry_id": entry_id})
        if not rows:
            return None
        e = entry_from_proto(hotlist_pb2.HotListEntry.FromString(rows[0].entry))
        e.version = rows[0].version
        return e

    def scan_entries(self) -> Iterator[tuple[HotListEntry, bytes]]:
        """Every current entry and its encoding with the version (blocking: iterate in an executor).

        One at a time: a hub loading a million entries never holds them all as objects.
        """
        for source in SOURCES:
            for b in range(BUCKETS):
                for row in self.rows(self._scan, {"source": source, "bucket": b}):
                    e = entry_from_proto(hotlist_pb2.HotListEntry.FromString(row.entry))
                    e.version = row.version
                    yield e, with_version(row.entry, row.version)

    async def lock_import(self, source: str, holder: str) -> str | None:
        """Take the import lock of ``source``; None when taken, else who holds it and since when."""
        rows = await self.run(self._lock_take, {"source": source, "holder": holder, "since": now_utc()})
        if rows and rows[0][0]:
            return None
        cur = await self.run(self._lock_get, {"source": source})
        if not cur:
            return "another import (just finished: retry)"
        return f"{cur[0].holder} since {utc_or_none(cur[0].since).isoformat(timespec='seconds')}"  # type: ignore[union-attr]

    async def unlock_import(self, source: str, holder: str) -> None:
        await self.run(self._lock_free, {"source": source, "holder": holder})

    async def record_node_version(self, node_id: str, version: int) -> None:
        state = {"node_id": node_id, "version": version, "acked_at": now_utc(), "hub_id": self.config.hub_id}
        await self.run(self._node_state, state)


def _vinfo(r: Row) -> VersionInfo:
    return VersionInfo(
        r.version, r.batch_id, r.change_count or 0, r.chunk_count or 0, utc_or_none(r.committed_at) or now_utc(),
        bool(r.applied),
    )  # fmt: skip
