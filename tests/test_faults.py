"""Fault suite (marker ``fault``; part of the default run): a 3-node Cassandra on loopback
aliases (RF 3, QUORUM), two hub processes and several nodes' store-and-forward uplinks.
Each scenario prints sent / stored / duplicated / lost; all must end with nothing lost.

    ops/test -m fault -s
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from alpr.v1 import ingest_pb2
from prometheus_client import CollectorRegistry

from alpr_common.cassandra import connect
from alpr_common.retry import Backoff
from alpr_common.simulation import make_read
from alpr_common.timestamps import timestamp_in
from hub.config import HubConfig
from node.metrics import NodeMetrics
from node.queue import ReadQueue
from node.uplink import Uplink, UplinkSettings
from ops.cassandractl import CassandraCluster
from tests.hotlist_support import FAST, hotlist_stub
from tests.support import ROOT
from tests.test_hub_process import HubProcess

pytestmark = pytest.mark.fault
FAULT_PORT = int(os.environ.get("ALPR_TEST_FAULT_CASSANDRA_PORT", "29072"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CuttableProxy:
    """A TCP proxy on loopback that the test can cut (drop every connection, refuse new
    ones) and restore: a network partition between node and hub."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.port = free_port()
        self._cut = threading.Event()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._srv = socket.create_server(("127.0.0.1", self.port))
        self._srv.settimeout(0.2)
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by close()
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                up = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, up]
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
            self._socks.clear()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._srv.close()


@dataclass
class SimNode:
    node_id: str
    queue: ReadQueue
    uplink: Uplink
    sent: list[str]


