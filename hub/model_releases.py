"""``ModelReleaseService``: signed model releases stored in chunks, and their staged rollout.

Upload: the manifest and its signature come first and are checked (a trusted release key, a
release id not yet taken); each file's bytes follow in manifest order, are cut into chunks of
``chunk_bytes`` and written under a fresh upload id while their SHA-256 is computed. Only when
every file has its manifest size and hash is the release row written (``IF NOT EXISTS``), so a
truncated or tampered upload leaves no release, only chunks of an upload nobody names (deleted
on refusal).

Rollout: one versioned log (:class:`hub.version_log.LogMirror`), each row the whole rollout
after a change. What a unit should run follows from the latest row, the unit's id and groups
(:func:`assignment`); it is pushed on the unit's configuration stream
(:mod:`hub.fleet_config`), whose acknowledgements carry the unit's model reports back here. A
failure reported by a unit the active rollout reached pauses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

import grpc
from alpr.v1 import fleet_models_pb2, fleet_models_pb2_grpc
from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from prometheus_client import CollectorRegistry, Gauge

from alpr_common.cassandra import CassandraStore, Row, insert_cql
from alpr_common.model_release import Manifest, ReleaseError, load_public_key, parse_manifest, verify
from alpr_common.timestamps import now_utc, to_timestamp, utc_or_none
from hub.audit import AuditLog
from hub.config import HubConfig
from hub.principal import Context
from hub.version_log import LogMirror

log = logging.getLogger(__name__)

LOG = "main"
CANARY, PERCENT, ALL = "CANARY", "PERCENT", "ALL"
ACTIVE, PAUSED, ROLLED_BACK = "ACTIVE", "PAUSED", "ROLLED_BACK"
_STAGE_PROTO = {
    CANARY: fleet_models_pb2.ROLLOUT_STAGE_CANARY,
    PERCENT: fleet_models_pb2.ROLLOUT_STAGE_PERCENT,
    ALL: fleet_models_pb2.ROLLOUT_STAGE_ALL,
}
_STAGE_NAME = {v: k for k, v in _STAGE_PROTO.items()}
_STATUS_PROTO = {
    ACTIVE: fleet_models_pb2.ROLLOUT_STATUS_ACTIVE,
    PAUSED: fleet_models_pb2.ROLLOUT_STATUS_PAUSED,
    ROLLED_BACK: fleet_models_pb2.ROLLOUT_STATUS_ROLLED_BACK,
}
STATE_NAMES = {
    fleet_models_pb2.NODE_MODEL_STATE_RUNNING: "RUNNING",
    fleet_models_pb2.NODE_MODEL_STATE_DOWNLOADING: "DOWNLOADING",
    fleet_models_pb2.NODE_MODEL_STATE_FAILED: "FAILED",
    fleet_models_pb2.NODE_MODEL_STATE_WAITING: "WAITING",
}
_STATE_PROTO = {v: k for k, v in STATE_NAMES.items()}


def bucket(node_id: str) -> int:
    """A unit's stable place (0-99) in percentage stages: the same units first, for every release."""
    return int(hashlib.sha256(node_id.encode()).hexdigest()[:8], 16) % 100


@dataclass(frozen=True)
class Rollout:
    version: int
    release: str
    previous: str
    stage: str
    status: str
    canary_group: str
    percent: int
    committed_at: datetime
    committed_by: str
    reason: str
    hub_id: str

    def reaches(self, node_id: str, groups: list[str]) -> bool:
        """Whether the rollout's stage includes this unit."""
        if self.stage == ALL or (self.canary_group and self.canary_group in groups):
            return True
        return self.stage == PERCENT and bucket(node_id) < self.percent

    def target_percent(self) -> int:
        return {CANARY: 0, PERCENT: self.percent, ALL: 100}[self.stage]

    def to_proto(self) -> fleet_models_pb2.Rollout:
        msg = fleet_models_pb2.Rollout(
            version=self.version, release_id=self.release, previous_release_id=self.previous,
            stage=_STAGE_PROTO[self.stage], status=_STATUS_PROTO[self.status], canary_group=self.canary_group,
            percent=self.percent, changed_by=self.committed_by, reason=self.reason,
        )  # fmt: skip
        msg.changed_time.CopyFrom(to_timestamp(self.committed_at))
        return msg


