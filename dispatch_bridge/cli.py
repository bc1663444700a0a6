"""``alpr-bridge``: the dispatch bridge (relays to dispatch and neighbouring agencies)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="alpr-bridge",
        description="ALPR platform: the dispatch bridge (relays to dispatch and neighbouring agencies).",
    )
    parser.parse_args(argv)
    print("alpr-bridge: not built yet (issue #6); this entry point is reserved for it.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
