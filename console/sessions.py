"""Signed-in sessions, held in the console's memory only.

The browser gets a random session id in an httpOnly, SameSite=Strict cookie; the person's
hub token stays here, next to the session, and is forgotten at sign-out, at expiry, or when
the console stops. A token the hub gave for a password sign-in (``hub_session``) is also
ended at the hub then: sessions that end are handed to the console (:meth:`Sessions.ended`).
Every form carries the session's CSRF token.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

COOKIE = "alpr_console"
# Before sign-in: ties the sign-in form to the browser that loaded it (login CSRF).
PRE_COOKIE = "alpr_console_pre"


@dataclass
class Session:
    sid: str
    token: str
    user_id: str
    role: str
    display_name: str
    # The token is the hub's session for a password sign-in (ended at the hub with this one).
    hub_session: bool = False
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    started: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)

    def csrf_ok(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf.encode(), (sent or "").encode())


class Sessions:
    def __init__(self, *, max_s: float, idle_s: float) -> None:
        self.max_s = max_s
        self.idle_s = idle_s
        self._by_id: dict[str, Session] = {}
        self._ended: list[Session] = []  # expired, not yet handed over by ended()
        self._lock = threading.Lock()

    def create(self, *, token: str, user_id: str, role: str, display_name: str, hub_session: bool = False) -> Session:
        s = Session(secrets.token_urlsafe(32), token, user_id, role, display_name, hub_session)
        with self._lock:
            self._purge(time.monotonic())
            self._by_id[s.sid] = s
        return s

    def get(self, sid: str | None) -> Session | None:
        """The live session for ``sid`` (and its idle clock restarted), or None once expired."""
        if not sid:
            return None
        now = time.monotonic()
        with self._lock:
            s = self._by_id.get(sid)
            if s is None:
                return None
            if now - s.started > self.max_s or now - s.last_seen > self.idle_s:
                self._ended.append(self._by_id.pop(sid))
                return None
            s.last_seen = now
            return s

    def drop(self, sid: str | None) -> Session | None:
        with self._lock:
            return self._by_id.pop(sid or "", None)

    def ended(self) -> list[Session]:
        """Sessions that expired since the last call (their hub sessions are still to end)."""
        with self._lock:
            self._purge(time.monotonic())
            out, self._ended = self._ended, []
            return out

    def drop_user(self, user_id: str) -> None:
        """Forget every session of a person (their token was refused: revoked)."""
        with self._lock:
            for sid in [k for k, s in self._by_id.items() if s.user_id == user_id]:
                del self._by_id[sid]

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_id)

    def _purge(self, now: float) -> None:
        for sid in [
            k for k, s in self._by_id.items() if now - s.started > self.max_s or now - s.last_seen > self.idle_s
        ]:
            self._ended.append(self._by_id.pop(sid))
