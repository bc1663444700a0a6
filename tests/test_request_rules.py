"""Request rules declared in the protos (buf.validate), enforced by the hub before its servicers:
unary requests, client-streamed messages, and per read / heartbeat on the ingest stream."""

from __future__ import annotations

import importlib
import pkgutil
import queue
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import TypeVar

import alpr.v1
import grpc
import pytest
from alpr.v1 import alert_pb2, alert_pb2_grpc, hotlist_pb2, hotlist_pb2_grpc, ingest_pb2, reads_pb2
from google.protobuf import message_factory

from alpr_common.simulation import make_read
from alpr_common.timestamps import timestamp_in
from hub.request_rules import problem
from tests.access_support import AuthHub, call
from tests.support import HubThread, read_request, run_stream

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


def _refusal(fn: grpc.UnaryUnaryMultiCallable[RequestT, ResponseT], request: RequestT) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        fn(request, timeout=30)
    return err.value.code(), err.value.details() or ""


def test_every_request_message_has_rules_that_compile() -> None:
    """A rule that does not compile would refuse every call of its RPC: compile them all here."""
    seen = 0
    for mod in pkgutil.iter_modules(alpr.v1.__path__):
        if not mod.name.endswith("_pb2"):
            continue
        pb = importlib.import_module(f"alpr.v1.{mod.name}")
        for svc in pb.DESCRIPTOR.services_by_name.values():
            for method in svc.methods:
                message = message_factory.GetMessageClass(method.input_type)()
                problem(message)  # raises CompilationError on a broken rule
                seen += 1
    assert seen >= 30


def test_field_paths_name_nested_and_repeated_fields() -> None:
    read = make_read()
    read.char_confidences[:] = [0.9, 1.5]
    p = problem(ingest_pb2.IngestRequest(read=read))
    assert p is not None and p.path == "read.char_confidences[1]" and p.rule == "float.gte_lte"
    assert p.message.startswith("field `read.char_confidences[1]`: ")
    assert problem(make_read()) is None
    read = make_read()
    read.read_id = uuid.uuid4().hex  # a UUID, but not in its canonical form
    p = problem(read)
    assert p is not None and p.path == "read_id" and "UUID" in p.message


