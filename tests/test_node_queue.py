"""The node's durable store-and-forward queue (SQLite WAL)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from node.queue import ReadQueue


def test_reads_survive_reopen_and_leave_only_on_ack(tmp_path: Path) -> None:
    q = ReadQueue(tmp_path / "q.sqlite", budget_bytes=10**6)
    for i in range(5):
        assert q.put(f"id{i}", b"x" * 100)
    assert not q.put("id0", b"x" * 100)  # same id: not queued twice
    q.close()
    q = ReadQueue(tmp_path / "q.sqlite", budget_bytes=10**6)
    assert q.depth() == 5 and q.size_bytes() == 500
    assert [r.read_id for r in q.pending(0, 3)] == ["id0", "id1", "id2"]
    q.ack("id1")
    assert [r.read_id for r in q.pending(0, 10)] == ["id0", "id2", "id3", "id4"]
    last = q.pending(0, 10)[1].seq
    assert [r.read_id for r in q.pending(last, 10)] == ["id3", "id4"]


def test_budget_evicts_oldest_first_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    evicted: list[int] = []
    q = ReadQueue(tmp_path / "q.sqlite", budget_bytes=2 * 1024 * 1024, on_evict=evicted.append)
    with caplog.at_level(logging.ERROR):
        for i in range(5):
            q.put(f"id{i}", b"x" * (600 * 1024))
    assert [r.read_id for r in q.pending(0, 10)] == ["id2", "id3", "id4"]
    assert sum(evicted) == 2
    assert "evicted" in caplog.text and "LOST" in caplog.text


def test_rejected_reads_are_kept_aside_not_resent(tmp_path: Path) -> None:
    q = ReadQueue(tmp_path / "q.sqlite", budget_bytes=10**6)
    q.put("bad", b"payload")
    q.reject("bad", 3, "plate_text is empty")
    assert q.depth() == 0 and q.rejected() == [("bad", 3, "plate_text is empty")]


def test_oldest_age(tmp_path: Path) -> None:
    now = [1000.0]
    q = ReadQueue(tmp_path / "q.sqlite", budget_bytes=10**6, clock=lambda: now[0])
    assert q.oldest_age() == 0.0
    q.put("a", b"1")
    now[0] = 1012.5
    assert q.oldest_age() == 12.5
