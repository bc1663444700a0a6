"""The node's copy of the hot list: kept on disk in SQLite, synchronised with
``HotListService.Subscribe``, matched locally (offline too) with the shared matcher.

``HotListSync`` runs one Subscribe stream at a time (failing over between hub targets
with backoff): it sends the version it holds, applies the snapshot or deltas it gets, each
version in one SQLite transaction, and acknowledges every version it applied. The node
runtime calls ``match(plate, state)`` for in-car alerts and reads ``status()`` for its
heartbeat (hot-list version and sync time, policy 4.1).

    sync = HotListSync(state_dir / "hotlist.sqlite", ["hub:50051"], node_id="car-12")
    sync.start()                  # background thread
    sync.match("ABC1234", "IL")   # -> list[alpr_common.matching.Match]
    sync.stop()
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from alpr.v1 import hotlist_pb2, hotlist_pb2_grpc

from alpr_common.hotlist_model import HotListEntry, entry_from_proto
from alpr_common.matching import Match, Matcher, MatchOptions
from alpr_common.retry import Backoff

log = logging.getLogger(__name__)


class LocalHotList:
    """The hot list on disk (SQLite, WAL), written by the sync thread; and the outbox of manual
    entries officers made at the unit (``alpr-node hotlist-add``, another process), which are
    matched at once and stay matched until the hub has them."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS entries (entry_id TEXT PRIMARY KEY, data TEXT NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS local_outbox (entry_id TEXT PRIMARY KEY, data TEXT NOT NULL, submission BLOB NOT NULL)"
        )
        self._lock = threading.Lock()

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @property
    def version(self) -> int:
        return int(self._meta("version") or 0)

    @property
    def synced_at(self) -> datetime | None:
        """When the hub last confirmed this copy was current."""
        v = self._meta("synced_at")
        return datetime.fromisoformat(v) if v else None

    def mark_synced(self, when: datetime) -> None:
        with self._lock:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('synced_at', ?)", (when.isoformat(),))

    def entries(self) -> list[HotListEntry]:
        return [HotListEntry.from_dict(json.loads(d)) for (d,) in self.db.execute("SELECT data FROM entries")]

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM entries").fetchone()[0])

    # -- manual entries made at the unit ------------------------------------------------

    def add_local(self, entry: HotListEntry, submission: hotlist_pb2.LocalEntry) -> None:
        """An officer's entry: matched from now on (also offline), handed to the hub when it can be."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                data = json.dumps(entry.to_dict())
                self.db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?)", (entry.entry_id, data))
                self.db.execute("INSERT OR REPLACE INTO local_outbox VALUES (?, ?, ?)",
                                (entry.entry_id, data, submission.SerializeToString()))  # fmt: skip
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def outbox(self) -> list[tuple[HotListEntry, hotlist_pb2.LocalEntry]]:
        """Entries made at the unit that the hub has not confirmed yet, oldest first."""
        rows = self.db.execute("SELECT data, submission FROM local_outbox ORDER BY rowid").fetchall()
        return [(HotListEntry.from_dict(json.loads(d)), hotlist_pb2.LocalEntry.FromString(s)) for d, s in rows]

    def submitted(self, entry_ids: list[str]) -> None:
        """The hub holds these: they come back with its versions like any entry."""
        with self._lock:
            self.db.executemany("DELETE FROM local_outbox WHERE entry_id = ?", ((i,) for i in entry_ids))

    def replace_all(self, entries: list[HotListEntry], version: int) -> None:
        """A snapshot: the whole list at ``version``, in one transaction."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute("DELETE FROM entries")
                self.db.executemany(
                    "INSERT OR REPLACE INTO entries VALUES (?, ?)",
                    ((e.entry_id, json.dumps(e.to_dict())) for e in entries),
                )
                # entries made at the unit that the hub does not hold yet stay
                self.db.execute("INSERT OR IGNORE INTO entries SELECT entry_id, data FROM local_outbox")
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(version),))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def apply(self, upserts: list[HotListEntry], removals: list[str], version: int | None) -> None:
        """One delta (chunk); ``version`` is recorded when the version is complete."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany(
                    "INSERT OR REPLACE INTO entries VALUES (?, ?)",
                    ((e.entry_id, json.dumps(e.to_dict())) for e in upserts),
                )
                self.db.executemany("DELETE FROM entries WHERE entry_id = ?", ((r,) for r in removals))
                if version is not None:
                    self.db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(version),))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self.db.close()


@dataclass
class SyncStatus:
    version: int  # what the node holds
    hub_version: int | None  # the hub's current version when last heard, None if never
    entries: int
    synced_at: datetime | None  # last time the hub confirmed the node was current
    connected: bool
    last_error: str | None

    @property
    def current(self) -> bool:
        return self.hub_version is not None and self.version == self.hub_version


class HotListSync:
    """Keeps a ``LocalHotList`` current from the hub and matches reads against it."""

    def __init__(
        self,
        path: Path,
        targets: list[str],
        node_id: str,
        *,
        options: MatchOptions | None = None,
        backoff: Backoff | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: list[tuple[str, str]] | None = None,
        outbox_interval_s: float = 2.0,
    ) -> None:
        """``backoff`` spaces the reconnections; ``credentials`` make the channel mutual TLS."""
        if not targets:
            raise ValueError("HotListSync needs at least one hub target")
        self.local = LocalHotList(path)
        self.targets = targets
        self.node_id = node_id
        self.metadata: tuple[tuple[str, str], ...] = tuple(metadata or ())
        self.credentials = credentials
        self.backoff = backoff or Backoff()
        self._lock = threading.Lock()
        self.matcher = Matcher(options, self.local.entries())
        self.hub_version: int | None = None
        self.connected = False
        self.last_error: str | None = None
        self._current = threading.Event()  # set while the node holds the hub's version
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._call: Any = None  # the live Subscribe call (cancel() ends it)
        self.outbox_interval_s = outbox_interval_s
        self._outbox_thread: threading.Thread | None = None
        self.local_pending = 0  # entries made at the unit the hub does not hold yet

    # -- for the node runtime -----------------------------------------------------------

    def match(self, plate: str, state: str = "") -> list[Match]:
        with self._lock:
            return self.matcher.match(plate, state)

    def status(self) -> SyncStatus:
        return SyncStatus(
            self.local.version, self.hub_version, len(self.matcher), self.local.synced_at, self.connected,
            self.last_error,
        )  # fmt: skip

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hotlist-sync", daemon=True)
        self._thread.start()
        self._outbox_thread = threading.Thread(target=self._outbox_loop, name="hotlist-outbox", daemon=True)
        self._outbox_thread.start()

    def stop(self) -> None:
        self._stop.set()
        call = self._call
        if call is not None:
            call.cancel()
        if self._thread is not None:
            self._thread.join(10)
        if self._outbox_thread is not None:
            self._outbox_thread.join(10)
        self.local.close()

    def wait_current(self, timeout: float) -> bool:
        """Block until the node holds the hub's current version (True) or ``timeout`` passes."""
        return self._current.wait(timeout)

    def sync_once(self, timeout: float) -> SyncStatus:
        """Connect, catch up, return once current or after ``timeout`` (for shift start)."""
        self.start()
        self.wait_current(timeout)
        status = self.status()
        self._stop.set()
        if self._call is not None:
            self._call.cancel()
        if self._thread is not None:
            self._thread.join(10)
        return status

    # -- entries made at the unit --------------------------------------------------------

    def _outbox_loop(self) -> None:
        """Match the officers' own entries as soon as they are made; hand them to the hub
        (SubmitLocalEntries) whenever one answers; keep them until one has."""
        while not self._stop.is_set():
            try:
                self.submit_local_entries()
            except Exception:
                log.exception("manual entries made at the unit: handing over failed")
            self._stop.wait(self.outbox_interval_s)

    def submit_local_entries(self) -> int:
        """One pass over the outbox; how many entries the hub confirmed."""
        pending = self.local.outbox()
        self.local_pending = len(pending)
        if not pending:
            return 0
        with self._lock:
            for e, _ in pending:
                self.matcher.upsert(e)
        request = hotlist_pb2.SubmitLocalEntriesRequest(node_id=self.node_id, entries=[s for _, s in pending[:100]])
        for target in self.targets:
            creds = self.credentials
            try:
                with grpc.secure_channel(target, creds) if creds is not None else grpc.insecure_channel(target) as ch:
                    resp = hotlist_pb2_grpc.HotListServiceStub(ch).SubmitLocalEntries(
                        request, timeout=10, metadata=self.metadata
                    )
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    log.error("the hub refused a manual entry made at the unit: %s", e.details())
                else:
                    log.info("manual entries made at the unit wait for a hub (%s: %s)", target, e.code().name)
                continue
            done = [e.entry_id for e in resp.entries]
            self.local.submitted(done)
            self.local_pending = len(pending) - len(done)
            log.info("handed %d manual entr%s made at the unit to the hub (version %d)", len(done),
                     "y" if len(done) == 1 else "ies", resp.version)  # fmt: skip
            return len(done)
        return 0

    # -- the stream ---------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        i = 0
        while not self._stop.is_set():
            target = self.targets[i % len(self.targets)]
            try:
                self._session(target)
                attempt = 0
            except grpc.RpcError as e:
                if self._stop.is_set():
                    break
                self.last_error = f"{target}: {e.code().name}: {e.details()}"
                log.warning("hot-list subscription to %s failed: %s", target, self.last_error)
            except Exception as e:
                self.last_error = f"{target}: {e!r}"
                log.exception("hot-list subscription to %s failed", target)
            self.connected = False
            self._current.clear()
            i += 1
            self._stop.wait(self.backoff.delay(attempt))
            attempt += 1

    def _session(self, target: str) -> None:
        acks: queue.Queue[hotlist_pb2.SubscribeRequest | None] = queue.Queue()
        acks.put(
            hotlist_pb2.SubscribeRequest(
                start=hotlist_pb2.SubscribeStart(node_id=self.node_id, have_version=self.local.version)
            )
        )

        def requests() -> Iterator[hotlist_pb2.SubscribeRequest]:
            while (m := acks.get()) is not None:
                yield m

        snapshot: list[HotListEntry] | None = None
        pending_up: list[HotListEntry] = []
        pending_rm: list[str] = []
        creds = self.credentials
        with grpc.secure_channel(target, creds) if creds is not None else grpc.insecure_channel(target) as ch:
            call = hotlist_pb2_grpc.HotListServiceStub(ch).Subscribe(requests(), metadata=self.metadata)
            self._call = call
            try:
                for resp in call:
                    self.connected = True
                    kind = resp.WhichOneof("payload")
                    if kind == "snapshot_begin":
                        snapshot = []
                    elif kind == "snapshot_chunk" and snapshot is not None:
                        snapshot.extend(entry_from_proto(e) for e in resp.snapshot_chunk.entries)
                    elif kind == "snapshot_end" and snapshot is not None:
                        v = resp.snapshot_end.version
                        self.local.replace_all(snapshot, v)
                        with self._lock:
                            self.matcher.clear()
                            self.matcher.reserve(len(snapshot))
                            for e in [*snapshot, *(le for le, _ in self.local.outbox())]:
                                self.matcher.upsert(e)
                        snapshot = None
                        acks.put(hotlist_pb2.SubscribeRequest(ack=hotlist_pb2.SubscribeAck(version=v)))
                    elif kind == "delta":
                        d = resp.delta
                        if d.version <= self.local.version:
                            continue  # already held (e.g. replayed after a snapshot)
                        ups = [entry_from_proto(c.entry) for c in d.changes if c.kind == hotlist_pb2.CHANGE_KIND_UPSERT]
                        for e in ups:
                            e.version = d.version
                        rms = [c.entry_id for c in d.changes if c.kind == hotlist_pb2.CHANGE_KIND_REMOVE]
                        pending_up.extend(ups)
                        pending_rm.extend(rms)
                        if d.more:
                            continue  # a version is applied whole, never half
                        self.local.apply(pending_up, pending_rm, d.version)
                        with self._lock:
                            for e in pending_up:
                                self.matcher.upsert(e)
                            for r in pending_rm:
                                self.matcher.remove(r)
                        pending_up, pending_rm = [], []
                        acks.put(hotlist_pb2.SubscribeRequest(ack=hotlist_pb2.SubscribeAck(version=d.version)))
                    elif kind == "current":
                        self.hub_version = resp.current.version
                        if self.local.version == resp.current.version:
                            self.local.mark_synced(datetime.now(UTC))
                            self.last_error = None
                            self._current.set()
                        else:
                            self._current.clear()
                    if self._stop.is_set():
                        break
            finally:
                acks.put(None)
                call.cancel()  # type: ignore[no-untyped-call]
                self._call = None
