"""Prometheus config and alert rules: valid, unit-tested with promtool, and only about
metrics the code really exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.support import ROOT

PROM = ROOT / "ops" / "prometheus"


def promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: ops/setup installs Debian's prometheus package (apt-get install prometheus)"
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_config_and_rules_are_valid() -> None:
    res = promtool("check", "config", "prometheus.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    res = promtool("check", "rules", "rules/alpr.rules.yml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_rules_fire_when_they_should() -> None:
    tests = sorted(p.name for p in (PROM / "tests").glob("*.yml"))
    assert tests
    res = promtool("test", "rules", *tests, cwd=PROM / "tests")
    assert res.returncode == 0, res.stdout + res.stderr


def test_rules_only_use_metrics_the_code_exports() -> None:
    rules = (PROM / "rules" / "alpr.rules.yml").read_text()
    used = set(re.findall(r"\b(alpr_[a-z_]+?)(?:_bucket|_count|_sum)?\b(?=[{\[\s)])", rules))
    code = "".join(p.read_text() for d in ("hub", "node", "dispatch_bridge") for p in (ROOT / d).rglob("*.py"))
    missing = sorted(m for m in used if f'"{m}"' not in code)
    assert missing == [], f"rules refer to metrics no component exports: {missing}"
