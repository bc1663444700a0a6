"""One way to put a step in front of a servicer method, whatever its streaming kind: used by the
access-control, request-rule and storage-error interceptors."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc

from hub.principal import Context

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # not subscriptable at run time
Behavior = Callable[..., Any]  # the servicer method: (request or request iterator, context)
# (request or request iterator, context, whether the requests are streamed) -> what the servicer gets
Admit = Callable[[Any, Context, bool], Awaitable[Any]]


def guarded(handler: Handler, admit: Admit) -> Handler:
    """The same handler, with ``admit`` run on each call's request (or request iterator) first."""

    def unary(behavior: Behavior, streamed: bool) -> Behavior:
        async def run(request: Any, context: Context) -> Any:
            result = behavior(await admit(request, context, streamed), context)
            return await result if inspect.isawaitable(result) else result

        return run

    def streaming(behavior: Behavior, streamed: bool) -> Behavior:
        async def run(request: Any, context: Context) -> AsyncIterator[Any]:
            result = behavior(await admit(request, context, streamed), context)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            elif inspect.isawaitable(result):
                await result

        return run

    return rebuilt(handler, unary, streaming)


def rebuilt(
    handler: Handler,
    unary: Callable[[Behavior, bool], Behavior],
    streaming: Callable[[Behavior, bool], Behavior],
) -> Handler:
    """``handler`` with its behaviour replaced by ``unary(behavior, streamed)`` (unary answer) or
    ``streaming(behavior, streamed)`` (streamed answers), whatever its streaming kind."""
    kw = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary, False), **kw)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary, True), **kw)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream, False), **kw)
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream, True), **kw)
