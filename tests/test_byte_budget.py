"""The ingest byte budget's rules (pure logic): first come first served, a read larger than
the budget goes alone, a cancelled waiter gives back what it held or was granted."""

from __future__ import annotations

import asyncio

import pytest

from hub.byte_budget import ByteBudget


def test_reads_wait_in_order_and_a_large_read_is_not_starved() -> None:
    async def run() -> list[str]:
        budget = ByteBudget(100)
        order: list[str] = []
        first = await budget.acquire(60)
        large = asyncio.create_task(budget.acquire(80))
        await asyncio.sleep(0)
        small = asyncio.create_task(budget.acquire(10))  # would fit now, but the large read came first
        await asyncio.sleep(0)
        assert not large.done() and not small.done() and budget.waiting == 2
        large.add_done_callback(lambda _: order.append("large"))
        small.add_done_callback(lambda _: order.append("small"))
        budget.release(first)
        await asyncio.gather(large, small)
        assert budget.used == 90
        return order

    assert asyncio.run(run()) == ["large", "small"]


def test_a_read_larger_than_the_budget_goes_alone() -> None:
    async def run() -> None:
        budget = ByteBudget(100)
        small = await budget.acquire(1)
        huge = asyncio.create_task(budget.acquire(10_000))
        await asyncio.sleep(0)
        assert not huge.done()
        budget.release(small)
        taken = await huge
        assert taken == 100 and budget.used == 100
        budget.release(taken)
        assert budget.used == 0

    asyncio.run(run())


def test_a_cancelled_waiter_holds_nothing() -> None:
    async def run() -> None:
        budget = ByteBudget(100)
        held = await budget.acquire(90)
        blocked = asyncio.create_task(budget.acquire(50))
        behind = asyncio.create_task(budget.acquire(10))
        await asyncio.sleep(0)
        assert not behind.done()  # behind the blocked one
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        assert await behind == 10 and budget.used == 100 and budget.waiting == 0
        # granted, then cancelled before it ran: the grant is given back
        granted = asyncio.create_task(budget.acquire(30))
        await asyncio.sleep(0)
        budget.release(held)
        granted.cancel()
        with pytest.raises(asyncio.CancelledError):
            await granted
        assert budget.used == 10

    asyncio.run(run())


def test_an_empty_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one byte"):
        ByteBudget(0)