@pytest.fixture(scope="module")
def cluster() -> Iterator[CassandraCluster]:
    c = CassandraCluster(ROOT / ".run" / f"test-cassandra-{FAULT_PORT}", nodes=3, base_port=FAULT_PORT, heap="512M")
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def stack(cluster: CassandraCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("fault")
    keyspace = f"alpr_fault_{uuid.uuid4().hex[:8]}"
    ports = [free_port(), free_port()]
    hubs: list[dict[str, Any]] = []
    for name, port in zip(("a", "b"), ports, strict=True):
        cfg = tmp / f"hub-{name}.yaml"
        cfg.write_text(
            f"insecure_dev: true\nhub_id: hub-{name}\nlisten_host: 127.0.0.1\ngrpc_port: {port}\nmetrics_port: -1\n"
            f"cassandra:\n  contact_points: {cluster.contact_points}\n  port: {cluster.port}\n  keyspace: {keyspace}\n"
            "  local_dc: dc1\n  replication_class: NetworkTopologyStrategy\n  replication_factor: 3\n"
            "  write_consistency: QUORUM\n  read_consistency: QUORUM\n  request_timeout_s: 30\n" + yaml.safe_dump(FAST)
        )
        hubs.append({"config": cfg, "port": port, "proc": HubProcess(cfg)})
    points = cluster.contact_points
    driver, session = connect(
        HubConfig.model_validate({"cassandra": {"contact_points": points, "port": cluster.port}}).cassandra
    )
    yield {"tmp": tmp, "keyspace": keyspace, "hubs": hubs, "session": session}
    for h in hubs:
        if h["proc"].proc.poll() is None:
            h["proc"].proc.send_signal(signal.SIGTERM)
            h["proc"].finish()
    driver.shutdown()


def start_nodes(tmp: Path, targets_for: list[list[str]], tag: str) -> list[SimNode]:
    nodes = []
    for i, targets in enumerate(targets_for):
        q = ReadQueue(tmp / f"{tag}-node{i}.sqlite", budget_bytes=10**8)
        up = Uplink(
            UplinkSettings(targets, window=16, heartbeat_interval_s=2.0, backoff=Backoff(0.1, 1.0),
                           connect_timeout_s=2.0),
            q, functools.partial(ingest_pb2.Heartbeat, node_id=f"{tag}-{i}"), NodeMetrics(CollectorRegistry()),
        )  # fmt: skip
        up.start()
        nodes.append(SimNode(f"{tag}-{i}", q, up, []))
    return nodes


def produce(nodes: list[SimNode], seconds: float, per_second: float, tag: str) -> threading.Thread:
    def run() -> None:
        n = 0
        end = time.time() + seconds
        while time.time() < end:
            for node in nodes:
                r = make_read(node_id=node.node_id, plate=f"{tag[:2].upper()}{n:05d}")
                node.queue.put(r.read_id, ingest_pb2.IngestRequest(read=r).SerializeToString())
                node.sent.append(r.read_id + "|" + r.plate_text)
                n += 1
            time.sleep(1.0 / per_second)

    th = threading.Thread(target=run)
    th.start()
    return th


def settle_and_count(
    stack: dict[str, Any], nodes: list[SimNode], scenario: str, timeout: float = 120
) -> dict[str, int]:
    deadline = time.time() + timeout
    while any(n.queue.depth() for n in nodes) and time.time() < deadline:
        time.sleep(0.2)
    for n in nodes:
        n.uplink.stop()
    ks, s = stack["keyspace"], stack["session"]
    sent = [x for n in nodes for x in n.sent]
    stored = dup = 0
    day = time.gmtime()
    from datetime import date

    today = date(day.tm_year, day.tm_mon, day.tm_mday)
    for item in sent:
        rid, plate = item.split("|")
        rows = s.execute(f"SELECT read_id FROM {ks}.reads_by_plate WHERE plate=%s AND day=%s", [plate, today]).all()
        by_id = s.execute(f"SELECT read_id FROM {ks}.reads_by_id WHERE read_id=%s", [uuid.UUID(rid)]).one()
        if rows and by_id:
            stored += 1
            dup += len(rows) - 1
    counts = {"sent": len(sent), "stored": stored, "duplicated": dup, "lost": len(sent) - stored,
              "unacked_left": sum(n.queue.depth() for n in nodes)}  # fmt: skip
    print(f"\n[{scenario}] sent {counts['sent']} / stored {counts['stored']} / duplicated {counts['duplicated']}"
          f" / lost {counts['lost']}")  # fmt: skip
    for n in nodes:
        n.queue.close()
    return counts


def test_kill_one_cassandra_node_during_ingest(cluster: CassandraCluster, stack: dict[str, Any]) -> None:
    targets = [f"127.0.0.1:{h['port']}" for h in stack["hubs"]]
    nodes = start_nodes(stack["tmp"], [targets, targets[::-1], targets], "cass")
    producer = produce(nodes, seconds=6, per_second=20, tag="ca")
    time.sleep(2)
    cluster.kill_node(2)
    producer.join()
    counts = settle_and_count(stack, nodes, "kill a Cassandra node")
    cluster.start_node(2)
    assert counts["lost"] == 0 and counts["duplicated"] == 0 and counts["sent"] > 100


def test_kill_a_hub_nodes_fail_over(stack: dict[str, Any]) -> None:
    a, b = stack["hubs"]
    targets = [f"127.0.0.1:{a['port']}", f"127.0.0.1:{b['port']}"]
    nodes = start_nodes(stack["tmp"], [targets, targets, targets], "hub")
    producer = produce(nodes, seconds=6, per_second=20, tag="hb")
    time.sleep(2)
    a["proc"].proc.send_signal(signal.SIGKILL)
    a["proc"].finish()
    producer.join()
    counts = settle_and_count(stack, nodes, "kill a hub")
    a["proc"] = HubProcess(a["config"])  # back for the next scenario
    assert counts["lost"] == 0 and counts["duplicated"] == 0 and counts["sent"] > 100


def test_cut_node_hub_link_backlog_drains(stack: dict[str, Any]) -> None:
    b = stack["hubs"][1]
    proxy = CuttableProxy(b["port"])
    try:
        nodes = start_nodes(stack["tmp"], [[f"127.0.0.1:{proxy.port}"]] * 2, "cut")
        producer = produce(nodes, seconds=6, per_second=20, tag="ct")
        time.sleep(1.5)
        proxy.cut()
        time.sleep(3)
        backlog = sum(n.queue.depth() for n in nodes)
        proxy.restore()
        producer.join()
        counts = settle_and_count(stack, nodes, "cut the node-hub link")
        print(f"[cut the node-hub link] backlog while cut: {backlog} reads")
        assert backlog > 50
        assert counts["lost"] == 0 and counts["duplicated"] == 0 and counts["unacked_left"] == 0
    finally:
        proxy.close()


def test_kill_the_bridge_relays_delivered_after_restart(cluster: CassandraCluster, stack: dict[str, Any]) -> None:
    from alpr.v1 import alert_pb2, alert_pb2_grpc, hotlist_pb2

    from tests.bridge_support import HOT_PLATE, BridgeProcess, WebhookReceiver, raise_alert, webhook_sink

    a, b = stack["hubs"]
    targets = [f"127.0.0.1:{a['port']}", f"127.0.0.1:{b['port']}"]
    hotlist_stub(targets[0]).AddEntry(
        hotlist_pb2.AddEntryRequest(expire_time=timestamp_in(timedelta(days=30)), plate=HOT_PLATE, state="IL", category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE,
                                    reason="fault suite", entered_by="o-1")
    )  # fmt: skip
    time.sleep(1.0)  # both hubs pick up the new hot-list version
    cad = WebhookReceiver()
    cfg = {
        "bridge_id": "fault-bridge", "agency_id": "joliet-pd", "hubs": targets, "metrics_port": -1,
        "shutdown_grace_s": 2, "insecure_dev": True,  # the fault hubs are plain-text development hubs
        "cassandra": {"contact_points": cluster.contact_points, "port": cluster.port, "keyspace": stack["keyspace"],
                      "local_dc": "dc1", "write_consistency": "QUORUM", "read_consistency": "QUORUM"},
        "relay": {"pending_scan_interval_s": 0.5},
        "delivery": {"initial_backoff_s": 0.2, "max_backoff_s": 1.0, "rescan_interval_s": 1.0, "max_attempts": 1000},
        "dispatch": [webhook_sink(cad.url)],
    }  # fmt: skip
    bridge = BridgeProcess(cfg, stack["tmp"] / "bridge").start()
    alerts = alert_pb2_grpc.AlertServiceStub(__import__("grpc").insecure_channel(targets[1]))
    acc = alert_pb2.Acceptance(characters_verified=True, state_verified=True, leads_check=alert_pb2.LEADS_CHECK_DONE,
                               action=alert_pb2.ENFORCEMENT_ACTION_TAKING_ACTION)  # fmt: skip
    decided: list[str] = []
    try:
        for i in range(12):
            alert_id, _ = raise_alert(targets[i % 2], f"fault-cam-{i}")
            alerts.DecideAlert(alert_pb2.DecideAlertRequest(alert_id=alert_id, officer_id="o-7", accept=acc))
            decided.append(alert_id)
            if i == 5:
                bridge.kill()  # crash mid-stream; the next decisions happen while it is down
            time.sleep(0.2)
        bridge.start()
        deadline = time.time() + 60
        keys = {f"{x}:valid_alert" for x in decided}
        while not keys <= set(cad.by_key) and time.time() < deadline:
            time.sleep(0.2)
        delivered = [k for k, _ in cad.deliveries if k in keys]
        lost = len(keys - set(cad.by_key))
        dup = len(delivered) - len(set(delivered))
        print(f"\n[kill the bridge] relays {len(keys)} / delivered {len(set(delivered))} / duplicated {dup}"
              f" (receiver de-duplicates by idempotency key) / lost {lost}")  # fmt: skip
        assert lost == 0
        assert bridge.terminate() == 0
    finally:
        if bridge.proc and bridge.proc.poll() is None:
            bridge.kill()
        cad.stop()
