"""Cassandra building blocks shared by the hub and the dispatch bridge.

- :class:`CassandraConfig`: where the data lives and how strongly it is acknowledged.
- :func:`connect`: the process's one ``Cluster``/``Session`` (token-aware routing, the
  configured read consistency by default, :class:`TimeoutRetryPolicy`).
- :class:`CassandraStore`: the base of every store: prepared statements at the configured
  write / read consistency, marked idempotent unless they are lightweight transactions or
  counter/collection increments, executed asynchronously with **named binds** (a dict keyed
  by bind-marker name, checked against the statement, instead of positional tuples). Every
  statement waits while the driver's socket is full (:func:`connection_busy`) instead of
  failing: that is back-pressure from a busy process, not an outage.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from cassandra import ConsistencyLevel, ProtocolVersion, WriteType
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, ResponseFuture, Session
from cassandra.connection import ConnectionBusy
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, RetryPolicy, TokenAwarePolicy
from cassandra.query import BatchStatement, BatchType, BoundStatement, PreparedStatement
from pydantic import Field, field_validator, model_validator

from alpr_common.config import StrictModel
from alpr_common.retry import Backoff, retry_async, retry_sync

Consistency = Literal["ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"]
_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
# The driver's rows are named tuples built per query: columns are attributes, no static type.
Row = Any
Values = Mapping[str, object]


class CassandraConfig(StrictModel):
    """Where a component stores data and how strongly writes must be acknowledged."""

    contact_points: list[str] = Field(default_factory=lambda: ["127.0.0.1"], min_length=1)
    port: int = Field(9042, ge=1, le=65535)
    keyspace: str = "alpr"
    # Data centre the process lives in; required with NetworkTopologyStrategy.
    local_dc: str | None = None
    replication_class: Literal["SimpleStrategy", "NetworkTopologyStrategy"] = "SimpleStrategy"
    replication_factor: int = Field(1, ge=1, le=9)
    # NetworkTopologyStrategy only: replicas per data centre; defaults to
    # {local_dc: replication_factor}.
    datacenters: dict[str, int] = Field(default_factory=dict)
    write_consistency: Consistency = "LOCAL_QUORUM"
    read_consistency: Consistency = "LOCAL_QUORUM"
    connect_timeout_s: float = Field(10.0, gt=0)
    request_timeout_s: float = Field(10.0, gt=0)

    @field_validator("keyspace")
    @classmethod
    def _keyspace_ident(cls, v: str) -> str:
        if not _IDENT.match(v):
            raise ValueError("keyspace must be lower-case letters, digits and _ (start with a letter)")
        return v

    @model_validator(mode="after")
    def _nts_needs_dc(self) -> CassandraConfig:
        if self.replication_class == "NetworkTopologyStrategy" and not (self.datacenters or self.local_dc):
            raise ValueError("NetworkTopologyStrategy needs local_dc or datacenters")
        return self

    def replication_map(self) -> dict[str, str | int]:
        """The keyspace replication option as Cassandra expects it."""
        if self.replication_class == "SimpleStrategy":
            return {"class": "SimpleStrategy", "replication_factor": self.replication_factor}
        dcs = self.datacenters or {str(self.local_dc): self.replication_factor}
        return {"class": "NetworkTopologyStrategy", **dcs}


def consistency_level(name: str) -> int:
    """The driver's constant for a consistency name (``LOCAL_QUORUM`` → ``ConsistencyLevel.LOCAL_QUORUM``)."""
    return int(getattr(ConsistencyLevel, name))


