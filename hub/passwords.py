"""Passwords for signing in where a token cannot be pasted (policy §3): scrypt hashes and the
hub's rules for a new password.

A hash is stored as ``scrypt$N$r$p$SALT$HASH`` (salt and hash base64), so the cost can be
raised later without invalidating stored hashes. Verifying costs about as much as hashing
(tens of milliseconds, 16 MiB): the hub runs it off its event loop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_LENGTH = 10
MAX_LENGTH = 256
_KEY_LEN = 32


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=_KEY_LEN)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


# Verified against when a user has no password (or does not exist), so that a refusal takes
# as long as a wrong password: the time does not tell which user ids exist.
_NOBODY = hash_password(secrets.token_urlsafe(16))


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored``; False (after the same work) when there is none."""
    try:
        scheme, n, r, p, salt, key = (stored or _NOBODY).split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(key)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(want)
        )
    except ValueError:
        return False
    return stored is not None and hmac.compare_digest(got, want)


def password_problem(password: str, user_id: str) -> str:
    """Why ``password`` may not be set for ``user_id``, or "" when it may."""
    if len(password) < MIN_LENGTH:
        return f"password: at least {MIN_LENGTH} characters (got {len(password)})"
    if len(password) > MAX_LENGTH:
        return f"password: at most {MAX_LENGTH} characters"
    if len(set(password)) < 4:
        return "password: use at least 4 different characters"
    if user_id.strip().lower() in password.lower():
        return "password: must not contain the user id"
    if password != password.strip():
        return "password: must not start or end with a space (it is easily mistyped)"
    return ""
