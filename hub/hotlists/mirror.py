"""This hub's in-memory copy of the hot list, kept current by tailing the change log.

Every hub tails the log (``hotlists.poll_interval_s``) into a ``Matcher`` and pushes new
versions to its subscribed nodes: nothing lives only in one hub's memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from alpr.v1 import hotlist_pb2

from alpr_common.hotlist_model import entry_from_proto
from alpr_common.lifecycle import cancel_task
from alpr_common.matching import Matcher, MatchOptions, with_version
from alpr_common.timestamps import now_utc, to_timestamp
from hub.config import HubConfig
from hub.hotlists.store import UPSERT, Change, HotListStore
from hub.metrics import HotListMetrics

log = logging.getLogger(__name__)


def match_options(config: HubConfig) -> MatchOptions:
    return MatchOptions(**config.hotlists.match.model_dump())


class HotListMirror:
    """This hub's in-memory copy of the list, kept current by tailing the change log."""

    CACHE_VERSIONS = 64

    def __init__(self, *, store: HotListStore, config: HubConfig, metrics: HotListMetrics) -> None:
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

        def build() -> None:
            for e, serialized in self.store.scan_entries():
                self.matcher.upsert(e, serialized)

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
            await cancel_task(self._task)

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
                            self.matcher.upsert(e, with_version(c.entry.SerializeToString(), info.version))
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
                self.matcher.reserve(len(changes))
                for i, (c, blob) in enumerate(zip(changes, prepared.blobs, strict=True)):
                    if c.kind == UPSERT and c.entry is not None:
                        c.entry.version = version
                        # The store encoded the entry for the log already; only the version is new.
                        self.matcher.upsert(c.entry, None if blob is None else with_version(blob, version))
                    else:
                        self.matcher.remove(c.entry_id)
                    if i % 5000 == 4999:
                        await asyncio.sleep(0)
                now = now_utc()
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
            t = min(self.version_times.values(), default=now_utc())
        return t
