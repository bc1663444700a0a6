"""Where relays and tickets go: signed webhooks, a gRPC stream, neighbouring agencies' hubs,
SMTP e-mail and files.

Every sink's ``deliver(key, kind, payload)`` returns once the receiver confirmed, or raises
``RetryableError`` (try again later: network, 5xx, UNAVAILABLE) or ``PermanentError``
(retrying cannot help: 4xx, refused by the sharing rules) — the outbox turns those into
backoff or a dead letter.

Webhook signature (receivers verify it with ``verify_signature``)::

    X-ALPR-Timestamp: 1767225600
    X-ALPR-Signature: t=1767225600,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
    Idempotency-Key: <key>          (the same on every retry of the same relay)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import grpc
from alpr.v1 import agency_pb2, agency_pb2_grpc, alert_pb2, hotlist_pb2, reads_pb2

from dispatch_bridge.config import NeighbourConfig, SinkConfig, TlsConfig

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-ALPR-Signature"
TIMESTAMP_HEADER = "X-ALPR-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


DeliverCall: TypeAlias = "grpc.aio.StreamStreamCall[agency_pb2.DeliverRequest, agency_pb2.DeliverResponse]"


class RetryableError(Exception):
    """Delivery failed for now; try again later."""


class PermanentError(Exception):
    """Delivery cannot succeed by retrying; dead-letter it (the message says why)."""


class Sink(Protocol):
    name: str

    async def deliver(self, key: str, kind: str, payload: bytes) -> None: ...

    async def close(self) -> None: ...


# --- payloads ------------------------------------------------------------------------------


def _enum(enum: Any, value: int, prefix: str) -> str:
    try:
        return str(enum.Name(value)).removeprefix(prefix).lower()
    except ValueError:
        return str(value)


def relay_to_json(r: agency_pb2.Relay) -> dict[str, Any]:
    """The webhook body of a relay: plate, state, category, source, place, time, camera, crop, decision."""
    d: dict[str, Any] = {
        "type": "relay",
        "idempotency_key": r.idempotency_key,
        "reason": _enum(agency_pb2.RelayReason, r.reason, "RELAY_REASON_"),
        "origin_agency_id": r.origin_agency_id,
        "origin_hub_id": r.origin_hub_id,
        "alert_id": r.alert_id,
        "plate": r.plate,
        "state": r.state,
        "categories": [_enum(hotlist_pb2.HotListCategory, c, "HOT_LIST_CATEGORY_") for c in r.categories],
        "sources": [_enum(hotlist_pb2.HotListSource, s, "HOT_LIST_SOURCE_") for s in r.sources],
        "location": {"latitude": r.location.latitude, "longitude": r.location.longitude}
        if r.HasField("location")
        else None,
        # fix, stale (the unit's last known position, location_age_s old) or none
        "location_quality": _enum(reads_pb2.LocationQuality, r.location_quality, "LOCATION_QUALITY_"),
        "location_age_s": round(r.location_age_s, 1),
        "capture_time": r.capture_time.ToJsonString() if r.HasField("capture_time") else None,
        "camera_id": r.camera_id,
        "node_id": r.node_id,
        "relayed_time": r.relayed_time.ToJsonString(),
    }
    if r.crop_jpeg:
        d["crop_jpeg_base64"] = base64.b64encode(r.crop_jpeg).decode()
    if r.crop_url:
        d["crop_url"] = r.crop_url
    if r.HasField("match"):
        e = r.match.entry
        d["hotlist_entry"] = {
            "plate": e.plate,
            "state": e.state,
            "category": _enum(hotlist_pb2.HotListCategory, e.category, "HOT_LIST_CATEGORY_"),
            "source": _enum(hotlist_pb2.HotListSource, e.source, "HOT_LIST_SOURCE_"),
            "reason": e.reason,
            "source_record_id": e.source_record_id,
            "match_kind": _enum(alert_pb2.MatchKind, r.match.kind, "MATCH_KIND_"),
            "score": round(r.match.score, 3),
            "state_mismatch": r.match.state_mismatch,
        }
    if r.HasField("disposition"):
        disp = r.disposition
        dec: dict[str, Any] = {
            "status": _enum(alert_pb2.AlertStatus, disp.status, "ALERT_STATUS_"),
            "officer_id": disp.officer_id,
            "decided_time": disp.decided_time.ToJsonString(),
            "note": disp.note,
            "amendment": disp.amendment,
        }
        if disp.WhichOneof("decision") == "accept":
            a = disp.accept
            dec.update(
                action=_enum(alert_pb2.EnforcementAction, a.action, "ENFORCEMENT_ACTION_"),
                characters_verified=a.characters_verified,
                state_verified=a.state_verified,
                leads_check=_enum(alert_pb2.LeadsCheck, a.leads_check, "LEADS_CHECK_"),
                on_other_assignment=a.on_other_assignment,
                supervisor_notified=a.supervisor_notified,
            )
        d["decision"] = dec
    else:
        d["decision"] = None
    return d


def body_of(kind: str, payload: bytes) -> dict[str, Any]:
    """The JSON document of an outbox entry."""
    if kind == "relay":
        return relay_to_json(agency_pb2.Relay.FromString(payload))
    return dict(json.loads(payload))


# --- signatures ----------------------------------------------------------------------------


def sign(secret: bytes, body: bytes, ts: int | None = None) -> tuple[str, str]:
    """(timestamp header, signature header) for ``body``."""
    t = int(time.time()) if ts is None else ts
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return str(t), f"t={t},v1={mac}"


def verify_signature(secret: bytes, header: str, body: bytes, tolerance_s: float = 300.0) -> bool:
    """Receiver side: the signature is valid and its timestamp within ``tolerance_s`` of now."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
        want = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    except (KeyError, ValueError):
        return False
    return abs(time.time() - t) <= tolerance_s and hmac.compare_digest(want, parts.get("v1", ""))


