"""The audit chain under concurrent callers: entries recorded at once are claimed together
(one conditional batch per group), and two writers sharing a chain still produce one gap-free
chain that verifies."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from cassandra.cluster import Session

from hub.audit import AuditLog, AuditRecord
from tests.support import HubThread


def test_concurrent_records_are_grouped_and_the_chain_stays_whole(session_hub: HubThread, cql: Session) -> None:
    chain = f"group-{uuid.uuid4().hex[:8]}"
    key = b"k" * 32
    sizes: list[int] = []

    def counting(
        insert: Callable[[list[AuditRecord]], Coroutine[Any, Any, bool]],
    ) -> Callable[[list[AuditRecord]], Coroutine[Any, Any, bool]]:
        async def claim(recs: list[AuditRecord]) -> bool:
            sizes.append(len(recs))
            return await insert(recs)

        return claim

    async def run() -> tuple[list[AuditRecord], AuditLog]:
        logs = [AuditLog(session=cql, cassandra=session_hub.config.cassandra, chain=chain, key=key) for _ in range(2)]
        for log in logs:
            log._insert = counting(log._insert)  # type: ignore[method-assign, assignment]
        # Two writers (as two processes sharing a chain name would be), 40 entries each, at once.
        recs = await asyncio.gather(
            *(logs[i % 2].record(f"actor-{i}", "test.concurrent", details={"i": i}) for i in range(80))
        )
        return list(recs), logs[0]

    recs, log = asyncio.run(run())
    assert sorted(r.seq for r in recs) == list(range(1, 81))  # every entry got its own seq
    assert max(sizes) > 1  # some claims carried several entries
    by_seq = {r.seq: r for r in recs}
    assert all(by_seq[s].prev_hash == by_seq[s - 1].entry_hash for s in range(2, 81))
    report = next(r for r in asyncio.run(log.verify()) if r.chain == chain)
    assert report.ok and report.entries == 80, report.problems