class TimeoutRetryPolicy(RetryPolicy):  # type: ignore[misc]
    """Retries a statement that timed out on the server, at the same consistency.

    Reads are always safe to repeat; writes only when the statement is idempotent (not a
    lightweight transaction, counter or list append: :func:`prepare` marks them). The
    client-side ``request_timeout_s`` still bounds the whole request, retries included.
    ``Unavailable`` gets one try on the next host, as with the driver's default policy.
    """

    def __init__(self, max_retries: int = 3) -> None:
        super().__init__()
        self.max_retries = max_retries

    def on_read_timeout(
        self,
        query: Any,
        consistency: int,
        required_responses: int,
        received_responses: int,
        data_retrieved: bool,
        retry_num: int,
    ) -> tuple[int, int | None]:
        if retry_num >= self.max_retries:
            return self.RETHROW, None
        return self.RETRY, consistency

    def on_write_timeout(
        self,
        query: Any,
        consistency: int,
        write_type: str,
        required_responses: int,
        received_responses: int,
        retry_num: int,
    ) -> tuple[int, int | None]:
        if retry_num >= self.max_retries or write_type in (WriteType.CAS, WriteType.COUNTER):
            return self.RETHROW, None
        if not getattr(query, "is_idempotent", False):
            return self.RETHROW, None
        return self.RETRY, consistency


def connect(cfg: CassandraConfig) -> tuple[Cluster, Session]:
    """Open the process's single Cassandra session."""
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=cfg.local_dc)),
        retry_policy=TimeoutRetryPolicy(),
        request_timeout=cfg.request_timeout_s,
        consistency_level=consistency_level(cfg.read_consistency),
    )
    cluster = Cluster(
        contact_points=cfg.contact_points,
        port=cfg.port,
        protocol_version=ProtocolVersion.V5,
        # A restarted Cassandra node is used again within seconds, not the driver's default 10 minutes.
        reconnection_policy=ExponentialReconnectionPolicy(base_delay=0.5, max_delay=10.0),
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=cfg.connect_timeout_s,
        control_connection_timeout=cfg.connect_timeout_s,
    )
    try:
        return cluster, cluster.connect()
    except BaseException:
        cluster.shutdown()
        raise


_LWT = re.compile(r"\bIF\b", re.IGNORECASE)
_INCREMENT = re.compile(r"\b(\w+)\s*=\s*(?:\1\s*[-+]|[^,]*[-+]\s*\1\b)", re.IGNORECASE)


def is_idempotent_cql(cql: str) -> bool:
    """Whether running the statement twice leaves the same result as running it once.

    Not idempotent: lightweight transactions (``IF ...``: a retry may see its own first
    attempt and report "not applied") and increments (counters, ``list = list + ?``).
    """
    dml = cql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    return not (dml and (_LWT.search(cql) or _INCREMENT.search(cql)))


def insert_cql(table: str, columns: Sequence[str], *, ttl: bool = False, if_not_exists: bool = False) -> str:
    """``INSERT INTO table (a, b) VALUES (:a, :b)``, optionally ``IF NOT EXISTS`` / ``USING TTL :ttl``.

    The bind markers are named after the columns, so the values are a dict keyed by column.
    """
    cql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
    if if_not_exists:
        cql += " IF NOT EXISTS"
    if ttl:
        cql += " USING TTL :ttl"
    return cql


class Statement:
    """A prepared statement bound by marker name: ``bind({"read_id": ..., "ttl": ...})``."""

    __slots__ = ("names", "order", "prepared")

    def __init__(self, prepared: PreparedStatement) -> None:
        self.prepared = prepared
        self.order = tuple(str(c.name) for c in prepared.column_metadata)
        self.names = frozenset(self.order)

    def bind(self, values: Values | None = None) -> BoundStatement:
        """A bound statement; every marker must get a value and no other key is allowed."""
        given = values or {}
        try:
            if len(given) == len(self.order):
                # In marker order: the driver's own dict binding is slower on the ingest path.
                return self.prepared.bind([given[n] for n in self.order])
        except KeyError:
            pass
        missing = sorted(self.names - given.keys())
        extra = sorted(given.keys() - self.names)
        raise ValueError(
            f"bind values do not match the statement (missing {missing}, unknown {extra}): {self.prepared.query_string}"
        )


def prepare(
    session: Session,
    cql: str,
    consistency: int,
    *,
    serial_consistency: int | None = None,
    fetch_size: int | None = None,
) -> Statement:
    """Prepare ``cql`` at ``consistency``; idempotent unless :func:`is_idempotent_cql` says not."""
    stmt = session.prepare(cql)
    stmt.consistency_level = consistency
    stmt.is_idempotent = is_idempotent_cql(cql)
    if serial_consistency is not None:
        stmt.serial_consistency_level = serial_consistency
    if fetch_size is not None:
        stmt.fetch_size = fetch_size
    return Statement(stmt)


