"""The audit log (policy §3, 5.3): append-only, hash-chained, keyed, anchored, without TTL.

Each hub appends to its own chain (``auth.audit_chain``, default the hub id). An entry's
``entry_hash`` is the HMAC-SHA256, under the audit key, of its fields and of the previous
entry's hash, so changing, removing or inserting a row breaks the chain, and whoever can
write to Cassandra but does not hold the key cannot recompute it. The key comes from
``auth.audit_key_file`` or ``ALPR_AUDIT_KEY`` and is never stored in Cassandra (a hub
without a key, allowed only with ``insecure_dev``, hashes with plain SHA-256).

The chain is anchored outside Cassandra: :class:`AuditCheckpointer` appends a signed
checkpoint (chain, head seq, head hash; HMAC under the same key) to
``auth.audit_checkpoint_dir`` every ``audit_checkpoint_interval_s`` and at shutdown, from
what this hub itself wrote (never from what the database says). :meth:`AuditLog.verify`
(``alpr audit verify``) compares every chain with its last checkpoint, so a chain rewritten
end to end, cut short, or deleted with its head row is reported. Turning on a key for an
existing deployment: give the hub a new ``audit_chain`` name (old entries stay unkeyed). Sequence numbers are claimed with a
lightweight transaction (``INSERT ... IF NOT EXISTS``): two processes that share a chain
name never overwrite each other; the loser reloads the head and retries. The chain's head
(last seq and hash) is also kept in ``audit_chains``, so cutting off the newest entries is
detected too.

Other services record through :meth:`AuditLog.record` (async)::

    await audit.record(actor, "hotlist.add", details={"entry_id": ...})
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from alpr.v1 import audit_pb2, audit_pb2_grpc
from cassandra import ConsistencyLevel
from cassandra.cluster import Session

from alpr_common.cassandra import CassandraConfig, CassandraStore, Row, insert_cql
from alpr_common.timestamps import epoch_ms, now_utc, to_timestamp, truncate_to_ms, utc
from hub.principal import Context, principal_from

log = logging.getLogger(__name__)

BUCKET_SIZE = 100_000
AUDIT_LOG_COLUMNS = (
    "chain", "bucket", "seq", "time", "actor", "role", "action", "purpose", "case_number", "details_json",
    "result_count", "outcome", "prev_hash", "entry_hash",
)  # fmt: skip
_MAX_CLAIM_TRIES = 50
# Entries claimed by one conditional batch at most.
_MAX_GROUP = 200


AUDIT_KEY_ENV = "ALPR_AUDIT_KEY"
MIN_KEY_BYTES = 16


def _digest(key: bytes | None, blob: bytes) -> str:
    return hmac.new(key, blob, hashlib.sha256).hexdigest() if key else hashlib.sha256(blob).hexdigest()


def load_audit_key(key_file: str, environ: dict[str, str] | None = None) -> bytes | None:
    """The audit key: the contents of ``key_file`` (whitespace stripped), else ``ALPR_AUDIT_KEY``,
    else None. A key shorter than 16 bytes is refused (ValueError, saying how to make one)."""
    env = os.environ if environ is None else environ
    if key_file:
        try:
            key = Path(key_file).read_bytes().strip()
        except OSError as e:
            raise ValueError(f"auth.audit_key_file {key_file}: {e.strerror or e}") from e
        source = key_file
    elif env.get(AUDIT_KEY_ENV):
        key, source = env[AUDIT_KEY_ENV].strip().encode(), AUDIT_KEY_ENV
    else:
        return None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"the audit key in {source} is shorter than {MIN_KEY_BYTES} bytes: make one with "
            "python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    return key


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement, kept outside Cassandra, that ``chain`` had ``seq`` entries ending in ``entry_hash``."""

    chain: str
    seq: int
    entry_hash: str
    time: str
    hub_id: str

    def body(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":")).encode()


