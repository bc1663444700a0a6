"""Numbered CQL migrations, applied in order and recorded with checksums.

Files are ``hub/migrations/NNN_name.cql``. They are templates: ``{{keyspace}}``,
``{{read_ttl_seconds}}``, ``{{twcs_unit}}`` and ``{{twcs_size}}`` come from the hub config.
The checksum covers the template text, so an applied migration that is later edited is
detected and refused: migrations are append-only, add a new file instead.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cassandra import OperationTimedOut, Unavailable, WriteTimeout
from cassandra.cluster import NoHostAvailable, ResultSet, Session

from alpr_common.retry import Backoff, retry_sync
from hub.config import HubConfig

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# A settling cluster answers schema statements within a minute or so.
SCHEMA_BACKOFF = Backoff(initial_s=0.5, max_s=8.0)
SCHEMA_ATTEMPTS = 8
READ_TABLES = ("reads_by_id", "reads_by_plate", "reads_by_camera")
_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.cql$")


class MigrationError(Exception):
    """The schema cannot be brought up to date; the message says why and what to do."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    template: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.template.encode()).hexdigest()

    def statements(self, params: dict[str, str | int]) -> list[str]:
        """The migration's CQL statements with the template parameters filled in."""
        text = re.sub(r"--[^\n]*", "", self.template)

        def fill(m: re.Match[str]) -> str:
            key = m.group(1)
            if key not in params:
                raise MigrationError(f"migration {self.version:03d}_{self.name}: unknown parameter {{{{{key}}}}}")
            return str(params[key])

        text = re.sub(r"\{\{(\w+)\}\}", fill, text)
        return [s.strip() for s in text.split(";") if s.strip()]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All migrations in version order; refuses gaps and duplicate numbers."""
    found: list[Migration] = []
    for path in sorted(directory.glob("*.cql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files must be named NNN_name.cql")
        found.append(Migration(int(m.group(1)), m.group(2), path.read_text()))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration numbers must run 1, 2, 3… without gaps or repeats: {versions}")
    return found


def _cql_map(d: dict[str, str | int]) -> str:
    def lit(v: str | int) -> str:
        return str(v) if isinstance(v, int) else "'" + str(v).replace("'", "''") + "'"

    return "{" + ", ".join(f"{lit(k)}: {lit(v)}" for k, v in d.items()) + "}"


def template_params(config: HubConfig) -> dict[str, str | int]:
    unit, size = config.retention.twcs_window()
    return {
        "keyspace": config.cassandra.keyspace,
        "read_ttl_seconds": config.retention.read_ttl_seconds,
        "twcs_unit": unit,
        "twcs_size": size,
    }


class _RetryingSession:
    """Retries idempotent schema statements while a cluster is still settling (a node just
    restarted, gossip or schema agreement not reached yet)."""

    def __init__(self, session: Session, attempts: int = SCHEMA_ATTEMPTS) -> None:
        self._session = session
        self._attempts = attempts

    def execute(self, query: str, parameters: Sequence[object] | None = None) -> ResultSet:
        return retry_sync(
            lambda: self._session.execute(query, parameters),
            transient=_settling,
            backoff=SCHEMA_BACKOFF,
            attempts=self._attempts,
            what="schema statement",
        )


def _settling(exc: BaseException) -> bool:
    return isinstance(exc, Unavailable | WriteTimeout | OperationTimedOut | NoHostAvailable)


def migrate(session: Session, config: HubConfig, echo: Callable[[str], None] = log.info) -> list[int]:
    """Create the keyspace, apply pending migrations, align retention settings.

    Returns the versions applied by this call. Safe to run from several hubs at once:
    every statement is idempotent and the record insert is a lightweight transaction.
    """
    cql = _RetryingSession(session)
    ks = config.cassandra.keyspace
    cql.execute(f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {_cql_map(config.cassandra.replication_map())}")
    cql.execute(
        f"CREATE TABLE IF NOT EXISTS {ks}.schema_migrations ("
        "version int PRIMARY KEY, name text, checksum text, applied_at timestamp, applied_by text)"
    )
    applied = {row.version: row for row in cql.execute(f"SELECT version, name, checksum FROM {ks}.schema_migrations")}
    params = template_params(config)
    done: list[int] = []
    for mig in load_migrations():
        row = applied.get(mig.version)
        if row is not None:
            if row.checksum != mig.checksum:
                raise MigrationError(
                    f"migration {mig.version:03d}_{mig.name}.cql was changed after it was applied "
                    f"(recorded checksum {row.checksum[:12]}…, file {mig.checksum[:12]}…); applied "
                    "migrations must not be edited: restore the file and add a new numbered migration"
                )
            continue
        echo(f"applying migration {mig.version:03d}_{mig.name}")
        for stmt in mig.statements(params):
            cql.execute(stmt)
        cql.execute(
            f"INSERT INTO {ks}.schema_migrations (version, name, checksum, applied_at, applied_by) "
            "VALUES (%s, %s, %s, %s, %s) IF NOT EXISTS",
            (mig.version, mig.name, mig.checksum, datetime.now(UTC), socket.gethostname()),
        )
        done.append(mig.version)
    _align_retention(cql, config, echo)
    return done


def _align_retention(session: _RetryingSession, config: HubConfig, echo: Callable[[str], None]) -> None:
    """Keep default TTL and compaction windows of the read tables in line with the config."""
    ks = config.cassandra.keyspace
    params = template_params(config)
    want_ttl = params["read_ttl_seconds"]
    want_unit, want_size = params["twcs_unit"], str(params["twcs_size"])
    rows = session.execute(
        "SELECT table_name, default_time_to_live, compaction FROM system_schema.tables WHERE keyspace_name = %s",
        (ks,),
    )
    for row in rows:
        if row.table_name not in READ_TABLES:
            continue
        comp = row.compaction or {}
        if (
            row.default_time_to_live == want_ttl
            and comp.get("compaction_window_unit") == want_unit
            and comp.get("compaction_window_size") == want_size
        ):
            continue
        echo(f"setting {ks}.{row.table_name} retention to {want_ttl} s ({want_size} {want_unit} windows)")
        session.execute(
            f"ALTER TABLE {ks}.{row.table_name} WITH default_time_to_live = {want_ttl} AND compaction = "
            f"{{'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': '{want_unit}', "
            f"'compaction_window_size': {want_size}}}"
        )