# The driver refuses a statement while its socket to Cassandra is full (ConnectionBusy: nothing
# was sent, so any statement, a lightweight transaction too, may be tried again). That is
# back-pressure, not an outage: a statement waits for room for up to ~10 s before it fails.
BUSY_BACKOFF = Backoff(initial_s=0.005, max_s=0.25)
BUSY_ATTEMPTS = 80


def connection_busy(exc: BaseException) -> bool:
    """Whether a driver error only says every connection's socket was full (nothing was sent)."""
    if isinstance(exc, NoHostAvailable):
        return bool(exc.errors) and all(isinstance(x, ConnectionBusy) for x in exc.errors.values())
    return False


def await_response(rf: ResponseFuture) -> asyncio.Future[Any]:
    """Wrap a driver ResponseFuture (completed on the driver's thread) as an asyncio future."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def ok(result: Any) -> None:
        loop.call_soon_threadsafe(_settle, fut, result, None)

    def err(exc: BaseException) -> None:
        loop.call_soon_threadsafe(_settle, fut, None, exc)

    rf.add_callbacks(ok, err)
    return fut


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class CassandraStore:
    """Base of a component's store: the process's session, its keyspace, the configured
    consistency levels, and asynchronous execution with named binds."""

    def __init__(self, *, session: Session, cassandra: CassandraConfig) -> None:
        self.session = session
        self.keyspace = cassandra.keyspace
        self.write_cl = consistency_level(cassandra.write_consistency)
        self.read_cl = consistency_level(cassandra.read_consistency)

    def reader(self, cql: str, *, consistency: int | None = None, fetch_size: int | None = None) -> Statement:
        """A prepared read at the configured read consistency (or ``consistency``)."""
        return prepare(self.session, cql, self.read_cl if consistency is None else consistency, fetch_size=fetch_size)

    def writer(self, cql: str, *, serial_consistency: int | None = None) -> Statement:
        """A prepared write at the configured write consistency."""
        return prepare(self.session, cql, self.write_cl, serial_consistency=serial_consistency)

    def batch(self, kind: BatchType = BatchType.UNLOGGED, *, idempotent: bool = True) -> BatchStatement:
        """An empty batch at the write consistency; add ``statement.bind(values)`` to it."""
        b = BatchStatement(batch_type=kind, consistency_level=self.write_cl)
        b.is_idempotent = idempotent
        return b

    def submit(self, query: BoundStatement | BatchStatement) -> asyncio.Future[Any]:
        """Start a bound statement or batch; the future holds the first page of rows (or None)."""
        return await_response(self.session.execute_async(query))

    async def send(self, query: BoundStatement | BatchStatement) -> Any:
        """:meth:`submit`, waiting while the driver's connection is busy (:data:`BUSY_BACKOFF`)."""
        return await retry_async(
            lambda: self.submit(query),
            transient=connection_busy,
            backoff=BUSY_BACKOFF,
            attempts=BUSY_ATTEMPTS,
            what="Cassandra statement",
        )

    async def run(self, stmt: Statement | BatchStatement, values: Values | None = None) -> list[Row]:
        """Execute and return the rows of the first page ([] for writes)."""
        rows = await self.send(stmt.bind(values) if isinstance(stmt, Statement) else stmt)
        return list(rows) if rows else []

    async def one(self, stmt: Statement, values: Values | None = None) -> Row | None:
        """The first row of a query, or None."""
        rows = await self.run(stmt, values)
        return rows[0] if rows else None

    def rows(self, stmt: Statement, values: Values | None = None) -> Iterator[Row]:
        """Every row of a query, all pages (blocking: run it in an executor from async code)."""
        query = stmt.bind(values)
        return iter(
            retry_sync(
                lambda: self.session.execute(query),
                transient=connection_busy,
                backoff=BUSY_BACKOFF,
                attempts=BUSY_ATTEMPTS,
                what="Cassandra query",
            )
        )
