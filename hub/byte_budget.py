"""A hub-wide budget of bytes: how much read data may be held for storing at once.

Reads count against it from the moment they are admitted until they are acked or refused.
A read that does not fit waits (first come, first served, so a large read is not starved
by small ones), and while it waits its stream is not read any further: gRPC's HTTP/2 flow
control then slows the sender instead of the hub's memory growing. A read larger than the
whole budget is admitted alone (it takes the whole budget), so every read gets through.
"""

from __future__ import annotations

import asyncio
from collections import deque


class ByteBudget:
    """``limit`` bytes shared by every ingest stream of this process (asyncio, one loop)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a byte budget needs at least one byte")
        self.limit = limit
        self.used = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    def cost(self, size: int) -> int:
        """What a read of ``size`` bytes takes from the budget (never more than all of it)."""
        return max(1, min(size, self.limit))

    @property
    def waiting(self) -> int:
        """Reads waiting for room."""
        return len(self._waiting)

    async def acquire(self, size: int) -> int:
        """Wait until ``size`` bytes fit, take them; returns what to :meth:`release` later."""
        n = self.cost(size)
        if not self._waiting and self.used + n <= self.limit:
            self.used += n
            return n
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, fut)
        self._waiting.append(entry)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # granted just as we were cancelled: give it back
                self.release(n)
            else:
                if entry in self._waiting:
                    self._waiting.remove(entry)
                self._wake()  # the head may have been us: the next in line may fit now
            raise
        return n

    def release(self, n: int) -> None:
        """Give back what :meth:`acquire` returned."""
        self.used -= n
        self._wake()

    def _wake(self) -> None:
        while self._waiting:
            n, fut = self._waiting[0]
            if fut.done():  # cancelled: its acquire() removes it
                self._waiting.popleft()
                continue
            if self.used + n > self.limit:
                return
            self._waiting.popleft()
            self.used += n
            fut.set_result(None)