def assignment(rollout: Rollout | None, node_id: str, groups: list[str]) -> tuple[str, bool]:
    """What a unit should run: (release id, "" for its own models; held back while paused)."""
    if rollout is None:
        return "", False
    if rollout.status == ROLLED_BACK or not rollout.reaches(node_id, groups):
        return rollout.previous, False
    return rollout.release, rollout.status == PAUSED


@dataclass(frozen=True)
class StoredRelease:
    release_id: str
    upload_id: uuid.UUID
    manifest: Manifest
    signature: bytes
    key_id: str
    chunk_bytes: int
    uploaded_at: datetime
    uploaded_by: str

    def to_proto(self) -> fleet_models_pb2.ModelRelease:
        msg = fleet_models_pb2.ModelRelease(
            release_id=self.release_id, manifest_json=self.manifest.raw, signature=self.signature,
            key_id=self.key_id, total_bytes=self.manifest.total_bytes, uploaded_by=self.uploaded_by,
        )  # fmt: skip
        msg.uploaded_time.CopyFrom(to_timestamp(self.uploaded_at))
        return msg


class ModelReleaseMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rollout_version = Gauge(
            "alpr_hub_model_rollout_version", "Model rollout log version this hub has loaded", registry=registry
        )
        self.rollout_percent = Gauge(
            "alpr_hub_model_rollout_target_percent",
            "Share of the fleet the current rollout's stage reaches (canary stage: 0; rolled back: 0)",
            registry=registry,
        )
        self.rollout_paused = Gauge(
            "alpr_hub_model_rollout_paused", "1 while the current model rollout is paused", registry=registry
        )
        self.rollout_nodes = Gauge(
            "alpr_hub_model_rollout_nodes",
            "Units subscribed here by what they report about their assigned release "
            "(on_release, downloading, waiting, failed, behind)",
            ["state"],
            registry=registry,
        )
        self.node_release = Gauge(
            "alpr_hub_node_model_release",
            '1 for the model release each subscribed unit runs (release "": its own models)',
            ["node_id", "release"],
            registry=registry,
        )
        self.node_behind = Gauge(
            "alpr_hub_node_model_behind",
            "1 while a subscribed unit does not run the release it is assigned (and is not held by a pause)",
            ["node_id"],
            registry=registry,
        )
        self.upload_bytes = Gauge(
            "alpr_hub_model_release_cache_bytes", "Release chunks held in memory for downloads", registry=registry
        )


