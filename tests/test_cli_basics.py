"""What every command shares: --version, a quiet exit when its reader goes away
(``alpr alerts list | head -2``), one-line errors for files that cannot be read, and no
purpose made up for an evidence export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from alpr_common.cli_support import platform_version
from alpr_common.operator_cli import main as alpr
from dispatch_bridge.cli import main as alpr_bridge
from hub.cli import main as alpr_hub
from node.cli import main as alpr_node
from tests.support import HubThread

BIN = os.path.dirname(sys.executable)


@pytest.mark.parametrize(
    ("main", "argv", "prog"),
    [
        (alpr, ["--version"], "alpr"),
        (alpr, ["alerts", "list", "--version"], "alpr"),
        (alpr_hub, ["--version"], "alpr-hub"),
        (alpr_bridge, ["--version"], "alpr-bridge"),
        (alpr_node, ["--version"], "alpr-node"),
        (alpr_node, ["shift-start", "--version"], "alpr-node"),
    ],
)
def test_version_everywhere(
    main: Callable[[list[str]], int], argv: list[str], prog: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc: str | int | None
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's version action
        rc = e.code
    assert rc == 0
    assert capsys.readouterr().out.strip() == f"{prog} {platform_version()}"
    assert platform_version()[0].isdigit()


def _to_closed_pipe(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command whose output's reader has already gone (as `| head` does once satisfied)."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run(argv, stdout=w, stderr=subprocess.PIPE, text=True, timeout=120,
                              env={**os.environ, **(env or {})})  # fmt: skip
    finally:
        os.close(w)


@pytest.mark.parametrize("command", ["alpr", "alpr-hub", "alpr-bridge", "alpr-node"])
def test_closed_pipe_is_a_quiet_exit(command: str) -> None:
    res = _to_closed_pipe([os.path.join(BIN, command), "--help"])
    assert "Traceback" not in res.stderr and "BrokenPipeError" not in res.stderr, res.stderr
    assert res.returncode == 0


def test_closed_pipe_mid_listing(tmp_path: Path) -> None:
    """A listing cut short (here a node's status) ends quietly too."""
    status = {"node_id": "n1", "kind": "FIXED", "time": time.time(), "ok": True, "problems": [],
              "cameras": {f"cam-{i}": {"last_frame_age_s": 0.1, "finished": False, "error": None} for i in range(5000)},
              "queue": {"depth": 0, "oldest_age_s": 0}, "hub": {"connected": "h", "last_error": None},
              "detector_ok": True, "reads_emitted": 0}  # fmt: skip
    (tmp_path / "status.json").write_text(json.dumps(status))
    res = _to_closed_pipe([os.path.join(BIN, "alpr-node"), "status", "--state-dir", str(tmp_path)])
    assert res.stderr == "" and res.returncode == 0


def test_missing_tls_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALPR_TLS_CA", str(tmp_path / "nope" / "ca.crt"))
    assert alpr(["--hub", "127.0.0.1:1", "alerts", "list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read TLS file" in err and "nope/ca.crt" in err


def test_export_needs_a_stated_purpose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--hub", "127.0.0.1:1", "export", "--case", "C-1", "--read", "r1", "--out", str(tmp_path / "o")]
    assert alpr(argv) == 1
    assert "purpose" in capsys.readouterr().err
    assert alpr([*argv, "--purpose", "  "]) == 1


def test_alerts_list_into_a_closed_pipe(session_hub: HubThread) -> None:
    """The case operators hit: ``alpr alerts list | head -2``, against a real hub."""
    res = _to_closed_pipe([os.path.join(BIN, "alpr"), "--hub", session_hub.target, "alerts", "list"])
    assert res.stderr == "" and res.returncode == 0
