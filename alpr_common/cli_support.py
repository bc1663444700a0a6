"""What every command-line entry point shares: ``--version``, a quiet exit when the reader of
its output goes away (``alpr alerts list | head -2``), and one-line errors for files that
cannot be read instead of tracebacks."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from importlib import metadata

DISTRIBUTION = "alpr-platform"


def platform_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown (not installed)"


def version_line(prog: str) -> str:
    return f"{prog} {platform_version()}"


def add_version(parser: argparse.ArgumentParser, prog: str) -> None:
    parser.add_argument("--version", action="version", version=version_line(prog), help="print the version and exit")


def run_cli(prog: str, body: Callable[[], int]) -> int:
    """Run a command's body: exit quietly (0) on a closed output pipe; a file that cannot be
    read or written is one line on stderr (exit 1)."""
    try:
        rc = body()
        sys.stdout.flush()  # a closed pipe shows up here at the latest, not at interpreter exit
        return rc
    except BrokenPipeError:
        # The reader has what it wanted; later writes (and the final flush) go nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        what = f"{e.strerror}: {e.filename}" if e.filename else str(e)
        print(f"{prog}: {what}", file=sys.stderr)
        return 1