class ReleaseStore(CassandraStore):
    def __init__(self, *, session: Session, config: HubConfig) -> None:
        super().__init__(session=session, cassandra=config.cassandra)
        ks = self.keyspace
        self.hub_id = config.hub_id
        self._put_chunk = self.writer(
            insert_cql(f"{ks}.model_release_chunks", ("release_id", "upload_id", "file", "seq", "data"))
        )
        self._chunk = self.reader(
            f"SELECT data FROM {ks}.model_release_chunks WHERE release_id = :release_id AND upload_id = :upload_id "
            "AND file = :file AND seq = :seq"
        )
        self._drop = self.writer(
            f"DELETE FROM {ks}.model_release_chunks WHERE release_id = :release_id AND upload_id = :upload_id "
            "AND file = :file"
        )
        cols = (
            "release_id", "upload_id", "manifest", "signature", "key_id", "total_bytes", "chunk_bytes", "uploaded_at",
            "uploaded_by", "reason", "hub_id",
        )  # fmt: skip
        self._complete = self.writer(insert_cql(f"{ks}.model_releases", cols, if_not_exists=True))
        self._release = self.reader(f"SELECT * FROM {ks}.model_releases WHERE release_id = :release_id")
        self._releases = self.reader(f"SELECT * FROM {ks}.model_releases")
        rcols = ("log", "version", "state", "committed_at", "committed_by", "reason", "hub_id")
        self._claim = self.writer(insert_cql(f"{ks}.model_rollout_versions", rcols, if_not_exists=True))
        select = f"SELECT {', '.join(rcols[1:])} FROM {ks}.model_rollout_versions WHERE log = :log"
        after = f"{select} AND version > :version ORDER BY version ASC LIMIT 500"
        self._after = self.reader(after)
        self._after_serial = self.reader(after, consistency=ConsistencyLevel.LOCAL_SERIAL)
        ncols = ("node_id", "running_release", "release_id", "state", "error", "reported_at", "hub_id")
        self._node = self.writer(insert_cql(f"{ks}.node_model_state", ncols))
        self._nodes = self.reader(f"SELECT {', '.join(ncols)} FROM {ks}.node_model_state")

    async def put_chunk(self, release_id: str, upload_id: uuid.UUID, file: str, seq: int, data: bytes) -> None:
        await self.run(
            self._put_chunk, {"release_id": release_id, "upload_id": upload_id, "file": file, "seq": seq, "data": data}
        )

    async def chunk(self, release_id: str, upload_id: uuid.UUID, file: str, seq: int) -> bytes | None:
        row = await self.one(self._chunk, {"release_id": release_id, "upload_id": upload_id, "file": file, "seq": seq})
        return bytes(row.data) if row is not None and row.data is not None else None

    async def drop_upload(self, release_id: str, upload_id: uuid.UUID, files: list[str]) -> None:
        for f in files:
            await self.run(self._drop, {"release_id": release_id, "upload_id": upload_id, "file": f})

    async def complete(self, r: StoredRelease, reason: str) -> bool:
        values = {
            "release_id": r.release_id, "upload_id": r.upload_id, "manifest": r.manifest.raw, "signature": r.signature,
            "key_id": r.key_id, "total_bytes": r.manifest.total_bytes, "chunk_bytes": r.chunk_bytes,
            "uploaded_at": r.uploaded_at, "uploaded_by": r.uploaded_by, "reason": reason[:2000], "hub_id": self.hub_id,
        }  # fmt: skip
        rows = await self.run(self._complete, values)
        return bool(rows and rows[0][0])

    async def release(self, release_id: str) -> Row | None:
        return await self.one(self._release, {"release_id": release_id})

    async def releases(self) -> list[Row]:
        return await self.run(self._releases)

    async def rollouts_after(self, version: int, serial: bool = False) -> list[Rollout]:
        rows = await self.run(self._after_serial if serial else self._after, {"log": LOG, "version": version})
        return [_rollout(r) for r in rows]

    async def claim(self, r: Rollout) -> bool:
        state = {k: v for k, v in asdict(r).items() if k in ("release", "previous", "stage", "status")}
        state |= {"canary_group": r.canary_group, "percent": r.percent}
        values = {
            "log": LOG, "version": r.version, "state": json.dumps(state, sort_keys=True), "committed_at": r.committed_at,
            "committed_by": r.committed_by, "reason": r.reason[:2000], "hub_id": r.hub_id,
        }  # fmt: skip
        rows = await self.run(self._claim, values)
        return bool(rows and rows[0][0])

    async def record_node(self, node_id: str, running: str, release_id: str, state: str, error: str) -> None:
        await self.run(
            self._node,
            {"node_id": node_id, "running_release": running, "release_id": release_id, "state": state,
             "error": error, "reported_at": now_utc(), "hub_id": self.hub_id},
        )  # fmt: skip

    async def nodes(self) -> list[Row]:
        return await self.run(self._nodes)


