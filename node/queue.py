"""Store-and-forward queue: every read is committed to SQLite (WAL) before anything else.

A read leaves the queue only when the hub acknowledged it (``ack``) or when the queue must
evict to stay inside its disk budget (oldest first, counted and logged loudly). Reads the
hub refused as invalid move to a ``rejected`` table for an operator to look at; they are
never resent. Nothing is kept past the retention (policy 5.4-5.5: 60 days after capture):
queued and refused reads older than ``retention_s`` are deleted (checked at most once a
minute, on the next write), and SQLite's freed pages are reused.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reads (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    read_id TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    read_id TEXT PRIMARY KEY,
    rejected_at REAL NOT NULL,
    code INTEGER NOT NULL,
    message TEXT NOT NULL,
    payload BLOB NOT NULL
);
"""
SIXTY_DAYS_S = 60 * 86_400
_EXPIRE_EVERY_S = 60.0


@dataclass(frozen=True)
class QueuedRead:
    seq: int
    read_id: str
    created: float
    payload: bytes


class ReadQueue:
    """A durable FIFO of serialized reads, bounded by ``budget_bytes`` of payload."""

    def __init__(
        self,
        path: str | Path,
        budget_bytes: int,
        on_evict: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.time,
        retention_s: float = SIXTY_DAYS_S,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.budget_bytes = budget_bytes
        self._on_evict = on_evict
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a read acknowledged by put() survives a power cut, not just a process crash.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(rejected)")}
        if "created" not in cols:  # queues written before refused reads expired
            self._db.execute("ALTER TABLE rejected ADD COLUMN created REAL")
        self.retention_s = retention_s
        self._expired_at = float("-inf")
        self._bytes = int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM reads").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, read_id: str, payload: bytes) -> bool:
        """Commit a read durably. Returns False if it was already queued (same id)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO reads (read_id, created, size, payload) VALUES (?, ?, ?, ?)",
                (read_id, self._clock(), len(payload), payload),
            )
            added = cur.rowcount == 1
            if added:
                self._bytes += len(payload)
                self._evict_over_budget()
                self._expire_locked()
                self._changed.notify_all()
            return added

    def _evict_over_budget(self) -> None:
        evicted = 0
        while self._bytes > self.budget_bytes:
            row = self._db.execute("SELECT seq, size FROM reads ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                break
            self._db.execute("DELETE FROM reads WHERE seq = ?", (row[0],))
            self._bytes -= row[1]
            evicted += 1
        if evicted:
            log.error(
                "STORE-AND-FORWARD QUEUE FULL: evicted %d oldest read(s) to stay within %d bytes; "
                "these reads are LOST. Restore the hub connection or raise queue.budget_bytes.",
                evicted,
                self.budget_bytes,
            )
            if self._on_evict:
                self._on_evict(evicted)

    def pending(self, after_seq: int, limit: int) -> list[QueuedRead]:
        """Up to ``limit`` queued reads with seq > ``after_seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, read_id, created, payload FROM reads WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [QueuedRead(*r) for r in rows]

    def wait_for_more(self, after_seq: int, timeout: float) -> bool:
        """Block until a read with seq > ``after_seq`` exists (or timeout)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._max_seq() > after_seq, timeout)

    def _max_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM reads").fetchone()[0])

    def ack(self, read_id: str) -> None:
        """The hub stored the read: forget it."""
        with self._lock:
            row = self._db.execute("SELECT size FROM reads WHERE read_id = ?", (read_id,)).fetchone()
            if row:
                self._db.execute("DELETE FROM reads WHERE read_id = ?", (read_id,))
                self._bytes -= row[0]

    def reject(self, read_id: str, code: int, message: str) -> None:
        """The hub refused the read as invalid: keep it aside, never resend it."""
        with self._lock:
            row = self._db.execute("SELECT size, payload FROM reads WHERE read_id = ?", (read_id,)).fetchone()
            if not row:
                return
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO rejected (read_id, rejected_at, code, message, payload, created) "
                "SELECT ?, ?, ?, ?, payload, created FROM reads WHERE read_id = ?",
                (read_id, self._clock(), code, message, read_id),
            )
            self._db.execute("DELETE FROM reads WHERE read_id = ?", (read_id,))
            self._db.execute("COMMIT")
            self._bytes -= row[0]
            self._expire_locked()

    def expire(self) -> int:
        """Delete queued and refused reads older than the retention; how many were deleted."""
        with self._lock:
            self._expired_at = float("-inf")
            return self._expire_locked()

    def _expire_locked(self) -> int:
        now = self._clock()
        if now - self._expired_at < _EXPIRE_EVERY_S:
            return 0
        self._expired_at = now
        cutoff = now - self.retention_s
        gone = self._db.execute("DELETE FROM rejected WHERE COALESCE(created, rejected_at) < ?", (cutoff,)).rowcount
        old = self._db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM reads WHERE created < ?", (cutoff,))
        size, count = old.fetchone()
        if count:
            self._db.execute("DELETE FROM reads WHERE created < ?", (cutoff,))
            self._bytes -= int(size)
            log.warning("deleted %d queued reads older than the %.0f-day retention", count, self.retention_s / 86400)
        return int(gone) + int(count)

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM reads").fetchone()[0])

    def oldest_age(self) -> float:
        """Seconds since the oldest queued read was committed (0 when empty)."""
        with self._lock:
            row = self._db.execute("SELECT MIN(created) FROM reads").fetchone()
        return 0.0 if row[0] is None else max(0.0, self._clock() - row[0])

    def size_bytes(self) -> int:
        return self._bytes

    def rejected(self) -> list[tuple[str, int, str]]:
        with self._lock:
            return self._db.execute("SELECT read_id, code, message FROM rejected ORDER BY rejected_at").fetchall()
