"""``alpr-console``: serve the web console."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from alpr_common.config import refuse_insecure
from console.app import create_app
from console.settings import SettingsError, add_arguments, from_arguments


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="alpr-console",
        description="ALPR web console: live hits, review, search, hot lists, fleet, audit. "
        "People sign in with their own hub token; every call goes to the hub with it.",
    )
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        settings = from_arguments(args)
    except SettingsError as e:
        print(f"alpr-console: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.https and settings.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            "alpr-console: serving plain HTTP beyond loopback is refused: give --https-cert/--https-key",
            file=sys.stderr,
        )
        return 2
    refuse_insecure(
        "console", [], settings.insecure_dev, ["TLS to the hub"],
        "People's tokens, plates and images cross the network to the hub in plain text.",
        logging.getLogger("console"),
    )  # fmt: skip
    scheme = "https" if settings.https else "http"
    logging.getLogger("console").info(
        "console on %s://%s:%d, hub %s", scheme, settings.host, settings.port, settings.hub
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.https_cert) if settings.https_cert else None,
        ssl_keyfile=str(settings.https_key) if settings.https_key else None,
        log_level="warning",
        proxy_headers=False,
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
