"""The API contract: buf lint/format clean, generated code in sync with the protos."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

BUF = Path(sys.executable).parent / "buf"


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_buf_lint_is_clean() -> None:
    res = run(str(BUF), "lint")
    assert res.returncode == 0, res.stdout + res.stderr


def test_buf_format_is_clean() -> None:
    res = run(str(BUF), "format", "--diff", "--exit-code")
    assert res.returncode == 0, res.stdout + res.stderr


def test_generated_code_matches_protos() -> None:
    res = run(sys.executable, "ops/codegen.py", "--check")
    assert res.returncode == 0, res.stdout + res.stderr


def test_generated_code_uses_absolute_imports_and_has_stubs() -> None:
    gen = ROOT / "gen" / "python" / "alpr" / "v1"
    assert "from alpr.v1 import ingest_pb2" in (gen / "ingest_pb2_grpc.py").read_text()
    for mod in ("reads_pb2", "ingest_pb2", "ingest_pb2_grpc"):
        assert (gen / f"{mod}.pyi").exists()
