"""``alpr``: the operator CLI (hot lists, alerts, search, export, nodes)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="alpr", description="ALPR platform: the operator CLI (hot lists, alerts, search, export, nodes)."
    )
    parser.parse_args(argv)
    print("alpr: not built yet (issues #5 and #7); this entry point is reserved for it.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
