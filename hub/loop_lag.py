"""How late the hub's event loop runs what is due: the lag behind a periodic timer.

Every read's ack, every alert push and every heartbeat waits behind whatever holds the
loop (a long computation, a full garbage collection of a large heap). The probe sleeps a
fixed interval and records how much later than asked it woke up, into
``alpr_hub_event_loop_lag_seconds``: a lag near zero means the loop is free.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Histogram

from alpr_common.lifecycle import cancel_task


class LoopLagProbe:
    """A background part of the hub that measures event-loop lag every ``interval_s``."""

    def __init__(self, histogram: Histogram, interval_s: float = 0.1) -> None:
        self.histogram = histogram
        self.interval_s = interval_s
        self.worst_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_task(self._task)

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            lag = max(0.0, time.perf_counter() - t0 - self.interval_s)
            self.worst_s = max(self.worst_s, lag)
            self.histogram.observe(lag)
