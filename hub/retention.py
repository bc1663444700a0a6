"""Retention watch (policy 5.4-5.5): the age of the oldest stored read, as a metric.

Reads expire by TTL 60 days after capture; ``alpr_hub_oldest_read_age_seconds`` shows that
they do (an alert rule fires when it exceeds the retention).
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry, Gauge

from alpr_common.lifecycle import cancel_task
from alpr_common.timestamps import now_utc
from hub.storage import ReadStore

log = logging.getLogger(__name__)

OLDEST_READ_INTERVAL_S = 60.0


class RetentionMonitor:
    """Scans for the oldest stored read every :data:`OLDEST_READ_INTERVAL_S` and sets the gauge."""

    def __init__(self, *, reads: ReadStore, registry: CollectorRegistry) -> None:
        self.reads = reads
        self.oldest_read_age = Gauge(
            "alpr_hub_oldest_read_age_seconds",
            "Age of the oldest read still stored (policy 5.4-5.5: stays under the 60-day retention)",
            registry=registry,
        )
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> float | None:
        """Find the oldest stored read and set the gauge; its age in seconds (None: no reads)."""
        oldest = await asyncio.get_running_loop().run_in_executor(None, self.reads.oldest_capture_time)
        age = (now_utc() - oldest).total_seconds() if oldest else 0.0
        self.oldest_read_age.set(age)
        return age if oldest else None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("oldest-read scan failed: %r", exc)
            await asyncio.sleep(OLDEST_READ_INTERVAL_S)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_task(self._task)