class CheckpointSink:
    """Signed checkpoints as JSON lines, one file per chain, in a directory outside Cassandra."""

    def __init__(self, directory: str | Path, key: bytes | None) -> None:
        self.directory = Path(directory)
        self.key = key

    def _file(self, chain: str) -> Path:
        return self.directory / (re.sub(r"[^A-Za-z0-9_.-]", "_", chain) + ".jsonl")

    def write(self, cp: Checkpoint) -> None:
        """Append one checkpoint and fsync it (blocking)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps({**dataclasses.asdict(cp), "mac": _digest(self.key, cp.body())}, sort_keys=True)
        with open(self._file(cp.chain), "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def latest(self) -> tuple[dict[str, Checkpoint], list[str]]:
        """The newest valid checkpoint of each chain, and problems (bad signatures, bad lines)."""
        out: dict[str, Checkpoint] = {}
        problems: list[str] = []
        for path in sorted(self.directory.glob("*.jsonl")) if self.directory.is_dir() else []:
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                    mac = d.pop("mac")
                    cp = Checkpoint(**d)
                except (ValueError, TypeError, KeyError):
                    problems.append(f"checkpoint {path.name} line {n}: not a checkpoint")
                    continue
                if not hmac.compare_digest(str(mac), _digest(self.key, cp.body())):
                    problems.append(f"checkpoint {path.name} line {n}: signature invalid (forged, or another key)")
                    continue
                if cp.chain not in out or cp.seq >= out[cp.chain].seq:
                    out[cp.chain] = cp
        return out, problems


@dataclass
class AuditRecord:
    """One entry's fields (what gets hashed)."""

    chain: str
    seq: int
    time: datetime
    actor: str
    role: str
    action: str
    purpose: str = ""
    case_number: str = ""
    details_json: str = "{}"
    result_count: int = 0
    outcome: str = "ok"
    prev_hash: str = ""
    entry_hash: str = ""

    def columns(self) -> dict[str, object]:
        """The entry's ``audit_log`` columns, by name (without the bucket)."""
        return dataclasses.asdict(self)

    def compute_hash(self, key: bytes | None = None) -> str:
        """HMAC-SHA256 under ``key`` (plain SHA-256 without one), hex, over every field except
        entry_hash, as canonical JSON."""
        body = {
            "chain": self.chain,
            "seq": self.seq,
            "time_ms": epoch_ms(self.time),
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "purpose": self.purpose,
            "case_number": self.case_number,
            "details_json": self.details_json,
            "result_count": self.result_count,
            "outcome": self.outcome,
            "prev_hash": self.prev_hash,
        }
        blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        return _digest(key, blob)

    def to_proto(self) -> audit_pb2.AuditEntry:
        return audit_pb2.AuditEntry(
            chain=self.chain,
            seq=self.seq,
            time=to_timestamp(self.time),
            actor=self.actor,
            role=self.role,
            action=self.action,
            purpose=self.purpose,
            case_number=self.case_number,
            details_json=self.details_json,
            result_count=self.result_count,
            outcome=self.outcome,
            prev_hash=self.prev_hash,
            entry_hash=self.entry_hash,
        )


@dataclass(frozen=True)
class _Fields:
    """What a caller records; seq, time and hashes come when it is claimed."""

    actor: str
    role: str
    action: str
    purpose: str
    case_number: str
    details_json: str
    result_count: int
    outcome: str

    def record(self, chain: str, seq: int, prev_hash: str) -> AuditRecord:
        return AuditRecord(
            chain=chain, seq=seq, time=truncate_to_ms(now_utc()), actor=self.actor, role=self.role,
            action=self.action, purpose=self.purpose, case_number=self.case_number, details_json=self.details_json,
            result_count=self.result_count, outcome=self.outcome, prev_hash=prev_hash,
        )  # fmt: skip


@dataclass
class _Waiting:
    """An entry waiting for its sequence number: the claimed record, or why the claim failed."""

    fields: _Fields
    record: AuditRecord | None = None
    error: BaseException | None = None


def _row_record(r: Row) -> AuditRecord:
    t = utc(r.time)
    return AuditRecord(
        chain=r.chain,
        seq=r.seq,
        time=t,
        actor=r.actor or "",
        role=r.role or "",
        action=r.action or "",
        purpose=r.purpose or "",
        case_number=r.case_number or "",
        details_json=r.details_json or "{}",
        result_count=r.result_count or 0,
        outcome=r.outcome or "",
        prev_hash=r.prev_hash or "",
        entry_hash=r.entry_hash or "",
    )