def _rollout(r: Row) -> Rollout:
    s = json.loads(r.state or "{}")
    return Rollout(
        version=r.version, release=s.get("release", ""), previous=s.get("previous", ""), stage=s.get("stage", CANARY),
        status=s.get("status", ACTIVE), canary_group=s.get("canary_group", ""), percent=int(s.get("percent", 0)),
        committed_at=utc_or_none(r.committed_at) or now_utc(), committed_by=r.committed_by or "",
        reason=r.reason or "", hub_id=r.hub_id or "",
    )  # fmt: skip


def stored_release(row: Row) -> StoredRelease:
    return StoredRelease(
        release_id=row.release_id, upload_id=row.upload_id, manifest=parse_manifest(bytes(row.manifest)),
        signature=bytes(row.signature), key_id=row.key_id or "", chunk_bytes=row.chunk_bytes,
        uploaded_at=utc_or_none(row.uploaded_at) or now_utc(), uploaded_by=row.uploaded_by or "",
    )  # fmt: skip


class RolloutMirror(LogMirror[Rollout]):
    """The rollout log in memory; ``current`` is the latest row."""

    what = "model rollout log"

    def __init__(self, *, store: ReleaseStore, poll_interval_s: float, metrics: ModelReleaseMetrics) -> None:
        super().__init__(fetch=store.rollouts_after, claim=store.claim, poll_interval_s=poll_interval_s)
        self.metrics = metrics
        self.current: Rollout | None = None

    def _apply(self, v: Rollout) -> None:
        self.current = v
        self.metrics.rollout_version.set(v.version)
        self.metrics.rollout_percent.set(0 if v.status == ROLLED_BACK else v.target_percent())
        self.metrics.rollout_paused.set(1 if v.status == PAUSED else 0)


class RolloutRefused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class ChunkCache:
    """Release chunks in memory, least recently used out first, within a byte budget."""

    def __init__(self, budget: int, gauge: Gauge) -> None:
        self.budget = budget
        self.gauge = gauge
        self.size = 0
        self._items: OrderedDict[tuple[str, uuid.UUID, str, int], bytes] = OrderedDict()

    def get(self, key: tuple[str, uuid.UUID, str, int]) -> bytes | None:
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def put(self, key: tuple[str, uuid.UUID, str, int], data: bytes) -> None:
        if len(data) > self.budget or key in self._items:
            return
        self._items[key] = data
        self.size += len(data)
        while self.size > self.budget:
            _, old = self._items.popitem(last=False)
            self.size -= len(old)
        self.gauge.set(self.size)


@dataclass
class NodeReport:
    running: str
    release: str
    state: str
    error: str = ""
    assigned: str = ""
    paused: bool = False


