"""Request rules declared in the protos (``buf.validate`` annotations), checked by one cached
protovalidate validator before a servicer sees a request.

Every unary request and every message of a client stream passes through
:class:`RequestRulesInterceptor`; a violation ends the call with INVALID_ARGUMENT and a message
that names the field path (``field `start.node_id`: value length must be at least 1
characters``). The ingest stream is the exception: a bad read or heartbeat must not end the
stream, so :class:`hub.ingest.IngestServicer` calls :func:`problem` per message and answers
that message with a per-read error instead.

What the rules cannot say (limits from the hub's config, the clock, the caller's identity,
state in Cassandra) stays in the servicers and in :mod:`hub.validation`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import protovalidate
from google.protobuf.message import Message

from hub.handlers import Handler, guarded
from hub.principal import Context

# One validator for the process: it compiles each message type's rules once and caches them.
_VALIDATOR = protovalidate.Validator()

# Methods whose servicer applies the rules per streamed message (so one bad message does not end
# the stream); the interceptor leaves them alone.
PER_MESSAGE_METHODS = frozenset({"/alpr.v1.IngestService/Ingest"})


@dataclass(frozen=True)
class RuleProblem:
    """The first rule a message breaks: ``path`` like ``read.plate_box``, ``rule`` like ``string.uuid``."""

    path: str
    rule: str
    reason: str

    @property
    def message(self) -> str:
        return f"field `{self.path}`: {self.reason}" if self.path else self.reason

    @property
    def label(self) -> str:
        """A short stable label for metrics: ``bad_`` and the top-level field (``bad_plate_box``)."""
        return "bad_" + (self.path.split(".")[0].split("[")[0] or "message")

    def within(self, parent: str) -> RuleProblem:
        """The same problem seen from the message that holds this one in its field ``parent``."""
        return RuleProblem(f"{parent}.{self.path}" if self.path else parent, self.rule, self.reason)


def _path(violation: protovalidate.Violation) -> str:
    parts: list[str] = []
    field = violation.proto.field
    for el in field.elements if field is not None else []:
        name = el.field_name
        sub = el.subscript
        if sub is not None and sub.field is not None:
            key = sub.value
            name += f"[{key!r}]" if isinstance(key, str) else f"[{key}]"
        parts.append(name)
    return ".".join(parts)


def problem(message: Message) -> RuleProblem | None:
    """The first rule ``message`` breaks (its own or a nested message's), or None."""
    violations = _VALIDATOR.collect_violations(message, fail_fast=True)
    if not violations:
        return None
    v = violations[0].proto
    return RuleProblem(_path(violations[0]), v.rule_id or "", v.message or "breaks a rule")


async def _enforce(message: Any, context: Context) -> None:
    if isinstance(message, Message) and (p := problem(message)) is not None:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, p.message)


async def _checked(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
    async for message in requests:
        await _enforce(message, context)
        yield message


async def _admit(request: Any, context: Context, streamed: bool) -> Any:
    if streamed:
        return _checked(request, context)
    await _enforce(request, context)
    return request


class RequestRulesInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Checks every request message against its proto's rules (after authentication, which
    stamps identity fields, so that rules see what the servicer will see)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method in PER_MESSAGE_METHODS:
            return handler
        if not handler_call_details.method.startswith("/alpr."):  # health, reflection
            return handler
        return guarded(handler, _admit)
