"""A start-up that fails part-way closes everything it opened: no Cassandra cluster, bound
port, open file, thread or task is left behind (hub, dispatch bridge, edge node)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from cassandra.cluster import Cluster, Session

import dispatch_bridge.bridge
import hub.server
from alpr_common.cassandra import CassandraConfig
from dispatch_bridge.bridge import Bridge
from dispatch_bridge.config import BridgeConfig
from hub.retention import RetentionMonitor
from node.config import NodeConfig
from node.recognition.types import Box, FrameRecognizer, Image, PlateResult
from node.runtime import NodeRuntime
from tests.conftest import make_hub_config
from tests.support import HubThread


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port with a listening socket on it (nobody else can bind it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class ClusterSpy:
    """Wraps a module's ``connect`` to keep the clusters it opens."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: Any) -> None:
        self.clusters: list[Cluster] = []
        real = module.connect

        def connect(cfg: CassandraConfig) -> tuple[Cluster, Session]:
            cluster, session = real(cfg)
            self.clusters.append(cluster)
            return cluster, session

        monkeypatch.setattr(module, "connect", connect)


def new_threads(before: set[threading.Thread], timeout: float = 10.0) -> set[threading.Thread]:
    """Threads started since ``before`` that are still alive after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = {t for t in threading.enumerate() if t not in before and t.is_alive()}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


async def _start_hub(cfg: Any) -> list[asyncio.Task[Any]]:
    """create_server must raise; returns the tasks still alive on the loop afterwards."""
    with pytest.raises(Exception) as err:
        await hub.server.create_server(cfg)
    assert not isinstance(err.value, AssertionError)
    await asyncio.sleep(0.1)
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


@pytest.mark.parametrize("failure", ["metrics port taken", "gRPC port taken", "a part's start() fails"])
def test_hub_start_up_failure_closes_what_it_opened(
    cassandra: tuple[list[str], int],
    keyspace: str,
    session_hub: HubThread,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    spy = ClusterSpy(monkeypatch, hub.server)
    grpc_port = free_port()
    with taken_port() as taken:
        overrides: dict[str, Any] = {"grpc_port": grpc_port, "metrics_port": 0}
        if failure == "metrics port taken":
            overrides["metrics_port"] = taken
        elif failure == "gRPC port taken":
            overrides["grpc_port"] = taken
        else:

            def broken_start(self: RetentionMonitor) -> None:
                raise RuntimeError("retention monitor could not start")

            monkeypatch.setattr(RetentionMonitor, "start", broken_start)
        cfg = make_hub_config(cassandra, keyspace, hub_id="failing-hub", **overrides)
        before = set(threading.enumerate())
        leftover_tasks = asyncio.run(_start_hub(cfg))
    assert leftover_tasks == []
    assert len(spy.clusters) == 1 and spy.clusters[0].is_shutdown, "the Cassandra cluster was left open"
    if failure != "gRPC port taken":
        assert port_is_free(grpc_port), "the gRPC server still holds its port"
    assert new_threads(before) == set(), "threads left running"


def test_hub_start_up_succeeds_after_a_failed_one(
    cassandra: tuple[list[str], int], keyspace: str, session_hub: HubThread
) -> None:
    """The ports a failed start-up held are usable at once by the next start."""
    grpc_port, metrics_port = free_port(), free_port()
    with taken_port() as taken:
        cfg = make_hub_config(cassandra, keyspace, hub_id="retry-hub", grpc_port=grpc_port, metrics_port=taken)
        asyncio.run(_start_hub(cfg))
    ok = HubThread(make_hub_config(cassandra, keyspace, grpc_port=grpc_port, metrics_port=metrics_port)).start()
    try:
        assert ok.port == grpc_port and ok.metrics_port == metrics_port
    finally:
        ok.stop()


def _bridge_config(cassandra: tuple[list[str], int], keyspace: str, target: str, metrics_port: int) -> BridgeConfig:
    points, port = cassandra
    return BridgeConfig.model_validate(
        {
            "insecure_dev": True,
            "bridge_id": "failing-bridge",
            "hubs": [target],
            "metrics_host": "127.0.0.1",
            "metrics_port": metrics_port,
            "cassandra": {
                "contact_points": points,
                "port": port,
                "keyspace": keyspace,
                "write_consistency": "ONE",
                "read_consistency": "ONE",
            },
        }
    )


async def _start_bridge(cfg: BridgeConfig) -> list[asyncio.Task[Any]]:
    with pytest.raises(OSError):
        await Bridge(cfg).start()
    await asyncio.sleep(0.1)
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


def test_bridge_start_up_failure_closes_what_it_opened(
    cassandra: tuple[list[str], int], keyspace: str, session_hub: HubThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = ClusterSpy(monkeypatch, dispatch_bridge.bridge)
    with taken_port() as taken:
        cfg = _bridge_config(cassandra, keyspace, session_hub.target, taken)
        before = set(threading.enumerate())
        leftover_tasks = asyncio.run(_start_bridge(cfg))
    assert leftover_tasks == [], "the bridge's follower, scanner or workers kept running"
    assert len(spy.clusters) == 1 and spy.clusters[0].is_shutdown, "the Cassandra cluster was left open"
    assert new_threads(before) == set(), "threads left running"


class NoPlates(FrameRecognizer):
    """A recognizer that finds nothing (this test is about the node's start-up, not recognition)."""

    def recognize(
        self, frame: Image, skip_ocr: Callable[[Box], bool] | None = None, regions: list[Box] | None = None
    ) -> list[PlateResult]:
        return []

    def versions(self) -> dict[str, str]:
        return {}


def _node_config(tmp_path: Path, metrics_port: int) -> NodeConfig:
    frames = tmp_path / "frames"
    frames.mkdir(exist_ok=True)
    for i in range(3):
        cv2.imwrite(str(frames / f"{i:03d}.png"), np.full((120, 160, 3), 60 + i, np.uint8))
    return NodeConfig.model_validate(
        {
            "insecure_dev": True,
            "node_id": "car-9",
            "kind": "FIXED",
            "state_dir": str(tmp_path / "state"),
            "location": {"latitude": 41.52, "longitude": -88.08},
            "cameras": [{"camera_id": "car-9-front", "source": str(frames), "loop": True}],
            "hub": {"targets": [f"127.0.0.1:{free_port()}"], "backoff_initial_s": 0.05, "backoff_max_s": 0.2},
            "metrics_host": "127.0.0.1",
            "metrics_port": metrics_port,
        }
    )


def _assert_node_closed(node: NodeRuntime) -> None:
    with pytest.raises(sqlite3.ProgrammingError):
        node.queue.depth()  # the read queue's database is closed
    assert node.hotlist is not None
    with pytest.raises(sqlite3.ProgrammingError):
        node.hotlist.local.entries()  # so is the local hot list's


def test_node_start_up_failure_with_metrics_port_taken_closes_its_files(tmp_path: Path) -> None:
    with taken_port() as taken:
        before = set(threading.enumerate())
        node = NodeRuntime(_node_config(tmp_path, taken), recognizer=NoPlates())
        with pytest.raises(OSError):
            node.start()
    _assert_node_closed(node)
    assert new_threads(before) == set(), "threads left running"


def test_node_start_up_failure_late_stops_threads_uplink_sync_and_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics_port = free_port()
    spawn = NodeRuntime._spawn

    def spawn_until_status(self: NodeRuntime, name: str, target: Any, *args: Any) -> None:
        if name == "status":
            raise RuntimeError("can't start new thread")
        spawn(self, name, target, *args)

    monkeypatch.setattr(NodeRuntime, "_spawn", spawn_until_status)
    before = set(threading.enumerate())
    node = NodeRuntime(_node_config(tmp_path, metrics_port), recognizer=NoPlates())
    with pytest.raises(RuntimeError, match="can't start new thread"):
        node.start()
    assert node._threads, "the camera and pipeline threads had started"
    _assert_node_closed(node)
    assert port_is_free(metrics_port), "the metrics endpoint still holds its port"
    assert new_threads(before) == set(), "camera, pipeline, uplink or hot-list threads left running"
