"""The shared Cassandra building blocks: idempotency of prepared statements, named binds,
the insert helper (pure logic), and waiting out a full driver socket (real Cassandra)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cassandra.cluster import Session

from alpr_common.cassandra import CassandraConfig, CassandraStore, Statement, insert_cql, is_idempotent_cql


@pytest.mark.parametrize(
    ("cql", "idempotent"),
    [
        ("SELECT * FROM ks.t WHERE k = :k", True),
        ("INSERT INTO ks.t (k, v) VALUES (:k, :v) USING TTL :ttl", True),
        ("UPDATE ks.t USING TIMESTAMP :w SET v = :v WHERE k = :k", True),
        ("DELETE FROM ks.t WHERE k = :k", True),
        ("INSERT INTO ks.t (k, v) VALUES (:k, :v) IF NOT EXISTS", False),
        ("UPDATE ks.t SET v = :v WHERE k = :k IF v = null", False),
        ("DELETE FROM ks.locks WHERE source = :s IF holder = :h", False),
        ("UPDATE ks.c SET n = n + 1 WHERE k = :k", False),
        ("UPDATE ks.t SET tags = tags + :more WHERE k = :k", False),
        ("UPDATE ks.t SET tags = :more + tags WHERE k = :k", False),
    ],
)
def test_lightweight_transactions_and_increments_are_not_idempotent(cql: str, idempotent: bool) -> None:
    assert is_idempotent_cql(cql) is idempotent


def test_insert_cql_names_its_markers_after_the_columns() -> None:
    assert insert_cql("ks.t", ("a", "b"), ttl=True) == "INSERT INTO ks.t (a, b) VALUES (:a, :b) USING TTL :ttl"
    assert insert_cql("ks.t", ("a",), if_not_exists=True) == "INSERT INTO ks.t (a) VALUES (:a) IF NOT EXISTS"


@dataclass
class _Column:
    name: str


class _Prepared:
    """The two things Statement uses of a driver PreparedStatement."""

    query_string = "INSERT INTO ks.t (a, b) VALUES (:a, :b)"
    column_metadata = (_Column("a"), _Column("b"))

    def bind(self, values: list[object]) -> list[object]:
        return values


def test_named_binds_go_in_marker_order_and_refuse_missing_or_unknown_keys() -> None:
    st = Statement(_Prepared())
    assert st.bind({"b": 2, "a": 1}) == [1, 2]
    for bad, words in (({"a": 1}, "missing ['b']"), ({"a": 1, "c": 2}, "unknown ['c']"),
                       ({"a": 1, "b": 2, "c": 3}, "unknown ['c']"), (None, "missing ['a', 'b']")):  # fmt: skip
        with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
            st.bind(bad)


@contextlib.contextmanager
def socket_full_for(session: Session, seconds: float) -> Iterator[None]:
    """Every connection of ``session`` reports its socket full (the flag the driver sets when a
    send would block) for ``seconds``: statements are refused with ConnectionBusy meanwhile."""
    conns = [pool._connection for pool in session._pools.values() if pool._connection is not None]
    assert conns, "the session has no open connection"

    def writable(value: bool) -> None:
        for c in conns:
            c._socket_writable = value

    writable(False)
    timer = threading.Timer(seconds, writable, (True,))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        writable(True)


def test_statements_wait_while_the_driver_socket_is_full(cql: Session) -> None:
    """A full socket is back-pressure, not an outage: the hot-list and alert-feed polls
    (``run``) and the mirror's scans (``rows``) wait for room instead of failing."""
    store = CassandraStore(session=cql, cassandra=CassandraConfig(keyspace="system"))
    query = store.reader("SELECT release_version FROM system.local")
    with socket_full_for(cql, 0.3):
        polled = asyncio.run(store.run(query))
    assert polled and polled[0].release_version
    with socket_full_for(cql, 0.3):
        scanned = list(store.rows(query))
    assert scanned and scanned[0].release_version
