"""Reports: the JSON shape, SARIF against its schema, the text report for people,
``--output``, and fingerprints that survive moving lines."""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

REQUIRED = {
    "rule_id": str, "confidence": str, "path": str, "line": (int, type(None)),
    "column": (int, type(None)), "encoding": str, "redacted": str, "secret_sha256": str,
    "fingerprint": str, "variable": (str, type(None)),
}


@pytest.fixture
def mixed(tmp_path: Path, make_token: Callable[[], str]) -> Path:
    """A tree with findings of every kind: confirmed, possible, base64, binary, UTF-16,
    gzip, and a .env variable."""
    root = tmp_path / "tree"
    root.mkdir()
    (root / ".env").write_text(f"CENDIS_TOKEN={make_token()}\n")
    (root / "possible.txt").write_text(f"copied: {make_token()[:-4]}\n")
    (root / "secret.yaml").write_text(
        f"data:\n  token: {base64.b64encode(make_token().encode()).decode()}\n")
    (root / "app.bin").write_bytes(bytes(range(256)) + make_token().encode() + b"\0")
    (root / "ps.txt").write_bytes(f"PS> {make_token()}\r\n".encode("utf-16"))
    (root / "old.log.gz").write_bytes(gzip.compress(f"x\ny {make_token()}\n".encode()))
    (root / "dir with space").mkdir()
    (root / "dir with space" / "é.txt").write_text(make_token())
    return root


def test_json_report_shape(scan: Any, mixed: Path) -> None:
    status, report, _ = scan(["."], cwd=mixed)
    assert status == 1
    assert set(report) == {"version", "findings", "summary"}
    assert report["version"] == 1
    summary = report["summary"]
    assert set(summary) == {"files", "bytes", "findings", "suppressed", "seconds"}
    assert summary["files"] == 7
    assert summary["findings"] == len(report["findings"]) == 7
    assert summary["bytes"] == sum(p.stat().st_size for p in mixed.rglob("*") if p.is_file())
    assert summary["suppressed"] == 0
    assert isinstance(summary["seconds"], float | int) and summary["seconds"] >= 0
    for finding in report["findings"]:
        for key, kind in REQUIRED.items():
            assert isinstance(finding[key], kind), (key, finding)
        assert finding["rule_id"] == "cendis-pat"
        assert finding["confidence"] in ("confirmed", "possible")
        assert len(finding["secret_sha256"]) == 64
        assert finding["redacted"].startswith("cendis_pat_") and "…" in finding["redacted"]
    by_path = {f["path"]: f for f in report["findings"]}
    assert by_path["possible.txt"]["confidence"] == "possible"
    assert by_path[".env"]["variable"] == "CENDIS_TOKEN"
    assert {f["encoding"] for f in report["findings"]} == {"plain", "base64", "utf-16", "gzip"}
    assert (by_path["app.bin"]["line"], by_path["app.bin"]["offset"]) == (None, 256)


def _validate(sarif: dict[str, Any], schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(sarif)]
    assert errors == []


def test_sarif_validates_with_findings_of_every_kind(cli: Any, no_leak: Any, mixed: Path,
                                                     sarif_schema: dict[str, Any]) -> None:
    proc = cli(["scan", ".", "--format", "sarif"], cwd=mixed)
    assert proc.returncode == 1
    no_leak(proc.stdout, proc.stderr)
    sarif = json.loads(proc.stdout)
    _validate(sarif, sarif_schema)
    assert sarif["version"] == "2.1.0"
    [run] = sarif["runs"]
    results = run["results"]
    assert len(results) == 7
    for result in results:
        assert set(result["partialFingerprints"]) >= {"cendisFingerprint/v1"}
        assert result["ruleId"] == run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"]
    regions = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]:
               r["locations"][0]["physicalLocation"]["region"] for r in results}
    assert regions["app.bin"] == {"byteOffset": 256}
    assert regions["secret.yaml"] == {"startLine": 2, "startColumn": 10}
    assert regions["dir%20with%20space/%C3%A9.txt"] == {"startLine": 1, "startColumn": 1}
    levels = {r["level"] for r in results}
    assert levels == {"error", "warning"}
    assert run["invocations"][0]["executionSuccessful"] is True


def test_sarif_validates_for_an_empty_scan(cli: Any, tmp_path: Path,
                                           sarif_schema: dict[str, Any]) -> None:
    (tmp_path / "a.txt").write_text("clean\n")
    proc = cli(["scan", str(tmp_path), "--format", "sarif"])
    assert (proc.returncode, proc.err) == (0, "")
    sarif = json.loads(proc.stdout)
    _validate(sarif, sarif_schema)
    assert sarif["runs"][0]["results"] == []


def test_sarif_with_an_error_still_validates(cli: Any, tmp_path: Path,
                                             sarif_schema: dict[str, Any]) -> None:
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    proc = cli(["scan", str(tmp_path), "--format", "sarif"])
    assert proc.returncode == 2
    sarif = json.loads(proc.stdout)
    _validate(sarif, sarif_schema)
    assert sarif["runs"][0]["invocations"][0]["executionSuccessful"] is False


