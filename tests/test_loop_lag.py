"""The event-loop lag probe sees a loop held by blocking work."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from hub.loop_lag import LoopLagProbe
from hub.metrics import HubMetrics


def test_a_blocked_loop_shows_as_lag() -> None:
    registry = CollectorRegistry()
    metrics = HubMetrics(registry)

    async def run() -> LoopLagProbe:
        probe = LoopLagProbe(metrics.loop_lag, interval_s=0.05)
        probe.start()
        await asyncio.sleep(0.2)
        time.sleep(0.5)  # something holds the loop
        await asyncio.sleep(0.2)
        await probe.stop()
        return probe

    probe = asyncio.run(run())
    assert probe.worst_s >= 0.4
    count = registry.get_sample_value("alpr_hub_event_loop_lag_seconds_count")
    assert count is not None and count >= 3
    slow = count - (registry.get_sample_value("alpr_hub_event_loop_lag_seconds_bucket", {"le": "0.25"}) or 0)
    assert slow >= 1
