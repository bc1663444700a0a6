#!/usr/bin/env python3
"""A stand-in CAD (dispatch) webhook for the local stack: checks each relay's HMAC-SHA256
signature and appends it to a JSON-lines file, so a person can see what dispatch got.

    .venv/bin/python ops/local_cad.py --port 8089 --secret S --out .run/local/cad.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dispatch_bridge.sinks import SIGNATURE_HEADER, verify_signature


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8089)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    secret = args.secret.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            ok = verify_signature(secret, self.headers.get(SIGNATURE_HEADER, ""), body)
            with args.out.open("a") as f:
                f.write(
                    json.dumps({"received": time.time(), "signature_ok": ok, "relay": json.loads(body or b"{}")}) + "\n"
                )
            self.send_response(200 if ok else 401)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