def test_text_report_tells_where_what_and_what_to_do(cli: Any, no_leak: Any, tmp_path: Path,
                                                     make_token: Callable[[], str]) -> None:
    token = make_token()
    (tmp_path / "cfg.ini").write_text(f"[x]\n\ntoken = {token}\nold = {token[:-2]}\n")
    proc = cli(["scan", "cfg.ini"], cwd=tmp_path)
    assert proc.returncode == 1
    no_leak(proc.stdout, proc.stderr)
    body = token[len("cendis_pat_"):]
    lines = proc.out.splitlines()
    assert lines[0] == f"cfg.ini:3:9: confirmed cendis-pat cendis_pat_{body[:4]}…{body[-2:]} " \
                       "(in token)"
    assert lines[1].startswith("  fingerprint: cfg.ini:cendis-pat:")
    assert lines[2] == f"cfg.ini:4:7: possible cendis-pat cendis_pat_{body[:4]}…{body[-4:-2]} " \
                       "(in old)"
    assert "treat it as live" in lines[3]
    assert "revoke it in Cendis now" in proc.out and "rotation" in proc.out
    assert "\x1b[" not in proc.out
    assert proc.err == proc.err.splitlines()[0] + "\n"
    assert proc.err.startswith("cendis-scan: 2 findings (1 confirmed, 1 possible); 1 file")


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_output_file(fmt: str, cli: Any, no_leak: Any, tmp_path: Path,
                     make_token: Callable[[], str]) -> None:
    (tmp_path / "a.txt").write_text(make_token())
    out = tmp_path / "reports" / f"report.{fmt}"
    out.parent.mkdir()
    proc = cli(["scan", "a.txt", "--format", fmt, "--output", str(out)], cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.out == ""
    written = out.read_bytes()
    no_leak(written, proc.stdout, proc.stderr)
    assert b"a.txt" in written
    if fmt != "text":
        json.loads(written)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary left


def test_output_to_a_missing_directory_is_an_error(cli: Any, tmp_path: Path) -> None:
    proc = cli(["scan", str(tmp_path), "-o", str(tmp_path / "no" / "r.json")])
    assert proc.returncode == 2
    assert proc.err.splitlines()[0].startswith(
        f"cendis-scan: error: cannot write {tmp_path / 'no' / 'r.json'}: ")


def test_fingerprint_is_stable_when_lines_move(scan: Any, tmp_path: Path,
                                               make_token: Callable[[], str]) -> None:
    token = make_token()
    (tmp_path / "a.py").write_text(f"T = '{token}'\n")
    (tmp_path / "b.py").write_text(f"T = '{token}'\n")
    _, before, _ = scan(["."], cwd=tmp_path)
    (tmp_path / "a.py").write_text("import os\n\n\n# moved down\n" + f"  T = '{token}'\n")
    _, after, _ = scan(["."], cwd=tmp_path)
    a0, b0 = before["findings"]
    a1, b1 = after["findings"]
    assert (a0["line"], a1["line"]) == (1, 5)
    assert a0["fingerprint"] == a1["fingerprint"]
    assert b0["fingerprint"] == b1["fingerprint"]
    assert a0["fingerprint"] != b0["fingerprint"]
    assert a0["secret_sha256"] == b0["secret_sha256"]


def test_fingerprint_does_not_depend_on_where_the_scan_starts(
        scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "src" / "app").mkdir(parents=True)
    (tmp_path / "src" / "app" / "x.py").write_text(make_token())
    prints = {scan([root], cwd=cwd)[1]["findings"][0]["fingerprint"]
              for root, cwd in ((".", tmp_path), ("app", tmp_path / "src"),
                                ("x.py", tmp_path / "src" / "app"),
                                (str(tmp_path), "/"))}
    assert len(prints) == 1
    assert prints.pop().startswith("src/app/x.py:cendis-pat:")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0o027, 0o000])
@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_a_new_report_file_follows_the_umask(tmp_path: Path, umask: int, fmt: str,
                                             make_token: Callable[[], str]) -> None:
    """0666 & ~umask, as a shell's redirection creates it (not mkstemp's 0600)."""
    import os
    import stat

    from conftest import CLI

    (tmp_path / "a.env").write_text(f"T={make_token()}\n")
    report = tmp_path / "out" / "report"
    report.parent.mkdir()
    proc = subprocess.run([CLI, "scan", str(tmp_path / "a.env"), "--format", fmt,
                           "-o", str(report)], capture_output=True, umask=umask,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert stat.S_IMODE(os.stat(report).st_mode) == 0o666 & ~umask
    assert os.listdir(report.parent) == ["report"]  # no temporary file left


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664])
def test_a_replaced_report_keeps_its_mode(tmp_path: Path, mode: int) -> None:
    import os
    import stat

    from conftest import CLI

    (tmp_path / "a.txt").write_text("nothing\n")
    report = tmp_path / "report.json"
    report.write_text("old\n")
    report.chmod(mode)
    proc = subprocess.run([CLI, "scan", str(tmp_path / "a.txt"), "--format", "json",
                           "-o", str(report)], capture_output=True, umask=0o022,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(os.stat(report).st_mode) == mode
    assert json.loads(report.read_text())["findings"] == []
