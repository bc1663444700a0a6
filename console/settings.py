"""Console settings: command-line options with ``ALPR_CONSOLE_*`` environment defaults."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HubTls:
    """Mutual TLS towards the hubs: the deployment CA and the console's own certificate."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True)
class ConsoleSettings:
    hub: str = "127.0.0.1:50051"
    hub_tls: HubTls | None = None
    host: str = "127.0.0.1"
    port: int = 8443
    # HTTPS for the browsers: certificate and key (PEM). Without them the console serves
    # plain HTTP, which is only for loopback tests; the session cookie is then not Secure.
    https_cert: Path | None = None
    https_key: Path | None = None
    # A session ends this long after sign-in, or after this long without a request.
    session_max_s: float = 12 * 3600.0
    session_idle_s: float = 30 * 60.0
    # Per hub call.
    rpc_timeout_s: float = 15.0
    # Plain gRPC to the hub (people's tokens, plates and images unencrypted): development only.
    insecure_dev: bool = False

    @property
    def https(self) -> bool:
        return self.https_cert is not None


def _env(name: str, default: str = "") -> str:
    return os.environ.get(f"ALPR_CONSOLE_{name}", default)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ConsoleSettings()
    p.add_argument("--hub", default=_env("HUB", d.hub), help=f"hub HOST:PORT (env ALPR_CONSOLE_HUB, default {d.hub})")
    p.add_argument("--hub-ca", default=_env("HUB_CA"), help="CA of the hubs' certificates: enables mutual TLS")
    p.add_argument("--hub-cert", default=_env("HUB_CERT"), help="the console's client certificate (PEM)")
    p.add_argument("--hub-key", default=_env("HUB_KEY"), help="its key (PEM)")
    p.add_argument(
        "--insecure-dev",
        action="store_true",
        default=_env("INSECURE_DEV") in ("1", "true", "yes"),
        help="talk to the hub without TLS (env ALPR_CONSOLE_INSECURE_DEV=1): development only, "
        "people's tokens and plates then cross the network in plain text",
    )
    p.add_argument("--host", default=_env("HOST", d.host), help=f"listen address (default {d.host})")
    p.add_argument("--port", type=int, default=int(_env("PORT", str(d.port))), help=f"listen port (default {d.port})")
    p.add_argument("--https-cert", default=_env("HTTPS_CERT"), help="HTTPS certificate for the browsers (PEM)")
    p.add_argument("--https-key", default=_env("HTTPS_KEY"), help="its key (PEM)")
    p.add_argument("--session-max-s", type=float, default=float(_env("SESSION_MAX_S", str(d.session_max_s))))
    p.add_argument("--session-idle-s", type=float, default=float(_env("SESSION_IDLE_S", str(d.session_idle_s))))


class SettingsError(Exception):
    """An option is missing or inconsistent; the message says what to fix."""


def from_arguments(a: argparse.Namespace) -> ConsoleSettings:
    if bool(a.https_cert) != bool(a.https_key):
        raise SettingsError("--https-cert and --https-key go together")
    if bool(a.hub_cert) != bool(a.hub_key):
        raise SettingsError("--hub-cert and --hub-key go together")
    if a.hub_cert and not a.hub_ca:
        raise SettingsError("--hub-cert needs --hub-ca (the CA that signed the hubs' certificates)")
    for f in (a.hub_ca, a.hub_cert, a.hub_key, a.https_cert, a.https_key):
        if f and not Path(f).is_file():
            raise SettingsError(f"{f}: no such file")
    if not a.hub_ca and not a.insecure_dev:
        raise SettingsError(
            "no TLS towards the hub: give --hub-ca (and --hub-cert/--hub-key), or --insecure-dev for a "
            "development hub (tokens and plates then travel in plain text)"
        )
    if a.session_idle_s <= 0 or a.session_max_s <= 0 or a.session_idle_s > a.session_max_s:
        raise SettingsError("need 0 < --session-idle-s <= --session-max-s")
    tls = (
        HubTls(Path(a.hub_ca), Path(a.hub_cert) if a.hub_cert else None, Path(a.hub_key) if a.hub_key else None)
        if a.hub_ca
        else None
    )
    return ConsoleSettings(
        hub=a.hub,
        hub_tls=tls,
        host=a.host,
        port=a.port,
        https_cert=Path(a.https_cert) if a.https_cert else None,
        https_key=Path(a.https_key) if a.https_key else None,
        session_max_s=a.session_max_s,
        session_idle_s=a.session_idle_s,
        insecure_dev=bool(a.insecure_dev) and not a.hub_ca,
    )
