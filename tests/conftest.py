"""Fixtures: a real Cassandra (started by ops/cassandractl.py) and real hubs on loopback ports."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cassandra.cluster import Session

from alpr_common.cassandra import connect
from hub.config import HubConfig
from ops.cassandractl import CassandraCluster
from tests.support import ROOT, HubThread

TEST_CQL_PORT = int(os.environ.get("ALPR_TEST_CASSANDRA_PORT", "29042"))


@pytest.fixture(scope="session")
def cassandra() -> Iterator[tuple[list[str], int]]:
    """(contact_points, port) of a running Cassandra.

    Set ALPR_TEST_CASSANDRA=host:port to use one that is already running; otherwise a
    single node is started under .run/ and stopped at the end (ALPR_TEST_KEEP_CASSANDRA=1
    keeps it running for the next test run).
    """
    existing = os.environ.get("ALPR_TEST_CASSANDRA")
    if existing:
        host, _, port = existing.rpartition(":")
        try:
            yield [host], int(port)
        finally:
            # A shared Cassandra slows down for everyone as test keyspaces pile up.
            _drop_keyspaces([host], int(port), _CREATED)
        return
    run_dir = Path(os.environ.get("ALPR_RUN_DIR", ROOT / ".run")) / f"test-cassandra-{TEST_CQL_PORT}"
    cluster = CassandraCluster(run_dir, nodes=1, base_port=TEST_CQL_PORT, heap="2G")
    cluster.start()
    try:
        yield cluster.contact_points, cluster.port
    finally:
        if os.environ.get("ALPR_TEST_KEEP_CASSANDRA"):
            _drop_keyspaces(cluster.contact_points, cluster.port, _CREATED)
        else:
            cluster.stop()


_CREATED: list[str] = []  # keyspaces made by fresh_keyspace() in this session


def _drop_keyspaces(points: list[str], port: int, names: list[str]) -> None:
    """Best effort: a long-lived dev Cassandra slows down as test keyspaces pile up."""
    if not names:
        return
    cfg = HubConfig.model_validate({"cassandra": {"contact_points": points, "port": port, "request_timeout_s": 120}})
    cluster, session = connect(cfg.cassandra)
    try:
        for name in names:
            try:
                session.execute(f"DROP KEYSPACE IF EXISTS {name}")
            except Exception as e:  # cleanup must not fail the run
                print(f"could not drop test keyspace {name}: {e!r}")
    finally:
        cluster.shutdown()


def make_hub_config(cassandra: tuple[list[str], int], keyspace: str, **overrides: Any) -> HubConfig:
    """A test hub's config: auth and TLS off (``insecure_dev``) unless the overrides turn them on;
    tests of access control and TLS pass ``auth``/``tls`` sections or ``insecure_dev=False``."""
    points, port = cassandra
    data: dict[str, Any] = {
        "insecure_dev": True,
        "hub_id": "test-hub",
        "listen_host": "127.0.0.1",
        "grpc_port": 0,
        "metrics_host": "127.0.0.1",
        "metrics_port": 0,
        "shutdown_grace_s": 5,
        "cassandra": {
            "contact_points": points,
            "port": port,
            "keyspace": keyspace,
            "write_consistency": "ONE",
            "read_consistency": "ONE",
            # schema changes crawl on a loaded 2-core CI box; don't mistake slow for broken
            "request_timeout_s": 60,
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return HubConfig.model_validate(data)


def fresh_keyspace(prefix: str = "t") -> str:
    name = f"alpr_{prefix}_{uuid.uuid4().hex[:10]}"
    _CREATED.append(name)
    return name


@pytest.fixture(scope="session")
def keyspace() -> str:
    """One keyspace for the test session (60-day TTL, the production default)."""
    return fresh_keyspace("s")


@pytest.fixture(scope="session")
def session_hub(cassandra: tuple[list[str], int], keyspace: str) -> Iterator[HubThread]:
    hub = HubThread(make_hub_config(cassandra, keyspace)).start()
    yield hub
    hub.stop()


@pytest.fixture(scope="session")
def cql(cassandra: tuple[list[str], int]) -> Iterator[Session]:
    """A plain driver session for checking what the hub stored."""
    points, port = cassandra
    cluster, session = connect(
        HubConfig.model_validate(
            {"cassandra": {"contact_points": points, "port": port, "request_timeout_s": 60}}
        ).cassandra
    )
    yield session
    cluster.shutdown()
