"""``alpr-node``: the edge-node runtime (camera → detect → OCR → reads to the hub)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alpr-node", description="ALPR platform: the edge-node runtime (camera → detect → OCR → reads to the hub).")
    parser.parse_args(argv)
    print("alpr-node: not built yet (issue #4); this entry point is reserved for it.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
