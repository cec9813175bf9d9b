"""The CI integrations: the GitHub Action (action.yml) and the GitLab CI template.

actionlint is not installable here (its PyPI wrapper downloads a binary at build time),
so action.yml gets a schema-style check of what GitHub requires of a composite action.
Then the scripts the two files run are run for real, with bash, against a temporary
repository, with the variables GitHub and GitLab set: so the exact command lines they
build are ones the installed CLI accepts, with the exit status and reports expected.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CLI, ROOT, assert_no_leak, keep_output
from gitrepo import Repo

ACTION = ROOT / "action.yml"
GITLAB = ROOT / "ci" / "gitlab-cendis-scan.yml"
ZERO = "0" * 40


def action() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(ACTION.read_text())
    return data


def bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "NO_COLOR": "1",
            "PATH": f"{Path(CLI).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=full,
                          capture_output=True, timeout=120)
    keep_output(proc.stdout + proc.stderr, "ci")
    assert_no_leak(proc.stdout, proc.stderr)
    assert b"Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def repo(tmp_path: Path, make_token: Callable[[], str]) -> tuple[Repo, str, str]:
    """A repository: a clean first commit, then one that adds a token."""
    repo = Repo.make(tmp_path)
    before = repo.commit("clean", **{"README": "hi\n"})
    after = repo.commit("leak", **{"app.env": f"CENDIS={make_token()}\n"})
    return repo, before, after


def test_action_is_a_well_formed_composite_action() -> None:
    data = action()
    assert {"name", "description", "runs"} <= set(data)
    assert data["runs"]["using"] == "composite"
    inputs = data["inputs"]
    for name, spec in inputs.items():
        assert re.fullmatch(r"[a-z][a-z0-9-]*", name)
        assert spec["description"] and isinstance(spec.get("default", ""), str)
    ids = set()
    for step in data["runs"]["steps"]:
        assert ("uses" in step) != ("run" in step), step
        if "run" in step:
            assert step["shell"] == "bash"  # a composite's run step must name its shell
        else:
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", step["uses"])
        ids.add(step.get("id"))
    text = ACTION.read_text()
    used = set(re.findall(r"inputs\.([a-z0-9-]+)", text))
    assert used <= set(inputs), used - set(inputs)
    assert set(re.findall(r"steps\.([a-z0-9-]+)\.", text)) <= ids
    for output in data["outputs"].values():
        assert output["value"].startswith("${{ steps.scan.outputs.")
    upload = next(s for s in data["runs"]["steps"] if "uses" in s
                  and s["uses"].startswith("github/codeql-action/upload-sarif@"))
    assert upload["with"]["sarif_file"] == "${{ steps.scan.outputs.sarif-file }}"


def _step(name: str) -> dict[str, Any]:
    return next(s for s in action()["runs"]["steps"] if s.get("name") == name)


def _outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_action_scan_step_runs_the_cli(tmp_path: Path, repo: tuple[Repo, str, str],
                                       sarif_schema: dict[str, Any]) -> None:
    import jsonschema

    work, before, after = repo
    script = _step("Scan")["run"]
    base = {"SCAN": "auto", "SCAN_PATH": ".", "SWEEP_CONFIG": "", "SARIF": "false",
            "EXTRA_ARGS": "", "EVENT": "push", "BEFORE": before, "AFTER": after,
            "PR_BASE": "", "PR_HEAD": "", **work.env}

    # A push: the pushed range; a token in it: status 1, the job would fail.
    out = tmp_path / "out1"
    proc = bash(script, work.path, {**base, "GITHUB_OUTPUT": str(out)})
    assert proc.returncode == 0, proc.stderr
    assert _outputs(out) == {"status": "1"}
    assert b"app.env" in proc.stdout and b"leaked Cendis tokens" in proc.stdout

    # A schedule with SARIF: the whole history, a SARIF file code scanning accepts.
    out = tmp_path / "out2"
    proc = bash(script, work.path, {**base, "EVENT": "schedule", "SARIF": "true",
                                    "EXTRA_ARGS": "--min-confidence confirmed",
                                    "GITHUB_OUTPUT": str(out)})
    assert _outputs(out) == {"sarif-file": "cendis-scan.sarif", "status": "1"}, proc.stderr
    sarif = json.loads((work.path / "cendis-scan.sarif").read_text())
    jsonschema.validate(sarif, sarif_schema)
    assert len(sarif["runs"][0]["results"]) == 1

    # A bad input: one error line, exit 2, no scan.
    proc = bash(script, work.path, {**base, "SCAN": "everything",
                                    "GITHUB_OUTPUT": str(tmp_path / "out3")})
    assert proc.returncode == 2 and b"scan must be auto" in proc.stdout

    result = _step("Result")["run"]
    for status, fail, code in (("0", "true", 0), ("1", "true", 1), ("1", "false", 0),
                               ("2", "false", 2)):
        assert bash(result, tmp_path, {"STATUS": status, "FAIL": fail}).returncode == code


def test_gitlab_template_writes_a_secret_detection_report(
        tmp_path: Path, repo: tuple[Repo, str, str]) -> None:
    work, before, after = repo
    data = yaml.safe_load(GITLAB.read_text())
    job = data["cendis-scan"]
    assert job["extends"] == ".cendis-scan-setup"
    assert "$CENDIS_SCAN_PACKAGE" in " ".join(data[".cendis-scan-setup"]["before_script"])
    report = job["artifacts"]["reports"]["secret_detection"]
    assert report == "gl-secret-detection-report.json"
    assert "cendis-scan sweep" in " ".join(data["cendis-scan-sweep"]["script"])
    script = "\n".join(job["script"])
    env = {**data["variables"], **work.env, "CI_PROJECT_DIR": str(work.path),
           "CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BEFORE_SHA": before,
           "CI_COMMIT_SHA": after}
    proc = bash(script, work.path, env)
    assert proc.returncode == 1, proc.stderr  # the job fails: a token was pushed
    text = (work.path / report).read_text()
    assert_no_leak(text)
    gl = json.loads(text)
    assert gl["version"].startswith("15.") and gl["scan"]["type"] == "secret_detection"
    assert gl["scan"]["status"] == "success"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", gl["scan"]["start_time"])
    (vuln,) = gl["vulnerabilities"]
    assert vuln["severity"] in ("Info", "Unknown", "Low", "Medium", "High", "Critical")
    assert vuln["location"]["file"] == "app.env" and vuln["location"]["start_line"] == 1
    assert vuln["location"]["commit"]["sha"] == after
    assert vuln["identifiers"][0] == {"type": "cendis_scan_rule_id", "value": "cendis-pat",
                                      "name": "cendis-scan rule cendis-pat"}
    assert re.fullmatch(r"[0-9a-f]{64}", vuln["id"])

    # Nothing new pushed (the range is empty): a clean report, exit 0.
    proc = bash(script, work.path, {**env, "CI_COMMIT_BEFORE_SHA": after})
    assert proc.returncode == 0, proc.stderr
    assert json.loads((work.path / report).read_text())["vulnerabilities"] == []