class ModelReleaseServicer(fleet_models_pb2_grpc.ModelReleaseServiceServicer):
    def __init__(
        self, *, store: ReleaseStore, mirror: RolloutMirror, config: HubConfig, audit: AuditLog,
        metrics: ModelReleaseMetrics,
    ) -> None:  # fmt: skip
        self.store = store
        self.mirror = mirror
        self.config = config
        self.settings = config.model_releases
        self.audit = audit
        self.metrics = metrics
        self.trusted: list[Ed25519PublicKey] = [load_public_key(p) for p in self.settings.release_public_keys]
        self.cache = ChunkCache(self.settings.cache_bytes, metrics.upload_bytes)
        self._releases: dict[str, StoredRelease] = {}
        # What each unit subscribed here last reported (for metrics and rollout progress).
        self.reports: dict[str, NodeReport] = {}

    # -- releases --------------------------------------------------------------------------

    async def lookup(self, release_id: str) -> StoredRelease | None:
        found = self._releases.get(release_id)
        if found is None:
            row = await self.store.release(release_id)
            if row is None:
                return None
            found = self._releases[release_id] = stored_release(row)
        return found

    async def Upload(
        self, request_iterator: AsyncIterator[fleet_models_pb2.ModelReleaseServiceUploadRequest], context: Context
    ) -> fleet_models_pb2.ModelReleaseServiceUploadResponse:
        first = await anext(request_iterator, None)
        if first is None or first.WhichOneof("payload") != "header":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "send the ReleaseUploadHeader first")
        header = first.header
        by = header.uploaded_by.strip() or "anonymous"
        try:
            manifest = parse_manifest(header.manifest_json)
            key = verify(header.manifest_json, header.signature, self.trusted)
        except ReleaseError as e:
            await self._refused(by, "", str(e))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"release refused, nothing stored: {e}")
        rid = manifest.release_id
        if await self.lookup(rid) is not None:
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS,
                f"release {rid} is already stored (a release id names one set of files forever): pick a new id",
            )
        upload_id = uuid.uuid4()
        try:
            await self._receive(manifest, upload_id, request_iterator)
        except ReleaseError as e:
            await self.store.drop_upload(rid, upload_id, [f.name for f in manifest.files])
            await self._refused(by, rid, str(e))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"release {rid} refused, nothing stored: {e}")
        stored = StoredRelease(
            rid, upload_id, manifest, header.signature, key, self.settings.chunk_bytes, now_utc(), by
        )
        if not await self.store.complete(stored, header.reason):
            await self.store.drop_upload(rid, upload_id, [f.name for f in manifest.files])
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"release {rid} was stored by another upload meanwhile")
        self._releases[rid] = stored
        await self.audit.record_call(
            "fleet.model_release_upload", fallback_actor=by,
            details={"release": rid, "key_id": key, "bytes": manifest.total_bytes, "reason": header.reason,
                     "files": {f.name: f.sha256 for f in manifest.files}},
        )  # fmt: skip
        log.info("model release %s stored (%d bytes, key %s)", rid, manifest.total_bytes, key)
        return fleet_models_pb2.ModelReleaseServiceUploadResponse(
            release_id=rid, total_bytes=manifest.total_bytes, files=len(manifest.files), key_id=key
        )

    async def _receive(
        self,
        manifest: Manifest,
        upload_id: uuid.UUID,
        requests: AsyncIterator[fleet_models_pb2.ModelReleaseServiceUploadRequest],
    ) -> None:
        """Store the files' bytes in chunks; ReleaseError unless each matches the manifest exactly."""
        size = self.settings.chunk_bytes
        files = list(manifest.files)
        i, got, seq, buf, digest = 0, 0, 0, bytearray(), hashlib.sha256()
        rid = manifest.release_id
        async for req in requests:
            if req.WhichOneof("payload") != "chunk":
                raise ReleaseError("only file chunks may follow the header")
            c = req.chunk
            if i >= len(files):
                raise ReleaseError(f"more bytes than the manifest lists ({c.file})")
            f = files[i]
            if c.file != f.name or c.offset != got:
                raise ReleaseError(f"expected {f.name} at byte {got}, got {c.file} at byte {c.offset}")
            if got + len(c.data) > f.size:
                raise ReleaseError(f"{f.name}: more than the manifest's {f.size} bytes")
            digest.update(c.data)
            buf += c.data
            got += len(c.data)
            while len(buf) >= size or (got == f.size and buf):
                await self.store.put_chunk(rid, upload_id, f.name, seq, bytes(buf[:size]))
                del buf[:size]
                seq += 1
            if got == f.size:
                if digest.hexdigest() != f.sha256:
                    raise ReleaseError(f"{f.name}: SHA-256 differs from the manifest (corrupt or tampered)")
                i, got, seq, digest = i + 1, 0, 0, hashlib.sha256()
        if i < len(files):
            f = files[i]
            raise ReleaseError(
                f"upload truncated: {f.name} has {got} of {f.size} bytes ({len(files) - i} file(s) short)"
            )

    async def _refused(self, by: str, release_id: str, why: str) -> None:
        await self.audit.record_call(
            "fleet.model_release_refused", fallback_actor=by, outcome="refused",
            details={"release": release_id, "refused": why},
        )  # fmt: skip

    async def ListReleases(
        self, request: fleet_models_pb2.ListReleasesRequest, context: Context
    ) -> fleet_models_pb2.ListReleasesResponse:
        rows = await self.store.releases()
        found = sorted((stored_release(r) for r in rows), key=lambda r: r.uploaded_at, reverse=True)
        return fleet_models_pb2.ListReleasesResponse(releases=[r.to_proto() for r in found[: request.limit or 50]])

    async def GetRelease(
        self, request: fleet_models_pb2.GetReleaseRequest, context: Context
    ) -> fleet_models_pb2.GetReleaseResponse:
        found = await self.lookup(request.release_id)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no release {request.release_id} is stored")
        return fleet_models_pb2.GetReleaseResponse(release=found.to_proto())

    async def Download(
        self, request: fleet_models_pb2.DownloadRequest, context: Context
    ) -> AsyncIterator[fleet_models_pb2.DownloadResponse]:
        found = await self.lookup(request.release_id)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no release {request.release_id} is stored")
        f = found.manifest.file(request.file)
        if f is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"release {request.release_id} has no file {request.file}")
        if request.offset > f.size:
            await context.abort(
                grpc.StatusCode.OUT_OF_RANGE, f"{f.name} has {f.size} bytes; offset {request.offset} is past its end"
            )
        size = found.chunk_bytes
        offset = request.offset
        while offset < f.size:
            seq = offset // size
            key = (found.release_id, found.upload_id, f.name, seq)
            data = self.cache.get(key)
            if data is None:
                data = await self.store.chunk(found.release_id, found.upload_id, f.name, seq)
                if data is None:
                    await context.abort(
                        grpc.StatusCode.DATA_LOSS, f"chunk {seq} of {f.name} in release {found.release_id} is missing"
                    )
                self.cache.put(key, data)
            part = data[offset - seq * size :]
            yield fleet_models_pb2.DownloadResponse(offset=offset, data=part)
            offset += len(part)

    # -- rollout ---------------------------------------------------------------------------

    async def _commit(self, context: Context, make: Any, action: str, by: str, reason: str) -> Rollout:
        try:
            r = await self.mirror.commit(make)
        except RolloutRefused as e:
            await context.abort(e.code, str(e))
        except Exception as exc:
            log.warning("model rollout change failed: %r", exc)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"storage unavailable ({type(exc).__name__}); check `alpr fleet models status` and retry",
            )
        assert r is not None
        await self.audit.record_call(
            action, fallback_actor=by,
            details={"version": r.version, "release": r.release, "previous": r.previous, "stage": r.stage,
                     "status": r.status, "canary_group": r.canary_group, "percent": r.percent, "reason": reason},
        )  # fmt: skip
        return r

    async def Rollout(
        self, request: fleet_models_pb2.RolloutRequest, context: Context
    ) -> fleet_models_pb2.RolloutResponse:
        rid, stage = request.release_id, _STAGE_NAME[request.stage]
        by, reason = request.changed_by.strip() or "anonymous", request.reason.strip()
        if await self.lookup(rid) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no release {rid} is stored: upload it first")
        group = request.canary_group.strip()
        if stage == PERCENT and not 1 <= request.percent <= 99:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a PERCENT stage needs a percent from 1 to 99")

        def make(version: int) -> Rollout:
            cur = self.mirror.current
            fresh = cur is None or cur.release != rid or cur.status == ROLLED_BACK
            if fresh:
                if stage != CANARY or not group:
                    raise RolloutRefused(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"a rollout of {rid} starts with a canary group: `alpr fleet models rollout {rid} "
                        "--canary GROUP`",
                    )
                previous = ""
                if cur is not None:
                    done = cur.status == ACTIVE and cur.stage == ALL
                    previous = cur.release if done else cur.previous
                if previous == rid:
                    previous = ""
                return Rollout(
                    version, rid, previous, CANARY, ACTIVE, group, 0, now_utc(), by, reason, self.config.hub_id
                )
            assert cur is not None
            return replace(
                cur, version=version, stage=stage, status=ACTIVE, canary_group=group or cur.canary_group,
                percent=request.percent if stage == PERCENT else (100 if stage == ALL else 0),
                committed_at=now_utc(), committed_by=by, reason=reason, hub_id=self.config.hub_id,
            )  # fmt: skip

        r = await self._commit(context, make, "fleet.model_rollout", by, reason)
        return fleet_models_pb2.RolloutResponse(rollout=r.to_proto())

    def _change_status(self, status: str, by: str, reason: str, only_from: tuple[str, ...]) -> Any:
        def make(version: int) -> Rollout:
            cur = self.mirror.current
            if cur is None:
                raise RolloutRefused(grpc.StatusCode.FAILED_PRECONDITION, "no model rollout was ever started")
            if cur.status not in only_from:
                raise RolloutRefused(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"the rollout of {cur.release} is {cur.status.lower().replace('_', ' ')} (version {cur.version}, "
                    f"by {cur.committed_by}: {cur.reason})",
                )
            return replace(
                cur, version=version, status=status, committed_at=now_utc(), committed_by=by, reason=reason,
                hub_id=self.config.hub_id,
            )  # fmt: skip

        return make

    async def PauseRollout(
        self, request: fleet_models_pb2.PauseRolloutRequest, context: Context
    ) -> fleet_models_pb2.PauseRolloutResponse:
        by, reason = request.changed_by.strip() or "anonymous", request.reason.strip()
        make = self._change_status(PAUSED, by, reason, (ACTIVE,))
        r = await self._commit(context, make, "fleet.model_rollout_pause", by, reason)
        return fleet_models_pb2.PauseRolloutResponse(rollout=r.to_proto())

    async def Rollback(
        self, request: fleet_models_pb2.RollbackRequest, context: Context
    ) -> fleet_models_pb2.RollbackResponse:
        by, reason = request.changed_by.strip() or "anonymous", request.reason.strip()
        make = self._change_status(ROLLED_BACK, by, reason, (ACTIVE, PAUSED))
        r = await self._commit(context, make, "fleet.model_rollback", by, reason)
        return fleet_models_pb2.RollbackResponse(rollout=r.to_proto())

    async def GetRolloutStatus(
        self, request: fleet_models_pb2.GetRolloutStatusRequest, context: Context
    ) -> fleet_models_pb2.GetRolloutStatusResponse:
        await self.mirror.catch_up()
        cur = self.mirror.current
        resp = fleet_models_pb2.GetRolloutStatusResponse()
        if cur is not None:
            resp.rollout.CopyFrom(cur.to_proto())
        for row in sorted(await self.store.nodes(), key=lambda r: r.node_id):
            n = resp.nodes.add(
                node_id=row.node_id, running_release_id=row.running_release or "", release_id=row.release_id or "",
                state=_STATE_PROTO.get(row.state or "", fleet_models_pb2.NODE_MODEL_STATE_UNSPECIFIED),
                error=row.error or "",
            )  # fmt: skip
            if row.reported_at is not None:
                n.reported_time.CopyFrom(to_timestamp(utc_or_none(row.reported_at) or now_utc()))
            if cur is not None and n.running_release_id == cur.release:
                resp.nodes_on_release += 1
            if cur is not None and n.release_id == cur.release and n.state == fleet_models_pb2.NODE_MODEL_STATE_FAILED:
                resp.nodes_failed += 1
        return resp

    # -- the units' side (on their configuration stream) -----------------------------------

    def assign(self, node_id: str, groups: list[str]) -> fleet_models_pb2.ModelAssignment:
        release, paused = assignment(self.mirror.current, node_id, groups)
        cur = self.mirror.current
        rep = self.reports.get(node_id)
        if rep is not None:
            rep.assigned, rep.paused = release, paused
            self._node_metrics(node_id, rep)
        return fleet_models_pb2.ModelAssignment(
            release_id=release, rollout_version=cur.version if cur else 0, paused=paused
        )

    def connected(self, node_id: str, running: str) -> None:
        self.reports[node_id] = NodeReport(running=running, release="", state="")

    def disconnected(self, node_id: str) -> None:
        rep = self.reports.pop(node_id, None)
        if rep is not None:
            with contextlib.suppress(KeyError):
                self.metrics.node_release.remove(node_id, rep.running)
                self.metrics.node_behind.remove(node_id)
            self._progress()

    async def report(self, node_id: str, groups: list[str], msg: fleet_models_pb2.ModelReport) -> None:
        """A unit's model report: recorded, shown in metrics, and a failure pauses the rollout that reached it."""
        state = STATE_NAMES.get(msg.state, "UNSPECIFIED")
        rep = self.reports.setdefault(node_id, NodeReport(running="", release="", state=""))
        if rep.running != msg.running_release_id:
            with contextlib.suppress(KeyError):
                self.metrics.node_release.remove(node_id, rep.running)
        rep.running, rep.release, rep.state, rep.error = msg.running_release_id, msg.release_id, state, msg.error
        self._node_metrics(node_id, rep)
        try:
            await self.store.record_node(node_id, msg.running_release_id, msg.release_id, state, msg.error)
        except Exception as exc:
            log.warning("recording the model state of %s failed: %r", node_id, exc)
        cur = self.mirror.current
        if state != "FAILED" or cur is None or cur.status != ACTIVE or msg.release_id != cur.release:
            return
        if not cur.reaches(node_id, groups):
            return
        reason = f"unit {node_id} reported a failure of {cur.release}: {msg.error}"[:2000]
        who = f"hub:{self.config.hub_id}"

        def make(version: int) -> Rollout | None:
            now = self.mirror.current
            if now is None or now.status != ACTIVE or now.release != msg.release_id:
                return None  # paused (or moved on) already
            return replace(
                now, version=version, status=PAUSED, committed_at=now_utc(), committed_by=who, reason=reason,
                hub_id=self.config.hub_id,
            )  # fmt: skip

        try:
            r = await self.mirror.commit(make)
        except Exception as exc:
            log.error("could not pause the rollout of %s after %s failed: %r", cur.release, node_id, exc)
            return
        if r is not None:
            log.warning("model rollout of %s paused: %s", r.release, reason)
            await self.audit.record(
                who, "fleet.model_rollout_pause",
                details={"version": r.version, "release": r.release, "reason": reason, "automatic": True},
            )  # fmt: skip

    def _node_metrics(self, node_id: str, rep: NodeReport) -> None:
        self.metrics.node_release.labels(node_id, rep.running).set(1)
        behind = rep.running != rep.assigned and not rep.paused and rep.state != ""
        self.metrics.node_behind.labels(node_id).set(1 if behind else 0)
        self._progress()

    def _progress(self) -> None:
        cur = self.mirror.current
        counts = dict.fromkeys(("on_release", "downloading", "waiting", "failed", "behind"), 0)
        for rep in self.reports.values():
            if cur is not None and rep.running == cur.release:
                counts["on_release"] += 1
            elif rep.state == "FAILED" and cur is not None and rep.release == cur.release:
                counts["failed"] += 1
            elif rep.state in ("DOWNLOADING", "WAITING"):
                counts[rep.state.lower()] += 1
            elif rep.running != rep.assigned:
                counts["behind"] += 1
        for k, n in counts.items():
            self.metrics.rollout_nodes.labels(k).set(n)
