"""Users, hashed access tokens and the edge-node registry in Cassandra (policy §3)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from datetime import datetime, timedelta

from alpr.v1 import admin_pb2
from cassandra.cluster import Session

from alpr_common.cassandra import CassandraConfig, CassandraStore, Row
from alpr_common.timestamps import now_utc, to_timestamp_or_none
from hub.principal import ROLES


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A random 32-byte token, URL-safe."""
    return "alpr_" + secrets.token_urlsafe(32)


class UserStore(CassandraStore):
    """Users, token hashes and the node registry."""

    def __init__(self, *, session: Session, cassandra: CassandraConfig) -> None:
        super().__init__(session=session, cassandra=cassandra)
        ks = self.keyspace
        self._get_user = self.reader(f"SELECT * FROM {ks}.users WHERE user_id = :user_id")
        self._all_users = self.reader(f"SELECT * FROM {ks}.users")
        # A (re-)created user starts without a password.
        self._ins_user = self.writer(
            f"INSERT INTO {ks}.users (user_id, role, display_name, revoked, created_time, created_by, "
            "password_hash, password_set_time, password_set_by) "
            "VALUES (:user_id, :role, :display_name, false, :created_time, :created_by, null, null, null)"
        )
        self._set_password = self.writer(
            f"UPDATE {ks}.users SET password_hash = :password_hash, password_set_time = :password_set_time, "
            "password_set_by = :password_set_by WHERE user_id = :user_id"
        )
        self._revoke_user = self.writer(
            f"UPDATE {ks}.users SET revoked = true, revoked_time = :revoked_time, revoked_by = :revoked_by "
            "WHERE user_id = :user_id"
        )
        self._get_token = self.reader(
            f"SELECT user_id, created_time, expire_time FROM {ks}.auth_tokens WHERE token_sha256 = :token_sha256"
        )
        self._ins_session_token = self.writer(
            f"INSERT INTO {ks}.auth_tokens (token_sha256, user_id, created_time, expire_time) "
            "VALUES (:token_sha256, :user_id, :created_time, :expire_time) USING TTL :ttl"
        )
        self._del_token = self.writer(f"DELETE FROM {ks}.auth_tokens WHERE token_sha256 = :token_sha256")
        self._ins_failure = self.writer(
            f"INSERT INTO {ks}.signin_failures (user_id, failed_time) VALUES (:user_id, now()) USING TTL :ttl"
        )
        self._recent_failures = self.reader(
            f"SELECT failed_time FROM {ks}.signin_failures WHERE user_id = :user_id "
            "AND failed_time > minTimeuuid(:since) LIMIT :max_rows"
        )
        self._ins_token = self.writer(
            f"INSERT INTO {ks}.auth_tokens (token_sha256, user_id, created_time) "
            "VALUES (:token_sha256, :user_id, :created_time)"
        )
        self._get_node = self.reader(f"SELECT * FROM {ks}.node_registry WHERE node_id = :node_id")
        self._all_nodes = self.reader(f"SELECT * FROM {ks}.node_registry")
        self._upsert_node = self.writer(
            f"UPDATE {ks}.node_registry SET camera_ids = :camera_ids, revoked = false, updated_time = :updated_time, "
            "updated_by = :updated_by, reason = '' WHERE node_id = :node_id"
        )
        self._revoke_node = self.writer(
            f"UPDATE {ks}.node_registry SET revoked = true, updated_time = :updated_time, updated_by = :updated_by, "
            "reason = :reason WHERE node_id = :node_id"
        )

    # -- users and tokens ------------------------------------------------------------
    def add_user_sync(self, user_id: str, role: str, display_name: str = "", created_by: str = "") -> str:
        """Create/replace the user and return a new token (blocking; also bootstraps an admin)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if not user_id:
            raise ValueError("user id is empty")
        token = new_token()
        now = now_utc()
        existing = next(self.rows(self._get_user, {"user_id": user_id}), None)
        if existing is None or existing.revoked or existing.role != role:
            user = {"user_id": user_id, "role": role, "display_name": display_name, "created_by": created_by}
            self.session.execute(self._ins_user.bind({**user, "created_time": now}))
            # A re-added user starts unrevoked; old tokens of a revoked user stay dead
            # because tokens are checked against the user's creation time.
        self.session.execute(
            self._ins_token.bind({"token_sha256": hash_token(token), "user_id": user_id, "created_time": now})
        )
        return token

    async def add_user(self, user_id: str, role: str, display_name: str, created_by: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(
            None, self.add_user_sync, user_id, role, display_name, created_by
        )

    async def get_user(self, user_id: str) -> Row | None:
        return await self.one(self._get_user, {"user_id": user_id})

    async def list_users(self) -> list[Row]:
        return sorted(await self.run(self._all_users), key=lambda r: r.user_id)

    async def revoke_user(self, user_id: str, by: str) -> Row | None:
        await self.run(self._revoke_user, {"revoked_time": now_utc(), "revoked_by": by, "user_id": user_id})
        return await self.get_user(user_id)

    async def user_for_token(self, token: str) -> tuple[Row, Row | None] | None:
        """(token row, user row) for a presented token, or None if unknown."""
        trow = await self.one(self._get_token, {"token_sha256": hash_token(token)})
        if trow is None:
            return None
        return trow, await self.get_user(trow.user_id)

    # -- passwords and sign-in sessions --------------------------------------------------
    async def set_password(self, user_id: str, password_hash: str | None, by: str) -> Row | None:
        """Set (or with None remove) the user's password hash; sessions signed in before end."""
        change = {"password_hash": password_hash, "password_set_time": now_utc(), "password_set_by": by}
        await self.run(self._set_password, {**change, "user_id": user_id})
        return await self.get_user(user_id)

    async def add_session_token(self, user_id: str, ttl_s: int) -> tuple[str, datetime]:
        """A new sign-in session's token (returned once; stored hashed, gone after ``ttl_s``)."""
        token, now = new_token(), now_utc()
        expire = now + timedelta(seconds=ttl_s)
        await self.run(
            self._ins_session_token,
            {"token_sha256": hash_token(token), "user_id": user_id, "created_time": now, "expire_time": expire,
             "ttl": ttl_s},
        )  # fmt: skip
        return token, expire

    async def end_token(self, token: str) -> None:
        await self.run(self._del_token, {"token_sha256": hash_token(token)})

    async def failed_signins(self, user_id: str, window_s: int, limit: int) -> int:
        """Failed password sign-ins for ``user_id`` in the last ``window_s`` (counted up to ``limit``)."""
        since = now_utc() - timedelta(seconds=window_s)
        return len(await self.run(self._recent_failures, {"user_id": user_id, "since": since, "max_rows": limit}))

    async def record_failed_signin(self, user_id: str, window_s: int) -> None:
        await self.run(self._ins_failure, {"user_id": user_id, "ttl": window_s})

    # -- nodes ---------------------------------------------------------------------------
    async def get_node(self, node_id: str) -> Row | None:
        return await self.one(self._get_node, {"node_id": node_id})

    async def list_nodes(self) -> list[Row]:
        return sorted(await self.run(self._all_nodes), key=lambda r: r.node_id)

    async def register_node(self, node_id: str, cameras: list[str], by: str) -> Row | None:
        change = {"camera_ids": set(cameras) or None, "updated_time": now_utc(), "updated_by": by}
        await self.run(self._upsert_node, {**change, "node_id": node_id})
        return await self.get_node(node_id)

    async def revoke_node(self, node_id: str, by: str, reason: str) -> Row | None:
        change = {"updated_time": now_utc(), "updated_by": by, "reason": reason}
        await self.run(self._revoke_node, {**change, "node_id": node_id})
        return await self.get_node(node_id)


def user_proto(r: Row) -> admin_pb2.User:
    return admin_pb2.User(
        user_id=r.user_id,
        role=admin_pb2.Role.Value("ROLE_" + (r.role or "unspecified").upper()),
        display_name=r.display_name or "",
        revoked=bool(r.revoked),
        created_time=to_timestamp_or_none(r.created_time),
        created_by=r.created_by or "",
        revoked_time=to_timestamp_or_none(r.revoked_time),
        revoked_by=r.revoked_by or "",
        has_password=bool(getattr(r, "password_hash", None)),
        password_set_time=to_timestamp_or_none(getattr(r, "password_set_time", None)),
        password_set_by=getattr(r, "password_set_by", None) or "",
    )


def node_proto(r: Row) -> admin_pb2.NodeRegistration:
    return admin_pb2.NodeRegistration(
        node_id=r.node_id,
        camera_ids=sorted(r.camera_ids or ()),
        revoked=bool(r.revoked),
        updated_time=to_timestamp_or_none(r.updated_time),
        updated_by=r.updated_by or "",
        reason=r.reason or "",
    )
