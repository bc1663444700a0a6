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

import uuid
from dataclasses import dataclass
from datetime import datetime

from cassandra.cluster import Session
from cassandra.query import BatchType

from alpr_common.cassandra import CassandraConfig, CassandraStore, Row, insert_cql
from alpr_common.timestamps import now_utc, utc


class SchemaMissing(Exception):
    """The bridge tables are not there: the hub's migrations have not been applied."""


@dataclass
class PendingEntry:
    sink: str
    key: str
    created_at: datetime
    attempts: int


class Outbox(CassandraStore):
    """Cassandra side of the bridge: outbox, outcomes, dead letters, stream position, tickets."""

    def __init__(self, *, session: Session, cassandra: CassandraConfig, bridge_id: str) -> None:
        """Prepares the statements (blocking: build it in an executor from async code)."""
        super().__init__(session=session, cassandra=cassandra)
        self.bridge_id = bridge_id
        ks = self.keyspace
        rows = session.execute("SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (ks,)).all()
        have = {r.table_name for r in rows}
        need = {"bridge_relays", "bridge_outbox", "bridge_deliveries", "bridge_dead_letters", "bridge_positions"}
        if not need <= have:
            raise SchemaMissing(
                f"keyspace {ks} lacks the bridge tables ({', '.join(sorted(need - have))}); start the hub once "
                "or run `alpr-hub migrate --config HUB.yaml` (migration 005) with the same keyspace"
            )
        w, r = self.writer, self.reader
        mine = "bridge_id = :bridge_id"
        self._marker = r(
            f"SELECT kind, created_at, payload FROM {ks}.bridge_relays WHERE {mine} AND relay_key = :relay_key"
        )
        self._ins_relay = w(
            insert_cql(f"{ks}.bridge_relays", ("bridge_id", "relay_key", "kind", "created_at", "sinks", "payload"))
        )
        self._ins_outbox = w(
            f"INSERT INTO {ks}.bridge_outbox (bridge_id, sink, relay_key, created_at, attempts) "
            "VALUES (:bridge_id, :sink, :relay_key, :created_at, 0)"
        )
        self._pending = r(
            f"SELECT relay_key, created_at, attempts FROM {ks}.bridge_outbox WHERE {mine} AND sink = :sink"
        )
        self._attempt = w(
            f"UPDATE {ks}.bridge_outbox SET attempts = :attempts, last_error = :last_error "
            f"WHERE {mine} AND sink = :sink AND relay_key = :relay_key IF EXISTS"
        )
        self._del_outbox = w(f"DELETE FROM {ks}.bridge_outbox WHERE {mine} AND sink = :sink AND relay_key = :relay_key")
        self._ins_delivery = w(
            insert_cql(
                f"{ks}.bridge_deliveries",
                ("bridge_id", "relay_key", "sink", "state", "attempts", "last_error", "updated_at"),
            )
        )
        self._ins_dead = w(
            insert_cql(
                f"{ks}.bridge_dead_letters",
                ("bridge_id", "day", "failed_at", "sink", "relay_key", "kind", "attempts", "last_error"),
            )
        )
        self._get_pos = r(f"SELECT after_event_id FROM {ks}.bridge_positions WHERE {mine}")
        self._set_pos = w(insert_cql(f"{ks}.bridge_positions", ("bridge_id", "after_event_id", "updated_at")))
        self._get_tickets = r(
            f"SELECT node_id, incident_id, state, opened_at, closed_at, problems FROM {ks}.bridge_tickets WHERE {mine}"
        )
        self._set_ticket = w(
            insert_cql(
                f"{ks}.bridge_tickets",
                ("bridge_id", "node_id", "incident_id", "state", "opened_at", "closed_at", "problems"),
            )
        )
        self._known: set[str] = set()
        self._payloads: dict[str, tuple[str, bytes]] = {}

    async def known(self, key: str) -> bool:
        """Whether ``key`` was ever enqueued by this bridge."""
        if key in self._known:
            return True
        rows = await self.run(self._marker, {"bridge_id": self.bridge_id, "relay_key": key})
        if rows:
            self._known.add(key)
            return True
        return False

    async def enqueue(
        self, key: str, kind: str, payload: bytes, sinks: list[str], *, checked: bool = False
    ) -> datetime | None:
        """Put ``payload`` in the outbox of every sink, once per key; None when already enqueued.
        ``checked``: the caller has just asked :meth:`known` (saves reading the marker twice)."""
        if (key in self._known) if checked else await self.known(key):
            return None
        now = now_utc()
        batch = self.batch(BatchType.LOGGED)
        relay = {"bridge_id": self.bridge_id, "relay_key": key, "created_at": now}
        batch.add(self._ins_relay.bind({**relay, "kind": kind, "sinks": sinks, "payload": payload}))
        for s in sinks:
            batch.add(self._ins_outbox.bind({**relay, "sink": s}))
        await self.run(batch)
        self._known.add(key)
        self._payloads[key] = (kind, payload)
        return now

    async def payload(self, key: str) -> tuple[str, bytes] | None:
        if key in self._payloads:
            return self._payloads[key]
        rows = await self.run(self._marker, {"bridge_id": self.bridge_id, "relay_key": key})
        if not rows:
            return None
        self._payloads[key] = (rows[0].kind, rows[0].payload)
        return self._payloads[key]

    async def pending(self, sink: str) -> list[PendingEntry]:
        rows = await self.run(self._pending, {"bridge_id": self.bridge_id, "sink": sink})
        return [PendingEntry(sink, r.relay_key, utc(r.created_at), r.attempts or 0) for r in rows]

    async def attempt_failed(self, sink: str, key: str, attempts: int, error: str) -> None:
        entry = {"bridge_id": self.bridge_id, "sink": sink, "relay_key": key}
        await self.run(self._attempt, {**entry, "attempts": attempts, "last_error": error[:500]})

    async def delivered(self, sink: str, key: str, attempts: int) -> None:
        """Record the outcome first, then drop the outbox row."""
        now = now_utc()
        entry = {"bridge_id": self.bridge_id, "sink": sink, "relay_key": key}
        outcome = {"state": "DELIVERED", "attempts": attempts, "last_error": None, "updated_at": now}
        await self.run(self._ins_delivery, {**entry, **outcome})
        await self.run(self._del_outbox, entry)
        self._payloads.pop(key, None)

    async def dead(self, sink: str, key: str, kind: str, attempts: int, error: str) -> None:
        now = now_utc()
        entry = {"bridge_id": self.bridge_id, "sink": sink, "relay_key": key}
        failure = {"attempts": attempts, "last_error": error[:500]}
        await self.run(self._ins_dead, {**entry, **failure, "day": now.date(), "failed_at": now, "kind": kind})
        await self.run(self._ins_delivery, {**entry, **failure, "state": "DEAD", "updated_at": now})
        await self.run(self._del_outbox, entry)

    async def position(self) -> str:
        rows = await self.run(self._get_pos, {"bridge_id": self.bridge_id})
        return (rows[0].after_event_id or "") if rows else ""

    async def save_position(self, event_id: str) -> None:
        await self.run(
            self._set_pos, {"bridge_id": self.bridge_id, "after_event_id": event_id, "updated_at": now_utc()}
        )

    async def tickets(self) -> dict[str, Row]:
        return {r.node_id: r for r in await self.run(self._get_tickets, {"bridge_id": self.bridge_id})}

    async def set_ticket(self, node_id: str, incident_id: uuid.UUID, state: str, opened: datetime,
                         closed: datetime | None, problems: list[str]) -> None:  # fmt: skip
        ticket = {"bridge_id": self.bridge_id, "node_id": node_id, "incident_id": incident_id, "state": state}
        await self.run(self._set_ticket, {**ticket, "opened_at": opened, "closed_at": closed, "problems": problems})