@dataclass
class ChainReport:
    chain: str
    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog(CassandraStore):
    """Appends to this hub's chain; lists and verifies all chains. One per hub process."""

    def __init__(
        self,
        *,
        session: Session,
        cassandra: CassandraConfig,
        chain: str,
        key: bytes | None = None,
        checkpoints: CheckpointSink | None = None,
    ) -> None:
        super().__init__(session=session, cassandra=cassandra)
        self.chain = chain
        self.key = key
        self.checkpoints = checkpoints
        ks = self.keyspace
        self._lock = asyncio.Lock()
        self._head: tuple[int, str] | None = None  # (seq, hash) of this chain's last entry
        self._queue: list[_Waiting] = []  # entries waiting for a sequence number, in arrival order
        self._ins = self.writer(
            insert_cql(f"{ks}.audit_log", AUDIT_LOG_COLUMNS, if_not_exists=True),
            serial_consistency=ConsistencyLevel.LOCAL_SERIAL,
        )
        # A plain write (no second LWT per entry): with one chain per hub the writes are
        # serialized by the lock; were a chain shared, a lagging head only weakens the
        # truncation check, it never reports a false problem.
        self._head_upd = self.writer(
            f"UPDATE {ks}.audit_chains SET head_seq = :head_seq, head_hash = :head_hash WHERE chain = :chain"
        )
        self._chain_ins = self.writer(
            f"INSERT INTO {ks}.audit_chains (chain, head_seq, head_hash, created_time) "
            "VALUES (:chain, 0, '', :created_time) IF NOT EXISTS",
            serial_consistency=ConsistencyLevel.LOCAL_SERIAL,
        )
        self._chains = self.reader(f"SELECT chain, head_seq, head_hash FROM {ks}.audit_chains")
        serial = ConsistencyLevel.LOCAL_SERIAL
        self._chain_head = self.reader(
            f"SELECT head_seq, head_hash FROM {ks}.audit_chains WHERE chain = :chain", consistency=serial
        )
        self._last = self.reader(
            f"SELECT seq, entry_hash FROM {ks}.audit_log WHERE chain = :chain AND bucket = :bucket "
            "ORDER BY seq DESC LIMIT 1",
            consistency=serial,
        )
        self._page = self.reader(
            f"SELECT * FROM {ks}.audit_log WHERE chain = :chain AND bucket = :bucket AND seq > :after "
            "ORDER BY seq ASC LIMIT :max_rows"
        )

    async def _load_head(self) -> tuple[int, str]:
        """The chain's last entry, read at SERIAL consistency (sees every claimed seq)."""
        await self.run(self._chain_ins, {"chain": self.chain, "created_time": now_utc()})
        row = await self.one(self._chain_head, {"chain": self.chain})
        seq, h = (row.head_seq or 0, row.head_hash or "") if row else (0, "")
        # The head row is updated after the entry: walk forward past entries written since.
        bucket = seq // BUCKET_SIZE
        while True:
            last = await self.one(self._last, {"chain": self.chain, "bucket": bucket})
            if last is not None and last.seq > seq:
                seq, h = last.seq, last.entry_hash
            if (seq + 1) // BUCKET_SIZE > bucket:
                bucket += 1
                continue
            return seq, h

    async def record(
        self,
        actor: str,
        action: str,
        *,
        role: str = "",
        purpose: str = "",
        case_number: str = "",
        details: dict[str, Any] | None = None,
        result_count: int = 0,
        outcome: str = "ok",
    ) -> AuditRecord:
        """Append one entry to this hub's chain; returns it (with seq and hash).

        Group commit: entries recorded while a claim is in flight wait for the lock, and the
        next holder claims all of them (in arrival order, within one bucket) with one
        conditional batch, so concurrent callers (decisions, searches) cost one lightweight
        transaction per batch instead of one each. The batch applies entirely or not at all.
        """
        details_json = json.dumps(details or {}, sort_keys=True, separators=(",", ":"), default=str)
        fields = _Fields(actor, role, action, purpose, case_number, details_json, result_count, outcome)
        waiting = _Waiting(fields)
        self._queue.append(waiting)
        async with self._lock:
            if waiting.record is None:
                await self._claim_queued()
        if waiting.record is None:  # a failed claim of the batch this entry was in
            raise RuntimeError(f"audit chain {self.chain}: could not claim a sequence number") from waiting.error
        return waiting.record

    async def _claim_queued(self) -> None:
        """Claim sequence numbers for the queued entries (under the lock), batch after batch."""
        while self._queue:
            try:
                for _ in range(_MAX_CLAIM_TRIES):
                    if self._head is None:
                        self._head = await self._load_head()
                    seq, prev = self._head
                    room = BUCKET_SIZE - (seq + 1) % BUCKET_SIZE  # one conditional batch: one partition
                    batch = self._queue[: min(room, _MAX_GROUP)]
                    recs: list[AuditRecord] = []
                    for w in batch:
                        rec = w.fields.record(self.chain, seq + 1 + len(recs), prev)
                        rec.entry_hash = rec.compute_hash(self.key)
                        prev = rec.entry_hash
                        recs.append(rec)
                    if await self._insert(recs):
                        last = recs[-1]
                        self._head = (last.seq, last.entry_hash)
                        del self._queue[: len(batch)]
                        for w, rec in zip(batch, recs, strict=True):
                            w.record = rec
                        await self.run(
                            self._head_upd, {"head_seq": last.seq, "head_hash": last.entry_hash, "chain": last.chain}
                        )
                        break
                    self._head = None  # another process took a seq: reload and retry
                else:
                    raise RuntimeError(f"no free sequence number after {_MAX_CLAIM_TRIES} tries")
            except Exception as exc:  # the whole queue fails with it (each caller raises)
                for w in self._queue:
                    w.error = exc
                self._queue.clear()
                raise

    async def _insert(self, recs: list[AuditRecord]) -> bool:
        """Insert entries of one bucket if none of their seqs is taken (one LWT); whether applied."""
        if len(recs) == 1:
            res = await self.run(self._ins, {**recs[0].columns(), "bucket": recs[0].seq // BUCKET_SIZE})
        else:
            batch = self.batch()
            batch.serial_consistency_level = ConsistencyLevel.LOCAL_SERIAL
            for rec in recs:
                batch.add(self._ins.bind({**rec.columns(), "bucket": rec.seq // BUCKET_SIZE}))
            res = await self.run(batch)
        return bool(res and res[0].applied)

    async def record_call(self, action: str, fallback_actor: str = "", **kw: Any) -> AuditRecord | None:
        """Record an action of the current RPC's caller (for other services' servicers).

        The actor is the authenticated principal, or ``fallback_actor`` when auth is off.
        Never raises: an audit outage is logged, the caller's action stands.
        """
        p = principal_from()
        actor = p.actor if p else (fallback_actor or "anonymous")
        if p and fallback_actor and fallback_actor != p.actor:
            kw.setdefault("details", {})["on_behalf_of"] = fallback_actor
        try:
            return await self.record(actor, action, role=p.role if p else "", **kw)
        except Exception as exc:
            log.error("audit record %s by %s failed: %r", action, actor, exc)
            return None

    async def chains(self) -> list[tuple[str, int, str]]:
        rows = await self.run(self._chains)
        return sorted((r.chain, r.head_seq or 0, r.head_hash or "") for r in rows)

    async def entries(self, chain: str, after_seq: int, limit: int) -> list[AuditRecord]:
        """Entries of ``chain`` with seq > after_seq, oldest first."""
        out: list[AuditRecord] = []
        bucket = (after_seq + 1) // BUCKET_SIZE
        heads = {c: s for c, s, _ in await self.chains()}
        top = heads.get(chain, 0)
        while len(out) < limit and bucket <= max(top, after_seq + 1) // BUCKET_SIZE:
            page = {"chain": chain, "bucket": bucket, "after": after_seq, "max_rows": limit - len(out)}
            rows = await self.run(self._page, page)
            recs = [_row_record(r) for r in rows]
            out.extend(recs)
            if recs:
                after_seq = recs[-1].seq
            bucket += 1
        return out

    @property
    def head(self) -> tuple[int, str] | None:
        """(seq, hash) of the last entry this process wrote or loaded (None before the first)."""
        return self._head

    async def verify(self) -> list[ChainReport]:
        """Recompute every chain (keyed) and hold it against its last signed checkpoint; each
        report lists what is wrong (empty: intact)."""
        anchors: dict[str, Checkpoint] = {}
        anchor_problems: list[str] = []
        if self.checkpoints is not None:
            anchors, anchor_problems = await asyncio.get_running_loop().run_in_executor(None, self.checkpoints.latest)
        reports: list[ChainReport] = []
        stored = await self.chains()
        for chain in sorted({c for c, _, _ in stored} | set(anchors)):
            head_seq, head_hash = next(((s, h) for c, s, h in stored if c == chain), (0, ""))
            rep = ChainReport(chain)
            cp = anchors.get(chain)
            if cp is not None and not any(c == chain for c, _, _ in stored):
                rep.problems.append(
                    f"chain deleted: the signed checkpoint of {cp.time} has seq {cp.seq}, Cassandra has no such chain"
                )
            prev_hash = ""
            expect = 1
            after = 0
            seen_anchor = False
            while True:
                page = await self.entries(chain, after, 1000)
                if not page:
                    break
                for rec in page:
                    if rec.seq != expect:
                        rep.problems.append(f"seq {expect}..{rec.seq - 1}: missing (removed entries)")
                    if rec.prev_hash != prev_hash:
                        rep.problems.append(
                            f"seq {rec.seq}: prev_hash does not match the previous entry (inserted or changed entries)"
                        )
                    if rec.compute_hash(self.key) != rec.entry_hash:
                        rep.problems.append(
                            f"seq {rec.seq}: contents changed (hash mismatch{'' if self.key else ', unkeyed chain'})"
                        )
                    if cp is not None and rec.seq == cp.seq:
                        seen_anchor = True
                        if rec.entry_hash != cp.entry_hash:
                            rep.problems.append(
                                f"seq {rec.seq}: differs from the signed checkpoint of {cp.time} (chain rewritten)"
                            )
                    prev_hash = rec.entry_hash
                    expect = rec.seq + 1
                    rep.entries += 1
                after = page[-1].seq
            if head_seq > expect - 1:
                rep.problems.append(f"seq {expect}..{head_seq}: missing at the end (head is {head_seq})")
            elif head_seq and head_seq == expect - 1 and head_hash and head_hash != prev_hash:
                rep.problems.append(f"seq {head_seq}: last entry differs from the recorded head hash")
            if cp is not None and not seen_anchor and any(c == chain for c, _, _ in stored):
                rep.problems.append(
                    f"seq {expect}..{cp.seq}: missing, but the signed checkpoint of {cp.time} has seq {cp.seq} "
                    "(chain truncated)"
                )
            reports.append(rep)
        if anchor_problems:
            reports.append(ChainReport("(checkpoints)", problems=anchor_problems))
        return reports


class AuditCheckpointer:
    """Writes a signed checkpoint of this hub's chain head outside Cassandra, every interval
    (when the head moved) and at shutdown: what this process wrote, not what the database says."""

    def __init__(self, *, audit: AuditLog, sink: CheckpointSink, hub_id: str, interval_s: float) -> None:
        self.audit = audit
        self.sink = sink
        self.hub_id = hub_id
        self.interval_s = interval_s
        self._written: tuple[int, str] | None = None
        self._task: asyncio.Task[None] | None = None

    async def checkpoint(self) -> Checkpoint | None:
        """Write a checkpoint if the head moved since the last one; returns it (None: nothing new)."""
        head = self.audit.head
        if head is None or head == self._written or head[0] == 0:
            return None
        cp = Checkpoint(self.audit.chain, head[0], head[1], now_utc().isoformat(), self.hub_id)
        await asyncio.get_running_loop().run_in_executor(None, self.sink.write, cp)
        self._written = head
        return cp

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.checkpoint()
            except Exception as exc:  # a full disk must not stop the hub; the next try may work
                log.error("audit checkpoint to %s failed: %r", self.sink.directory, exc)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.checkpoint()
        except Exception as exc:
            log.error("final audit checkpoint failed: %r", exc)


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    """ListAudit / VerifyAudit (auditor, admin)."""

    def __init__(self, *, audit: AuditLog) -> None:
        self.audit = audit

    async def ListAudit(self, request: audit_pb2.ListAuditRequest, context: Context) -> audit_pb2.ListAuditResponse:
        limit = min(max(request.limit or 100, 1), 1000)
        chains = [request.chain] if request.chain else [c for c, _, _ in await self.audit.chains()]
        entries: list[AuditRecord] = []
        for c in chains:
            entries.extend(await self.audit.entries(c, request.after_seq, limit))
        if request.action:
            entries = [e for e in entries if e.action == request.action]
        entries.sort(key=lambda e: (e.time, e.chain, e.seq))
        entries = entries[:limit]
        next_after = entries[-1].seq if request.chain and len(entries) == limit else 0
        return audit_pb2.ListAuditResponse(entries=[e.to_proto() for e in entries], next_after_seq=next_after)

    async def VerifyAudit(
        self, request: audit_pb2.VerifyAuditRequest, context: Context
    ) -> audit_pb2.VerifyAuditResponse:
        reports = await self.audit.verify()
        return audit_pb2.VerifyAuditResponse(
            ok=all(r.ok for r in reports),
            chains=[
                audit_pb2.AuditChainReport(chain=r.chain, entries=r.entries, ok=r.ok, problems=r.problems)
                for r in reports
            ],
        )
