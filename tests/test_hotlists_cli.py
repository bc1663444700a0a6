"""The ``alpr`` operator CLI against a real hub: hot-list and alert commands, --json, refusals."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from alpr_common.operator_cli import main
from alpr_common.simulation import make_read, noise_jpeg
from tests.conftest import fresh_keyspace, make_hub_config
from tests.hotlist_support import FAST, SAMPLES
from tests.support import HubThread, read_request, run_stream

SOON = (date.today() + timedelta(days=30)).isoformat()  # a manual entry's expiry


@pytest.fixture(scope="module")
def hub(cassandra: tuple[list[str], int]) -> Iterator[HubThread]:
    h = HubThread(make_hub_config(cassandra, fresh_keyspace("cli"), **FAST)).start()
    yield h
    h.stop(1)


def alpr(capsys: pytest.CaptureFixture[str], hub: HubThread, *argv: str) -> tuple[int, str, str]:
    """The CLI without a token: this hub has no access control, so flags name who acts."""
    rc = main(["--hub", hub.target, *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_hotlist_commands(hub: HubThread, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = alpr(capsys, hub, "hotlist", "import", str(SAMPLES / "il_leads_sample.txt"),
                        "--format", "il-leads", "--source", "leads")  # fmt: skip
    assert rc == 1 and "il_leads_sample.txt:34: plate is empty" in err and "--skip-bad" in err
    rc, out, _ = alpr(capsys, hub, "hotlist", "import", str(SAMPLES / "il_leads_sample.txt"),
                      "--format", "il-leads", "--source", "leads", "--skip-bad", "--json")  # fmt: skip
    res = json.loads(out.splitlines()[-1])
    assert rc == 0 and res["added"] == "60" and res["committed"] is True
    rc, out, err = alpr(capsys, hub, "hotlist", "add", "cli-777", "--state", "IL", "--category", "amber-alert",
                        "--reason", "AMBER alert 2026-0042", "--officer", "o-5", "--expires", SOON, "--json")  # fmt: skip
    assert rc == 0, err
    entry = json.loads(out)["entry"]
    assert entry["plate"] == "CLI777" and entry["category"] == "HOT_LIST_CATEGORY_AMBER_ALERT"
    rc, out, _ = alpr(capsys, hub, "hotlist", "list", "--plate", "CLI777")
    assert rc == 0 and "amber_alert" in out and entry["entry_id"] in out
    rc, out, _ = alpr(capsys, hub, "hotlist", "show", "LEADS:IL:601815V:V23A0968")
    assert rc == 0 and "JEEP" in out
    rc, _, err = alpr(capsys, hub, "hotlist", "show", "LEADS:IL:NOPE:X")
    assert rc == 1 and "NOT_FOUND" in err
    rc, _, err = alpr(capsys, hub, "hotlist", "add", "X1", "--category", "nonsense", "--reason", "r", "--officer", "o",
                        "--expires", SOON)  # fmt: skip
    assert rc == 1 and "unknown category" in err
    rc, _, err = alpr(capsys, hub, "hotlist", "add", "X1", "--category", "stolen_vehicle", "--reason", "r",
                        "--expires", SOON)  # fmt: skip
    assert rc == 1 and "--officer ID is needed without a token" in err, err
    rc, out, _ = alpr(
        capsys, hub, "hotlist", "remove", entry["entry_id"], "--reason", "child found", "--officer", "o-5"
    )
    assert rc == 0 and "removed" in out


def test_alert_commands(hub: HubThread, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, err = alpr(capsys, hub, "hotlist", "add", "ALR1234", "--state", "IL", "--category", "stolen_vehicle",
                        "--reason", "stolen from lot", "--officer", "o-1", "--expires", SOON)  # fmt: skip
    assert rc == 0, err
    seen: list[str] = []

    def watch() -> None:
        main(["--hub", hub.target, "alerts", "watch", "--count", "1", "--json", "--camera", "cam-cli"])

    # The watcher runs in a thread (its output is captured with the rest).
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    crop, frame = noise_jpeg(100, 30, 1), noise_jpeg(320, 180, 2)
    deadline = time.monotonic() + 15
    while t.is_alive():  # until the watcher (connecting in its thread) has seen one
        assert time.monotonic() < deadline
        read = make_read(plate="ALR1234", camera_id="cam-cli", crop_jpeg=crop, frame_jpeg=frame)
        assert read.read_id in run_stream(hub.target, [read_request(read)]).acks
        t.join(0.5)
    out, _ = capsys.readouterr()
    ev = json.loads(out.splitlines()[-1])
    seen.append(ev["alert"]["alert_id"])
    aid = seen[0]
    rc, out, _ = alpr(capsys, hub, "alerts", "list", "--status", "pending", "--json")
    assert rc == 0 and aid in {a["alert_id"] for a in json.loads(out)["alerts"]}
    rc, out, _ = alpr(capsys, hub, "alerts", "show", aid, "--images-dir", str(tmp_path))
    assert rc == 0 and "ALR1234" in out and "policy 4.2" in out
    assert (tmp_path / f"alert-{aid}-crop.jpg").read_bytes() == read.plate_crop_jpeg
    assert (tmp_path / f"alert-{aid}-frame.jpg").read_bytes() == read.frame_jpeg
    rc, _, err = alpr(capsys, hub, "alerts", "accept", aid, "--officer", "o-2", "--leads", "done",
                      "--action", "taking-action")  # fmt: skip
    assert rc == 1 and "INVALID_ARGUMENT" in err and "policy 4.2" in err
    rc, out, _ = alpr(capsys, hub, "alerts", "accept", aid, "--officer", "o-2", "--leads", "done",
                      "--action", "taking-action", "--characters-verified", "--state-verified")  # fmt: skip
    assert rc == 0 and "ACCEPTED" in out
    rc, _, err = alpr(capsys, hub, "alerts", "reject", aid, "--officer", "o-3", "--reason", "misread")
    assert rc == 1 and "FAILED_PRECONDITION" in err and "--amend" in err
    rc, out, _ = alpr(capsys, hub, "alerts", "reject", aid, "--officer", "o-3", "--reason", "misread", "--amend",
                      "--note", "plate is ALR1284", "--json")  # fmt: skip
    assert rc == 0 and json.loads(out)["status"] == "ALERT_STATUS_REJECTED"
    rc, out, _ = alpr(capsys, hub, "alerts", "show", aid, "--images-dir", str(tmp_path), "--json")
    assert [h["officer_id"] for h in json.loads(out)["history"]] == ["o-2", "o-3"]
