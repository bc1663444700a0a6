#!/usr/bin/env python3
"""Generate the Python code for the protos in protos/ into gen/python/.

The only way generated code is produced: never edit gen/python by hand.

    .venv/bin/python ops/codegen.py          # regenerate
    .venv/bin/python ops/codegen.py --check  # exit 1 if gen/python is stale

Tool versions are pinned (see PINNED); the script refuses to run with others so that
everybody produces byte-identical output.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_ROOT = ROOT / "gen" / "python"
PINNED = {"grpcio-tools": "1.85.1", "mypy-protobuf": "5.1.0"}


def _check_versions() -> None:
    for dist, want in PINNED.items():
        have = importlib.metadata.version(dist)
        if have != want:
            sys.exit(
                f"codegen: {dist} {have} is installed but {want} is pinned; "
                "run the README set-up command to get the pinned tools"
            )


def generate(out_root: Path) -> list[Path]:
    """Run protoc on every .proto under protos/ and write the results under out_root."""
    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    if not protos:
        sys.exit(f"codegen: no .proto files under {PROTO_ROOT}")
    out_root.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_grpc_out={out_root}",
        *[str(p.relative_to(PROTO_ROOT)) for p in protos],
    ]
    done = subprocess.run(cmd, cwd=PROTO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:  # the plugins' progress lines are noise; their errors are not
        sys.exit(f"codegen: protoc failed:\n{done.stdout}{done.stderr}")
    # Packages for every directory that holds generated modules (alpr/, alpr/v1/).
    for d in {p.parent for p in out_root.rglob("*_pb2.py")}:
        while d != out_root:
            init = d / "__init__.py"
            if not init.exists():
                init.write_text('"""Generated from protos/ by ops/codegen.py. Do not edit."""\n')
            (d / "py.typed").touch()
            d = d.parent
    return sorted(p for p in out_root.rglob("*") if p.is_file())


def _stale_files(fresh_root: Path) -> list[str]:
    fresh = {p.relative_to(fresh_root) for p in fresh_root.rglob("*") if p.is_file()}
    current = {p.relative_to(OUT_ROOT) for p in OUT_ROOT.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    stale = sorted(str(p) for p in fresh ^ current)
    stale += sorted(str(p) for p in fresh & current if not filecmp.cmp(fresh_root / p, OUT_ROOT / p, shallow=False))
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if gen/python differs from a fresh generation")
    args = parser.parse_args(argv)
    _check_versions()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            stale = _stale_files(Path(tmp))
        if stale:
            print("codegen: gen/python is out of date with protos/ for:", *stale, sep="\n  ")
            print("run: .venv/bin/python ops/codegen.py")
            return 1
        print("codegen: gen/python is up to date")
        return 0
    if OUT_ROOT.exists():
        shutil.rmtree(OUT_ROOT)
    files = generate(OUT_ROOT)
    print(f"codegen: wrote {len(files)} files under {OUT_ROOT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
