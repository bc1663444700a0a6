"""The durable outbox in Cassandra (tables of migration 005, in the hub's keyspace).

A relay (or ticket event) is enqueued once per key: its payload row in ``bridge_relays``
and one ``bridge_outbox`` row per sink are written in one logged batch, so either all
sinks will get it or none was promised. A sink's row leaves the outbox only after the
sink confirmed delivery (``bridge_deliveries`` = DELIVERED) or the entry was given up
(dead letter). The bridge is the single writer for its ``bridge_id``, so "enqueue unless
already known" needs no lightweight transaction; a crash between the batch and the
stream position being saved just re-finds the marker and enqueues nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.query import BatchStatement, BatchType

from alpr_common.timestamps import utc
from hub.storage import await_response, prepare


class SchemaMissing(Exception):
    """The bridge tables are not there: the hub's migrations have not been applied."""


@dataclass
class PendingEntry:
    sink: str
    key: str
    created_at: datetime
    attempts: int


class Outbox:
    """Cassandra side of the bridge: outbox, outcomes, dead letters, stream position, tickets."""

    def __init__(self, session: Any, keyspace: str, bridge_id: str, write_cl: str, read_cl: str) -> None:
        self.session = session
        self.bridge_id = bridge_id
        ks = keyspace
        rows = session.execute("SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (ks,)).all()
        have = {r.table_name for r in rows}
        need = {"bridge_relays", "bridge_outbox", "bridge_deliveries", "bridge_dead_letters", "bridge_positions"}
        if not need <= have:
            raise SchemaMissing(
                f"keyspace {ks} lacks the bridge tables ({', '.join(sorted(need - have))}); start the hub once "
                "or run `alpr-hub migrate --config HUB.yaml` (migration 005) with the same keyspace"
            )
        self.wcl = getattr(ConsistencyLevel, write_cl)
        rcl = getattr(ConsistencyLevel, read_cl)
        p = self._prep
        self._marker = p(
            f"SELECT kind, created_at, payload FROM {ks}.bridge_relays WHERE bridge_id = ? AND relay_key = ?", rcl
        )
        self._ins_relay = p(
            f"INSERT INTO {ks}.bridge_relays (bridge_id, relay_key, kind, created_at, sinks, payload) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            self.wcl,
        )
        self._ins_outbox = p(
            f"INSERT INTO {ks}.bridge_outbox (bridge_id, sink, relay_key, created_at, attempts) VALUES (?, ?, ?, ?, 0)",
            self.wcl,
        )
        self._pending = p(
            f"SELECT relay_key, created_at, attempts FROM {ks}.bridge_outbox WHERE bridge_id = ? AND sink = ?", rcl
        )
        self._attempt = p(
            f"UPDATE {ks}.bridge_outbox SET attempts = ?, last_error = ? WHERE bridge_id = ? AND sink = ? "
            "AND relay_key = ? IF EXISTS",
            self.wcl,
        )
        self._del_outbox = p(
            f"DELETE FROM {ks}.bridge_outbox WHERE bridge_id = ? AND sink = ? AND relay_key = ?", self.wcl
        )
        self._ins_delivery = p(
            f"INSERT INTO {ks}.bridge_deliveries (bridge_id, relay_key, sink, state, attempts, last_error, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            self.wcl,
        )
        self._ins_dead = p(
            f"INSERT INTO {ks}.bridge_dead_letters (bridge_id, day, failed_at, sink, relay_key, kind, attempts, "
            "last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            self.wcl,
        )
        self._get_pos = p(f"SELECT after_event_id FROM {ks}.bridge_positions WHERE bridge_id = ?", rcl)
        self._set_pos = p(
            f"INSERT INTO {ks}.bridge_positions (bridge_id, after_event_id, updated_at) VALUES (?, ?, ?)", self.wcl
        )
        self._get_tickets = p(
            f"SELECT node_id, incident_id, state, opened_at, closed_at, problems FROM {ks}.bridge_tickets "
            "WHERE bridge_id = ?",
            rcl,
        )
        self._set_ticket = p(
            f"INSERT INTO {ks}.bridge_tickets (bridge_id, node_id, incident_id, state, opened_at, closed_at, problems) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            self.wcl,
        )
        self._nodes = p(f"SELECT * FROM {ks}.node_status", rcl)
        self._known: set[str] = set()
        self._payloads: dict[str, tuple[str, bytes]] = {}

    def _prep(self, cql: str, cl: int) -> Any:
        return prepare(self.session, cql, cl)

    def _run(self, stmt: Any, values: Any = ()) -> asyncio.Future[Any]:
        return await_response(self.session.execute_async(stmt, values))

    async def known(self, key: str) -> bool:
        """Whether ``key`` was ever enqueued by this bridge."""
        if key in self._known:
            return True
        rows = await self._run(self._marker, (self.bridge_id, key))
        if rows:
            self._known.add(key)
            return True
        return False

    async def enqueue(self, key: str, kind: str, payload: bytes, sinks: list[str]) -> datetime | None:
        """Put ``payload`` in the outbox of every sink, once per key; None when already enqueued."""
        if await self.known(key):
            return None
        now = datetime.now(UTC)
        batch = BatchStatement(batch_type=BatchType.LOGGED, consistency_level=self.wcl)
        batch.add(self._ins_relay, (self.bridge_id, key, kind, now, sinks, payload))
        for s in sinks:
            batch.add(self._ins_outbox, (self.bridge_id, s, key, now))
        await self._run(batch)
        self._known.add(key)
        self._payloads[key] = (kind, payload)
        return now

    async def payload(self, key: str) -> tuple[str, bytes] | None:
        if key in self._payloads:
            return self._payloads[key]
        rows = await self._run(self._marker, (self.bridge_id, key))
        if not rows:
            return None
        self._payloads[key] = (rows[0].kind, rows[0].payload)
        return self._payloads[key]

    async def pending(self, sink: str) -> list[PendingEntry]:
        rows = await self._run(self._pending, (self.bridge_id, sink))
        return [PendingEntry(sink, r.relay_key, utc(r.created_at), r.attempts or 0) for r in rows]

    async def attempt_failed(self, sink: str, key: str, attempts: int, error: str) -> None:
        await self._run(self._attempt, (attempts, error[:500], self.bridge_id, sink, key))

    async def delivered(self, sink: str, key: str, attempts: int) -> None:
        """Record the outcome first, then drop the outbox row."""
        now = datetime.now(UTC)
        await self._run(self._ins_delivery, (self.bridge_id, key, sink, "DELIVERED", attempts, None, now))
        await self._run(self._del_outbox, (self.bridge_id, sink, key))
        self._payloads.pop(key, None)

    async def dead(self, sink: str, key: str, kind: str, attempts: int, error: str) -> None:
        now = datetime.now(UTC)
        await self._run(self._ins_dead, (self.bridge_id, now.date(), now, sink, key, kind, attempts, error[:500]))
        await self._run(self._ins_delivery, (self.bridge_id, key, sink, "DEAD", attempts, error[:500], now))
        await self._run(self._del_outbox, (self.bridge_id, sink, key))

    async def position(self) -> str:
        rows = await self._run(self._get_pos, (self.bridge_id,))
        return (rows[0].after_event_id or "") if rows else ""

    async def save_position(self, event_id: str) -> None:
        await self._run(self._set_pos, (self.bridge_id, event_id, datetime.now(UTC)))

    async def tickets(self) -> dict[str, Any]:
        return {r.node_id: r for r in await self._run(self._get_tickets, (self.bridge_id,))}

    async def set_ticket(self, node_id: str, incident_id: Any, state: str, opened: datetime,
                         closed: datetime | None, problems: list[str]) -> None:  # fmt: skip
        await self._run(self._set_ticket, (self.bridge_id, node_id, incident_id, state, opened, closed, problems))

    async def node_status(self) -> list[Any]:
        return list(await self._run(self._nodes))
