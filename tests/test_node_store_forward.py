"""Store-and-forward: a node's reads reach Cassandra exactly once through hub and
Cassandra crashes. Real hub processes, a dedicated real Cassandra that the test kills."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alpr.v1 import ingest_pb2
from prometheus_client import CollectorRegistry

from alpr_common.cassandra import connect
from alpr_common.retry import Backoff
from alpr_common.simulation import make_read
from hub.config import HubConfig
from node.metrics import NodeMetrics
from node.queue import ReadQueue
from node.uplink import Uplink, UplinkSettings
from ops.cassandractl import CassandraCluster
from tests.support import ROOT, stored_ids
from tests.test_hub_process import HubProcess, write_config

SF_PORT = int(os.environ.get("ALPR_TEST_SF_CASSANDRA_PORT", "29062"))


@pytest.fixture(scope="module")
def own_cassandra() -> Iterator[CassandraCluster]:
    """A Cassandra of this module's own, so it can be killed without disturbing others."""
    cluster = CassandraCluster(ROOT / ".run" / f"test-cassandra-{SF_PORT}", nodes=1, base_port=SF_PORT, heap="768M")
    cluster.start()
    yield cluster
    cluster.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_reads_reach_cassandra_exactly_once_through_hub_and_cassandra_crashes(
    tmp_path: Path, own_cassandra: CassandraCluster
) -> None:
    keyspace = f"alpr_sf_{uuid.uuid4().hex[:8]}"
    port = free_port()
    cfg = write_config(tmp_path, (own_cassandra.contact_points, own_cassandra.port), keyspace, grpc_port=port)
    hub = HubProcess(cfg)
    metrics = NodeMetrics(CollectorRegistry())
    queue = ReadQueue(tmp_path / "queue.sqlite", budget_bytes=10**8)
    uplink = Uplink(
        UplinkSettings([f"127.0.0.1:{port}"], window=16, heartbeat_interval_s=1.0, backoff=Backoff(0.1, 1.0)),
        queue,
        lambda: ingest_pb2.Heartbeat(node_id="sf-node"),
        metrics,
    )
    uplink.start()
    reads = [make_read(node_id="sf-node", plate=f"SF{i:05d}") for i in range(500)]
    produced = threading.Event()

    def produce() -> None:  # live reads keep arriving all through the outages, ~80/s
        for r in reads:
            queue.put(r.read_id, ingest_pb2.IngestRequest(read=r).SerializeToString())
            time.sleep(0.0125)
        produced.set()

    producer = threading.Thread(target=produce)
    producer.start()
    hubs = [hub]
    try:
        time.sleep(1.0)
        hub.proc.send_signal(signal.SIGKILL)  # hub crash
        hub.finish()
        time.sleep(1.0)
        assert queue.depth() > 0  # reads pile up on the node meanwhile
        hub = HubProcess(cfg)
        hubs.append(hub)
        time.sleep(1.0)
        own_cassandra.kill_node(1)  # storage crash under a running hub
        time.sleep(1.5)
        own_cassandra.start_node(1)
        producer.join(60)
        assert produced.is_set()
        deadline = time.time() + 90
        while queue.depth() and time.time() < deadline:
            time.sleep(0.2)
        assert queue.depth() == 0, f"{queue.depth()} reads never acknowledged; last error {uplink.last_error}"
    finally:
        uplink.stop()
        for h in hubs:
            if h.proc.poll() is None:
                h.proc.send_signal(signal.SIGTERM)
                h.finish()
        queue.close()

    points, cport = own_cassandra.contact_points, own_cassandra.port
    cluster, session = connect(
        HubConfig.model_validate({"cassandra": {"contact_points": points, "port": cport}}).cassandra
    )
    try:
        ids = [r.read_id for r in reads]
        assert stored_ids(session, keyspace, ids) == set(ids)
        day = reads[0].capture_time.ToDatetime().date()
        per_plate = [
            len(
                session.execute(
                    f"SELECT read_id FROM {keyspace}.reads_by_plate WHERE plate=%s AND day=%s", [r.plate_text, day]
                ).all()
            )
            for r in reads
        ]
        assert per_plate == [1] * len(reads)  # exactly once
        assert (metrics.registry.get_sample_value("alpr_node_reads_acked_total") or 0) >= len(reads)
        assert (metrics.registry.get_sample_value("alpr_node_hub_reconnects_total") or 0) >= 2
    finally:
        cluster.shutdown()
