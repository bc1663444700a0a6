"""A versioned log every hub replica follows in memory (fleet configuration, model rollouts).

Each change is one row whose version is the previous plus one, claimed with ``INSERT ... IF NOT
EXISTS`` after a serial read: whoever loses the race recomputes the change on top of the
winner's row and tries the next number, so versions are gap-free and monotonic across hub
replicas and concurrent changes all stay. Every hub tails the log (a poll of the rows after the
version it holds) and wakes the streams waiting for a newer version.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from cassandra import OperationTimedOut, ReadTimeout, WriteTimeout

from alpr_common.lifecycle import cancel_task
from alpr_common.retry import Backoff

log = logging.getLogger(__name__)

CLAIM_BACKOFF = Backoff(initial_s=0.02, max_s=1.0)
CLAIM_ATTEMPTS = 60
PAGE = 500


class Versioned(Protocol):
    @property
    def version(self) -> int: ...


V = TypeVar("V", bound=Versioned)


class LogMirror(Generic[V]):
    """This hub's copy of one log, kept current by tailing it; subclasses fold each row in."""

    what = "log"

    def __init__(
        self,
        *,
        fetch: Callable[[int, bool], Awaitable[list[V]]],
        claim: Callable[[V], Awaitable[bool]],
        poll_interval_s: float,
    ) -> None:
        """``fetch(after, serial)``: up to 500 rows after a version, oldest first; ``claim(row)``:
        insert the row if its version is free."""
        self._fetch = fetch
        self._claim = claim
        self.poll_interval_s = poll_interval_s
        self.version = 0
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def _apply(self, v: V) -> None:
        """Fold one new row into the in-memory state."""

    async def load(self) -> None:
        await self.catch_up()
        log.info("%s loaded: version %d", self.what, self.version)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            await cancel_task(self._task)

    async def _run(self) -> None:
        while True:
            try:
                await self.catch_up()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s poll failed: %r", self.what, exc)
            await asyncio.sleep(self.poll_interval_s)

    async def catch_up(self, serial: bool = False) -> None:
        async with self._lock:
            await self._catch_up_locked(serial)

    async def _catch_up_locked(self, serial: bool = False) -> None:
        while True:
            got = await self._fetch(self.version, serial)
            for v in got:
                if v.version != self.version + 1:
                    return
                self._advance(v)
            if len(got) < PAGE:
                return

    def _advance(self, v: V) -> None:
        self._apply(v)
        self.version = v.version
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def changed(self) -> asyncio.Event:
        """Set at the next new version."""
        return self._changed

    async def wait_newer(self, version: int, timeout: float, *events: asyncio.Event) -> None:
        """Until the log is past ``version``, one of ``events`` is set, or ``timeout``."""
        if self.version > version:
            return
        await wait_any([self._changed, *events], timeout)

    async def commit(self, make: Callable[[int], V | None]) -> V | None:
        """Claim the next version for ``make(next_version)``, recomputed on top of whatever won
        before it; ``make`` may raise to refuse, or return None when there is nothing to do."""
        async with self._lock:
            for attempt in range(CLAIM_ATTEMPTS):
                try:
                    await self._catch_up_locked(serial=True)
                    v = make(self.version + 1)
                    if v is None:
                        return None
                    if await self._claim(v):
                        self._advance(v)
                        return v
                except (ReadTimeout, WriteTimeout, OperationTimedOut) as exc:
                    log.info("%s version claim contended (%r); retrying", self.what, exc)
                await asyncio.sleep(CLAIM_BACKOFF.delay(attempt))
        raise RuntimeError(f"could not claim a {self.what} version after {CLAIM_ATTEMPTS} attempts")


async def wait_any(events: list[asyncio.Event], timeout: float) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
