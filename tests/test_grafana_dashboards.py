"""Grafana dashboards load: valid JSON in Grafana's shape, every query valid PromQL
(checked by promtool) and about metrics the code exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support import ROOT

GRAFANA = ROOT / "ops" / "grafana"


def dashboards() -> list[dict[str, Any]]:
    files = sorted((GRAFANA / "dashboards").glob("*.json"))
    assert {f.stem for f in files} == {"alpr-fleet", "alpr-ops"}
    return [json.loads(f.read_text()) for f in files]


def test_committed_dashboards_match_the_generator(tmp_path: Path) -> None:
    before = {p.name: p.read_text() for p in (GRAFANA / "dashboards").glob("*.json")}
    subprocess.run([sys.executable, str(GRAFANA / "build_dashboards.py")], check=True, capture_output=True)
    after = {p.name: p.read_text() for p in (GRAFANA / "dashboards").glob("*.json")}
    assert before == after, "run ops/grafana/build_dashboards.py and commit the result"


def test_dashboards_have_grafana_shape() -> None:
    for d in dashboards():
        assert d["uid"] and d["title"] and d["schemaVersion"] >= 30
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids))
        for p in d["panels"]:
            assert p["type"] in {"timeseries", "table", "stat"} and p["targets"] and p["gridPos"]["w"] <= 24


def test_every_query_is_valid_promql_about_exported_metrics(tmp_path: Path) -> None:
    exprs = [t["expr"] for d in dashboards() for p in d["panels"] for t in p["targets"]]
    code = "".join(p.read_text() for d in ("hub", "node", "dispatch_bridge") for p in (ROOT / d).rglob("*.py"))
    used = {m for e in exprs for m in re.findall(r"\b(alpr_[a-z_]+?)(?:_bucket|_count|_sum)?\b(?=[{\[\s)])", e)}
    assert sorted(m for m in used if f'"{m}"' not in code) == []
    concrete = [e.replace("$__rate_interval", "5m").replace("$node", ".*") for e in exprs]
    rules = {
        "groups": [
            {"name": "dashboards", "rules": [{"record": f"panel:q{i}", "expr": e} for i, e in enumerate(concrete)]}
        ]
    }
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: ops/setup installs Debian's prometheus package"
    res = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_provisioning_files_parse() -> None:
    for p in (GRAFANA / "provisioning").rglob("*.yaml"):
        assert yaml.safe_load(p.read_text())["apiVersion"] == 1
