"""Retrying: one backoff policy for every loop that tries again.

:class:`Backoff` is exponential with full jitter and a cap: before attempt ``n`` (0 = the
first retry) it waits a random time in ``[0, min(max_s, initial_s * 2**n)]``, so clients
that failed together do not come back together. The node's uplink and hot-list sync, camera
streams, the bridge's alert stream and deliveries, and the hub's hot-list commits all use
it. :func:`retry_async` / :func:`retry_sync` wrap one call that may fail transiently.

Cassandra server-side timeouts are retried by the driver's retry policy
(``alpr_common.cassandra.TimeoutRetryPolicy``); the operator CLI's unary calls by gRPC's
own ``retryPolicy`` (``alpr_common.operator.common``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, capped at ``max_s``."""

    initial_s: float = 0.5
    max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s <= 0:
            raise ValueError(f"backoff needs positive times (got {self.initial_s}, {self.max_s})")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry number ``attempt`` (0-based)."""
        return float(min(self.max_s, self.initial_s * 2.0 ** min(max(attempt, 0), 62)))

    def delay(self, attempt: int) -> float:
        """A random wait before retry number ``attempt`` (full jitter)."""
        return random.uniform(0, self.ceiling(attempt))


Transient = Callable[[BaseException], bool]


async def retry_async(
    call: Callable[[], Awaitable[T]],
    *,
    transient: Transient,
    backoff: Backoff,
    attempts: int,
    what: str = "call",
) -> T:
    """Await ``call()``; when it raises an error ``transient`` accepts, wait and try again,
    at most ``attempts`` times in all (the last error is raised)."""
    for attempt in range(attempts):
        try:
            return await call()
        except Exception as exc:
            if attempt + 1 >= attempts or not transient(exc):
                raise
            delay = backoff.delay(attempt)
            log.debug("%s failed (%r); retry %d in %.2f s", what, exc, attempt + 1, delay)
            await asyncio.sleep(delay)
    raise ValueError("attempts must be at least 1")


def retry_sync(
    call: Callable[[], T],
    *,
    transient: Transient,
    backoff: Backoff,
    attempts: int,
    what: str = "call",
) -> T:
    """:func:`retry_async` for blocking code."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if attempt + 1 >= attempts or not transient(exc):
                raise
            delay = backoff.delay(attempt)
            log.warning("%s failed (%s); retrying in %.1f s", what, type(exc).__name__, delay)
            time.sleep(delay)
    raise ValueError("attempts must be at least 1")