def test_unary_requests_are_refused_with_the_field_path(session_hub: HubThread) -> None:
    with grpc.insecure_channel(session_hub.target) as ch:
        hl = hotlist_pb2_grpc.HotListServiceStub(ch)
        code, msg = _refusal(
            hl.AddEntry,
            hotlist_pb2.AddEntryRequest(
                expire_time=timestamp_in(timedelta(days=30)),
                plate="RUL123",
                state="IL",
                reason="stolen",
                entered_by="ofc-1",
            ),
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("field `category`: "), msg
        code, msg = _refusal(
            hl.AddEntry,
            hotlist_pb2.AddEntryRequest(expire_time=timestamp_in(timedelta(days=30)),
                plate="RUL123", state="IL", category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE, reason=" \t",
                entered_by="ofc-1",
            ),
        )  # fmt: skip
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "field `reason`: is required" in msg, msg
        code, msg = _refusal(hl.ListEntries, hotlist_pb2.ListEntriesRequest(limit=10_001))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("field `limit`: "), msg
        alerts = alert_pb2_grpc.AlertServiceStub(ch)
        code, msg = _refusal(alerts.GetAlert, alert_pb2.GetAlertRequest(alert_id="not-an-id"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg == "field `alert_id`: must be a valid UUID", msg
        # A valid request still reaches the servicer (and gets its answer, here NOT_FOUND).
        code, _ = _refusal(alerts.GetAlert, alert_pb2.GetAlertRequest(alert_id=str(uuid.uuid4())))
        assert code == grpc.StatusCode.NOT_FOUND


def test_client_streamed_messages_are_checked(session_hub: HubThread) -> None:
    def header_only() -> Iterator[hotlist_pb2.ImportListRequest]:
        yield hotlist_pb2.ImportListRequest(
            header=hotlist_pb2.ImportHeader(source=hotlist_pb2.HOT_LIST_SOURCE_SCOFFLAW, imported_by="t")
        )

    with grpc.insecure_channel(session_hub.target) as ch:
        with pytest.raises(grpc.RpcError) as err:
            list(hotlist_pb2_grpc.HotListServiceStub(ch).ImportList(header_only(), timeout=30))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (err.value.details() or "").startswith("field `header.format`: "), err.value.details()

        out: queue.Queue[hotlist_pb2.SubscribeRequest | None] = queue.Queue()
        out.put(hotlist_pb2.SubscribeRequest(start=hotlist_pb2.SubscribeStart(node_id="pole-9", have_version=-1)))

        def subscribe() -> Iterator[hotlist_pb2.SubscribeRequest]:
            while (m := out.get()) is not None:
                yield m

        with pytest.raises(grpc.RpcError) as err:
            list(hotlist_pb2_grpc.HotListServiceStub(ch).Subscribe(subscribe(), timeout=30))
        out.put(None)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (err.value.details() or "").startswith("field `start.have_version`: "), err.value.details()


def test_ingest_answers_each_broken_read_and_heartbeat_and_the_stream_lives(session_hub: HubThread) -> None:
    good_before, good_after = make_read(), make_read()
    bad_id = make_read()
    bad_id.read_id = "R-1"
    bad_text = make_read()
    bad_text.plate_text = "ABC\u00c91"  # not ASCII
    bad_box = make_read()
    bad_box.plate_box.x1 = -3
    bad_kind = make_read(kind=reads_pb2.NODE_KIND_UNSPECIFIED)
    heartbeat = ingest_pb2.Heartbeat(node_id="rules-node", node_kind=7)  # type: ignore[arg-type]  # no such kind
    reqs = [
        read_request(good_before),
        *(read_request(r) for r in (bad_id, bad_text, bad_box, bad_kind)),
        ingest_pb2.IngestRequest(heartbeat=heartbeat),
        read_request(good_after),
    ]
    result = run_stream(session_hub.target, reqs)
    assert result.status == grpc.StatusCode.OK
    assert set(result.acks) == {good_before.read_id, good_after.read_id}
    expect = {
        "R-1": ("read_id", "field `read_id`: must be a valid UUID"),
        bad_text.read_id: ("plate_text", "field `plate_text`: "),
        bad_box.read_id: ("plate_box.x1", "field `plate_box.x1`: "),
        bad_kind.read_id: ("node_kind", "field `node_kind`: "),
        "": ("heartbeat.node_kind", "field `heartbeat.node_kind`: "),
    }
    for read_id, (field, start) in expect.items():
        err = result.errors[read_id]
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and not err.retryable
        assert err.field == field and err.message.startswith(start), (read_id, err)
    assert not result.heartbeat_acks  # the broken heartbeat was answered with an error, not an ack


def test_rules_see_the_identity_stamped_by_access_control(
    cassandra: tuple[list[str], int], cql: object, session_hub: HubThread
) -> None:
    """With access control the hub fills entered_by from the token before the rules run, so a
    request without it is accepted; without access control the same request is refused."""
    request = hotlist_pb2.AddEntryRequest(
        expire_time=timestamp_in(timedelta(days=30)),
        plate="STMP123",
        state="IL",
        category=hotlist_pb2.HOT_LIST_CATEGORY_STOLEN_VEHICLE,
        reason="stolen",
    )
    with grpc.insecure_channel(session_hub.target) as ch:
        code, msg = _refusal(hotlist_pb2_grpc.HotListServiceStub(ch).AddEntry, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("field `entered_by`: "), msg
    hub = AuthHub(cassandra, cql)
    try:
        token = hub.token("sup-r", "supervisor")
        resp = call(hotlist_pb2_grpc.HotListServiceStub(hub.channel).AddEntry, request, token)
        assert resp.entry.entered_by == "sup-r"
    finally:
        hub.stop()
