"""Database trouble reaches the caller as UNAVAILABLE with what to do, not as UNKNOWN with a
driver class name.

A timeout or an unreachable Cassandra is an outage of one component: the caller (a node, the
bridge, an operator) should wait and try again, which is what gRPC's UNAVAILABLE tells clients.
A write that timed out may still have been applied (Cassandra's own rule), so the message says
to check a change before repeating it; reads and the hub's idempotent writes are safe to repeat.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from cassandra import CoordinationFailure, OperationTimedOut, Timeout, Unavailable
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionException

from hub.handlers import Behavior, Handler, rebuilt
from hub.principal import Context

log = logging.getLogger(__name__)

# An outage or overload of the database, as opposed to a bad statement (a bug: left as it is).
STORAGE_OUTAGES: tuple[type[BaseException], ...] = (
    Unavailable,
    Timeout,
    CoordinationFailure,
    OperationTimedOut,
    NoHostAvailable,
    ConnectionException,
)


def outage_message(method: str, exc: BaseException) -> str:
    """What the caller of ``method`` is told when the database failed it with ``exc``."""
    kind = type(exc).__name__
    return (
        f"the hub's database did not answer ({kind}) while serving {method.rsplit('/', 1)[-1]}: try again "
        "in a moment; if this was a change, check whether it was made before repeating it. "
        "Operators: the hub's log names the failure; check that Cassandra is up and not overloaded."
    )


async def _fail(method: str, exc: BaseException, context: Context) -> None:
    log.warning("%s failed on the database: %s: %s", method, type(exc).__name__, exc)
    await context.abort(grpc.StatusCode.UNAVAILABLE, outage_message(method, exc))


def _wrap(handler: Handler, method: str) -> Handler:
    def unary(behavior: Behavior, _streamed: bool) -> Behavior:
        async def run(request: Any, context: Context) -> Any:
            try:
                result = behavior(request, context)
                return await result if inspect.isawaitable(result) else result
            except STORAGE_OUTAGES as exc:
                await _fail(method, exc, context)

        return run

    def streaming(behavior: Behavior, _streamed: bool) -> Behavior:
        async def run(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                result = behavior(request, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        yield item
                elif inspect.isawaitable(result):
                    await result
            except STORAGE_OUTAGES as exc:
                await _fail(method, exc, context)

        return run

    return rebuilt(handler, unary, streaming)


class StorageErrorsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Outermost: a database outage anywhere in a call (sign-in and token checks included)
    ends it with UNAVAILABLE and :func:`outage_message`."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith("/alpr."):
            return handler
        return _wrap(handler, handler_call_details.method)