# --- TLS -----------------------------------------------------------------------------------


def _read(p: Path | None) -> bytes | None:
    return p.read_bytes() if p is not None else None


class _Bearer:
    """Adds ``authorization: Bearer TOKEN`` to every call (the hub's access control, hub/auth.py)."""

    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def _details(self, d: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        md = grpc.aio.Metadata(*(tuple(d.metadata or ())), self.header)
        return grpc.aio.ClientCallDetails(d.method, d.timeout, md, d.credentials, d.wait_for_ready)


# grpc.aio files each interceptor under one kind only: one class per call kind.
class _BearerUnaryUnary(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _BearerUnaryStream(_Bearer, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _BearerStreamStream(_Bearer, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(self._details(details), request_iterator)


def token_from_env(name: str | None) -> str | None:
    """The access token in environment variable ``name`` (None when not configured)."""
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise ValueError(f"environment variable {name} (token_env) is not set")
    return value


def grpc_channel(target: str, tls: TlsConfig | None, token: str | None = None) -> grpc.aio.Channel:
    """An asyncio channel; TLS (mTLS with a client cert) when configured; a bearer token when given."""
    opts: list[tuple[str, str | int]] = [("grpc.max_send_message_length", 8 * 1024 * 1024)]
    icpt: list[Any] | None = None  # grpc-stubs leave ClientInterceptor a must-cast placeholder
    if token:
        icpt = [c(token) for c in (_BearerUnaryUnary, _BearerUnaryStream, _BearerStreamStream)]
    if tls is None:
        return grpc.aio.insecure_channel(target, options=opts, interceptors=icpt)
    creds = grpc.ssl_channel_credentials(_read(tls.ca_file), _read(tls.key_file), _read(tls.cert_file))
    if tls.server_name:
        opts.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.aio.secure_channel(target, creds, options=opts, interceptors=icpt)


def _ssl_context(tls: TlsConfig | None) -> ssl.SSLContext | None:
    if tls is None:
        return None
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file and tls.key_file:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return ctx


_RETRYABLE_GRPC = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
}


def _grpc_error(where: str, e: grpc.aio.AioRpcError) -> Exception:
    msg = f"{where}: {e.code().name}: {e.details()}"
    return RetryableError(msg) if e.code() in _RETRYABLE_GRPC else PermanentError(msg)


# --- sinks ---------------------------------------------------------------------------------


class WebhookSink:
    """HTTP(S) POST of JSON, HMAC-SHA256 signed; 2xx = delivered, 408/425/429/5xx = retry, other 4xx = dead."""

    def __init__(self, cfg: SinkConfig) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.secret = cfg.signing_secret()
        self.ssl = _ssl_context(cfg.tls)

    def _post(self, key: str, body: bytes) -> None:
        ts, sig = sign(self.secret, body)
        req = urllib.request.Request(
            str(self.cfg.url),
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: ts,
                SIGNATURE_HEADER: sig,
                IDEMPOTENCY_HEADER: key,
                "User-Agent": "alpr-bridge/1",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_s, context=self.ssl) as resp:
                resp.read()
        except urllib.error.HTTPError as e:
            text = e.read()[:200].decode(errors="replace")
            if e.code in (408, 425, 429) or e.code >= 500:
                raise RetryableError(f"HTTP {e.code}: {text}") from None
            raise PermanentError(f"HTTP {e.code} (refused by the receiver): {text}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise RetryableError(f"{self.cfg.url}: {getattr(e, 'reason', e)}") from None

    async def deliver(self, key: str, kind: str, payload: bytes) -> None:
        body = json.dumps(body_of(kind, payload), sort_keys=True).encode()
        await asyncio.to_thread(self._post, key, body)

    async def close(self) -> None:
        return None


class FileSink:
    """Appends one JSON line per ticket event and fsyncs (receivers dedupe by ``key``)."""

    def __init__(self, cfg: SinkConfig) -> None:
        self.name = cfg.name
        assert cfg.path is not None
        self.path = cfg.path

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    async def deliver(self, key: str, kind: str, payload: bytes) -> None:
        doc = body_of(kind, payload)
        doc["key"] = key
        try:
            await asyncio.to_thread(self._append, (json.dumps(doc, sort_keys=True) + "\n").encode())
        except OSError as e:
            raise RetryableError(f"{self.path}: {e}") from None

    async def close(self) -> None:
        return None


class SmtpSink:
    """E-mails each ticket event to the help desk (Message-ID derived from the key)."""

    def __init__(self, cfg: SinkConfig) -> None:
        self.name = cfg.name
        self.cfg = cfg

    def _send(self, key: str, doc: dict[str, Any]) -> None:
        c = self.cfg
        msg = EmailMessage()
        msg["From"] = str(c.mail_from)
        msg["To"] = ", ".join(c.mail_to)
        msg["Subject"] = doc.get("subject") or f"ALPR {doc.get('type', 'event')} {key}"
        msg["Message-ID"] = f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@alpr-bridge>"
        msg.set_content(json.dumps(doc, indent=2, sort_keys=True))
        try:
            with smtplib.SMTP(str(c.smtp_host), c.smtp_port, timeout=c.timeout_s) as s:
                if c.starttls:
                    s.starttls(context=_ssl_context(c.tls) or ssl.create_default_context())
                if c.username:
                    s.login(c.username, os.environ.get(c.password_env or "", ""))
                s.send_message(msg)
        except smtplib.SMTPResponseException as e:
            if 400 <= e.smtp_code < 500:
                raise RetryableError(f"SMTP {e.smtp_code}: {e.smtp_error!r}") from None
            raise PermanentError(f"SMTP {e.smtp_code}: {e.smtp_error!r}") from None
        except (OSError, smtplib.SMTPException) as e:
            raise RetryableError(f"SMTP {c.smtp_host}:{c.smtp_port}: {e}") from None

    async def deliver(self, key: str, kind: str, payload: bytes) -> None:
        await asyncio.to_thread(self._send, key, body_of(kind, payload))

    async def close(self) -> None:
        return None


class GrpcStreamSink:
    """One long-lived ``DispatchReceiverService.Deliver`` stream; each relay waits for its ack."""

    def __init__(self, cfg: SinkConfig) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self._channel: grpc.aio.Channel | None = None
        self._out: asyncio.Queue[agency_pb2.DeliverRequest | None] | None = None
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def _ensure(self) -> None:
        async with self._lock:
            if self._reader is not None and not self._reader.done():
                return
            if self._channel is None:
                self._channel = grpc_channel(str(self.cfg.target), self.cfg.tls, token_from_env(self.cfg.token_env))
            out: asyncio.Queue[agency_pb2.DeliverRequest | None] = asyncio.Queue()
            self._out = out

            async def requests() -> AsyncIterator[agency_pb2.DeliverRequest]:
                while (m := await out.get()) is not None:
                    yield m

            call = agency_pb2_grpc.DispatchReceiverServiceStub(self._channel).Deliver(requests())
            self._reader = asyncio.create_task(self._read(call))

    async def _read(self, call: DeliverCall) -> None:
        err: Exception = RetryableError(f"{self.cfg.target}: stream ended")
        try:
            async for resp in call:
                fut = self._waiting.pop(resp.idempotency_key, None)
                if fut is not None and not fut.done():
                    fut.set_result(None)
        except grpc.aio.AioRpcError as e:
            err = _grpc_error(str(self.cfg.target), e)
        except asyncio.CancelledError:
            pass
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(err)
        self._waiting.clear()

    async def deliver(self, key: str, kind: str, payload: bytes) -> None:
        if kind != "relay":
            raise PermanentError("the gRPC dispatch sink carries relays only")
        await self._ensure()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[key] = fut
        assert self._out is not None
        await self._out.put(agency_pb2.DeliverRequest(relay=agency_pb2.Relay.FromString(payload)))
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.cfg.timeout_s)
        except TimeoutError:
            self._waiting.pop(key, None)
            raise RetryableError(f"{self.cfg.target}: no ack within {self.cfg.timeout_s} s") from None

    async def close(self) -> None:
        if self._out is not None:
            await self._out.put(None)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        if self._channel is not None:
            await self._channel.close(None)


class AgencySink:
    """Relays to a neighbouring agency's hub, after the sharing rules allow it (AuthorizeShare on our hub)."""

    def __init__(self, cfg: NeighbourConfig, hub_channel: grpc.aio.Channel, requested_by: str) -> None:
        self.name = f"agency:{cfg.agency_id}"
        self.cfg = cfg
        self.hub = agency_pb2_grpc.AgencyExchangeServiceStub(hub_channel)
        self.requested_by = requested_by  # empty: the hub takes it from the bridge's credentials
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def deliver(self, key: str, kind: str, payload: bytes) -> None:
        relay = agency_pb2.Relay.FromString(payload)
        try:
            auth = await self.hub.AuthorizeShare(
                agency_pb2.AuthorizeShareRequest(
                    agency_id=self.cfg.agency_id,
                    scope=agency_pb2.SHARE_SCOPE_ALERTS,
                    subject=f"alert {relay.alert_id} ({key})",
                    requested_by=self.requested_by,
                    reason=_enum(agency_pb2.RelayReason, relay.reason, "RELAY_REASON_"),
                ),
                timeout=self.cfg.timeout_s,
            )
        except grpc.aio.AioRpcError as e:
            raise _grpc_error("sharing rules (our hub)", e) from None
        endpoint = auth.agency.endpoint
        ch = self._channels.get(endpoint)
        if ch is None:
            tls = self.cfg.tls
            if tls is not None and not tls.server_name and auth.agency.tls_identity:
                tls = tls.model_copy(update={"server_name": auth.agency.tls_identity})
            ch = self._channels[endpoint] = grpc_channel(endpoint, tls, token_from_env(self.cfg.token_env))
        try:
            await agency_pb2_grpc.AgencyExchangeServiceStub(ch).ReceiveSharedAlert(
                agency_pb2.ReceiveSharedAlertRequest(relay=relay), timeout=self.cfg.timeout_s
            )
        except grpc.aio.AioRpcError as e:
            raise _grpc_error(f"agency {self.cfg.agency_id} at {endpoint}", e) from None

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close(None)


def make_sink(cfg: SinkConfig) -> Sink:
    if cfg.kind == "webhook":
        return WebhookSink(cfg)
    if cfg.kind == "grpc":
        return GrpcStreamSink(cfg)
    if cfg.kind == "smtp":
        return SmtpSink(cfg)
    return FileSink(cfg)
