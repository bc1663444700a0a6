"""A database outage during a call reaches the caller as UNAVAILABLE with what to do, for every
streaming kind, on a real gRPC server on loopback; other failures are left as they are."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from cassandra import ConsistencyLevel, InvalidRequest, WriteTimeout, WriteType
from cassandra.cluster import NoHostAvailable

from hub.storage_errors import StorageErrorsInterceptor

SERVICE = "alpr.v1.StorageErrorsProbe"


def _raise(what: str) -> None:
    if what == "timeout":
        raise WriteTimeout(
            "Operation timed out", consistency=ConsistencyLevel.ONE, required_responses=1, write_type=WriteType.CAS
        )
    if what == "down":
        raise NoHostAvailable("no host", {"127.0.0.1:9042": ConnectionRefusedError()})
    if what == "bug":
        raise InvalidRequest("unconfigured table nope")


async def unary(request: bytes, context: Any) -> bytes:
    await asyncio.sleep(0)
    _raise(request.decode())
    return b"ok"


async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield b"first"
    _raise(request.decode())
    yield b"second"


async def client_stream(requests: AsyncIterator[bytes], context: Any) -> bytes:
    async for r in requests:
        _raise(r.decode())
    return b"ok"


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    """A gRPC server with only the storage-error interceptor, on its own event loop (as HubThread)."""
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(interceptors=[StorageErrorsInterceptor()])
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    SERVICE,
                    {
                        "Unary": grpc.unary_unary_rpc_method_handler(unary),
                        "Stream": grpc.unary_stream_rpc_method_handler(stream),
                        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
                    },
                )
            ]
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    yield f"127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    t.join(10)


def _rpc(ch: grpc.Channel, kind: str, method: str) -> Any:
    """A raw-bytes callable for ``method`` of the probe service."""
    make: Any = getattr(ch, kind)
    return make(f"/{SERVICE}/{method}", None, None)


def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    err: Any = info.value
    return err.code(), err.details()


@pytest.mark.parametrize("what", ["timeout", "down"])
def test_outages_are_unavailable_with_what_to_do(target: str, what: str) -> None:
    with grpc.insecure_channel(target) as ch:
        calls = {
            "Unary": lambda: _rpc(ch, "unary_unary", "Unary")(what.encode(), timeout=10),
            "Stream": lambda: list(_rpc(ch, "unary_stream", "Stream")(what.encode(), timeout=10)),
            "ClientStream": lambda: _rpc(ch, "stream_unary", "ClientStream")(iter([what.encode()]), timeout=10),
        }
        for method, call in calls.items():
            code, details = _code(call)
            assert code == grpc.StatusCode.UNAVAILABLE, (method, code, details)
            kind = "WriteTimeout" if what == "timeout" else "NoHostAvailable"
            assert f"did not answer ({kind}) while serving {method}" in details and "try again" in details


def test_a_stream_keeps_what_it_sent_before_the_outage(target: str) -> None:
    got: list[bytes] = []
    with grpc.insecure_channel(target) as ch, pytest.raises(grpc.RpcError) as info:
        for item in _rpc(ch, "unary_stream", "Stream")(b"timeout", timeout=10):
            got.append(item)
    assert got == [b"first"]
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_bad_statement_is_not_called_an_outage(target: str) -> None:
    with grpc.insecure_channel(target) as ch:
        code, details = _code(lambda: _rpc(ch, "unary_unary", "Unary")(b"bug", timeout=10))
        assert code == grpc.StatusCode.UNKNOWN and "did not answer" not in details
        assert _rpc(ch, "unary_unary", "Unary")(b"fine", timeout=10) == b"ok"
