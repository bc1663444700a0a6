"""Helpers for the access-control tests: an auth-enabled hub, tokens, authenticated calls."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from hub.config import HubConfig
from hub.users import UserStore
from tests.conftest import fresh_keyspace, make_hub_config
from tests.support import HubThread, read_request, run_stream

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


def slow_ok(cfg: HubConfig) -> HubConfig:
    """Longer Cassandra timeouts: schema changes are slow on a loaded test machine."""
    return cfg.model_copy(update={"cassandra": cfg.cassandra.model_copy(update={"request_timeout_s": 60.0})})


def drop_keyspace(cql: Any, keyspace: str) -> None:
    """Tests clean up after themselves: a long-lived test Cassandra must not fill up with keyspaces."""
    with contextlib.suppress(Exception):  # best effort
        cql.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)


class AuthHub:
    """A real hub with ``auth.enabled`` and a bootstrapped admin token."""

    def __init__(self, cassandra: tuple[list[str], int], cql: Any, **overrides: Any) -> None:
        self.keyspace = fresh_keyspace("auth")
        overrides.setdefault("auth", {"enabled": True})
        self.config = slow_ok(make_hub_config(cassandra, self.keyspace, **overrides))
        self.thread = HubThread(self.config).start()
        self.cql = cql
        self.users = UserStore(session=cql, cassandra=self.config.cassandra)
        self.admin = self.users.add_user_sync("root", "admin", "bootstrap admin", "test")
        self.channel = grpc.insecure_channel(self.thread.target)
        self.cassandra = cassandra
        self._open: HubThread | None = None

    def ingest(self, reads: list[Any]) -> None:
        """Store reads through a second hub on the same keyspace without auth (a stand-in node path)."""
        if self._open is None:
            self._open = HubThread(slow_ok(make_hub_config(self.cassandra, self.keyspace, hub_id="ingest-hub"))).start()
        result = run_stream(self._open.target, [read_request(r) for r in reads])
        assert len(result.acks) == len(reads), result

    def token(self, user_id: str, role: str) -> str:
        return self.users.add_user_sync(user_id, role, user_id, "test")

    def stop(self) -> None:
        self.channel.close()
        if self._open is not None:
            self._open.stop()
        self.thread.stop()
        drop_keyspace(self.cql, self.keyspace)


def call(
    method: grpc.UnaryUnaryMultiCallable[RequestT, ResponseT],
    request: RequestT,
    token: str | None = None,
    timeout: float = 30,
) -> ResponseT:
    md: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
    return method(request, metadata=md, timeout=timeout)


def rpc_code(fn: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    """(status code, details) of a call expected to fail."""
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    raise AssertionError("the call succeeded")
