"""The Prometheus alert rules in deploy/prometheus: valid for promtool, and each alert
fires on the series it is about (promtool's own rule unit tests, alerts.test.yml)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import require_tool

RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("promtool", how="apt-get install prometheus")
    return subprocess.run([tool, *args], cwd=RULES, capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_alert_rules_are_valid() -> None:
    proc = _promtool("check", "rules", "alerts.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 4 rules found" in proc.stdout


def test_each_alert_fires_on_its_series_and_only_then() -> None:
    proc = _promtool("test", "rules", "alerts.test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
