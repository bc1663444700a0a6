"""Helpers for the hot-list / alert tests: two hubs on one keyspace, gRPC clients."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from alpr.v1 import hotlist_pb2, hotlist_pb2_grpc
from alpr.v1.hotlist_pb2 import HotListSource, ImportFormat

SAMPLES = Path("/work/shared/data/hotlists")
if not SAMPLES.exists():  # the layout the repo documents: ../shared next to the checkout
    SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "hotlists"

FAST = {
    "hotlists": {"poll_interval_s": 0.05, "notice_interval_s": 1.0},
    "alerts": {"feed_poll_interval_s": 0.05, "unattended_after_s": 2.0, "pending_scan_interval_s": 0.5},
}


def hotlist_stub(target: str) -> hotlist_pb2_grpc.HotListServiceStub:
    return hotlist_pb2_grpc.HotListServiceStub(grpc.insecure_channel(target))


def import_file(
    target: str,
    data: bytes,
    fmt: ImportFormat.ValueType,
    source: HotListSource.ValueType,
    skip_bad: bool = False,
    dry_run: bool = False,
    by: str = "tester",
) -> tuple[hotlist_pb2.ImportResult | None, grpc.RpcError | None]:
    def reqs() -> Iterator[hotlist_pb2.ImportListRequest]:
        yield hotlist_pb2.ImportListRequest(
            header=hotlist_pb2.ImportHeader(
                format=fmt,
                source=source,
                skip_bad=skip_bad,
                dry_run=dry_run,
                imported_by=by,
            )
        )
        for i in range(0, len(data), 65536):
            yield hotlist_pb2.ImportListRequest(data=data[i : i + 65536])

    result = None
    with grpc.insecure_channel(target) as ch:
        try:
            for resp in hotlist_pb2_grpc.HotListServiceStub(ch).ImportList(reqs(), timeout=120):
                if resp.WhichOneof("payload") == "result":
                    result = resp.result
        except grpc.RpcError as e:
            return result, e
    return result, None


def import_ok(
    target: str, data: bytes, fmt: ImportFormat.ValueType, source: HotListSource.ValueType, **kw: Any
) -> hotlist_pb2.ImportResult:
    """The result of an import that must succeed."""
    result, err = import_file(target, data, fmt, source, **kw)
    assert err is None, err
    assert result is not None, "the hub sent no result"
    return result


@dataclass
class Refusal:
    code: grpc.StatusCode
    details: str
    result: hotlist_pb2.ImportResult | None  # the report the hub sent before refusing, if any


def import_refused(
    target: str, data: bytes, fmt: ImportFormat.ValueType, source: HotListSource.ValueType, **kw: Any
) -> Refusal:
    """How an import that must fail was refused."""
    result, err = import_file(target, data, fmt, source, **kw)
    assert err is not None, f"the import succeeded: {result}"
    return Refusal(err.code(), err.details() or "", result)


class Subscription:
    """A raw Subscribe stream: collects responses on a thread, sends acks on demand."""

    def __init__(self, target: str, node_id: str, have: int) -> None:
        self._out: queue.Queue[hotlist_pb2.SubscribeRequest | None] = queue.Queue()
        self._out.put(
            hotlist_pb2.SubscribeRequest(start=hotlist_pb2.SubscribeStart(node_id=node_id, have_version=have))
        )
        self.channel = grpc.insecure_channel(target)
        self.responses: queue.Queue[hotlist_pb2.SubscribeResponse] = queue.Queue()
        self.error: grpc.RpcError | None = None
        self._call = hotlist_pb2_grpc.HotListServiceStub(self.channel).Subscribe(self._iter())
        self._t = threading.Thread(target=self._drain, daemon=True)
        self._t.start()

    def _iter(self) -> Iterator[hotlist_pb2.SubscribeRequest]:
        while (m := self._out.get()) is not None:
            yield m

    def _drain(self) -> None:
        try:
            for r in self._call:
                self.responses.put(r)
        except grpc.RpcError as e:
            self.error = e

    def ack(self, version: int) -> None:
        self._out.put(hotlist_pb2.SubscribeRequest(ack=hotlist_pb2.SubscribeAck(version=version)))

    def next(self, timeout: float = 10) -> hotlist_pb2.SubscribeResponse:
        return self.responses.get(timeout=timeout)

    def until_current(self, version: int, timeout: float = 10) -> list[hotlist_pb2.SubscribeResponse]:
        """Responses up to a VersionNotice of at least ``version``."""
        got = []
        while True:
            r = self.next(timeout)
            got.append(r)
            if r.WhichOneof("payload") == "current" and r.current.version >= version:
                return got

    def close(self) -> None:
        self._out.put(None)
        self._call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leave RpcContext.cancel untyped
        self.channel.close()
