"""``--baseline REPORT.json`` and the ``.cendis-scan-ignore`` file drop known findings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def project(tmp_path: Path, make_token: Callable[[], str]) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "old.py").write_text(f"A = '{make_token()}'\nB = '{make_token()[:-1]}'\n")
    return root


def test_baseline_drops_known_findings_and_keeps_new_ones(
        scan: Any, cli: Any, project: Path, tmp_path: Path,
        make_token: Callable[[], str]) -> None:
    baseline = tmp_path / "baseline.json"
    status, first, _ = scan(["."], cwd=project)
    assert (status, len(first["findings"])) == (1, 2)
    baseline.write_text(cli(["scan", ".", "--format", "json"], cwd=project).out)

    status, report, _ = scan([".", "--baseline", str(baseline)], cwd=project)
    assert (status, report["findings"]) == (0, [])

    # Moving the known tokens down and adding a new one: only the new one is reported.
    (project / "old.py").write_text("\n\n" + (project / "old.py").read_text())
    (project / "new.py").write_text(f"C = '{make_token()}'\n")
    status, report, _ = scan([".", "--baseline", str(baseline)], cwd=project)
    assert status == 1
    assert [(f["path"], f["variable"]) for f in report["findings"]] == [("new.py", "C")]
    assert report["summary"]["findings"] == 1

    proc = cli(["scan", ".", "--baseline", str(baseline)], cwd=project)
    assert "1 finding (1 confirmed, 0 possible), 2 in baseline or ignore file" in proc.err


def test_ignore_file_at_the_scan_root(scan: Any, project: Path,
                                      make_token: Callable[[], str]) -> None:
    _, report, _ = scan(["."], cwd=project)
    prints = [f["fingerprint"] for f in report["findings"]]
    (project / ".cendis-scan-ignore").write_text(
        "# test fixtures, revoked on 2024-05-01\n"
        f"{prints[0]}\n\n"
        f"   {prints[1]}   \n"
        "  # an indented comment\n")
    status, report, _ = scan(["."], cwd=project)
    assert (status, report["findings"]) == (0, [])
    status, report, _ = scan([str(project)])
    assert (status, report["findings"]) == (0, [])

    (project / "sub").mkdir()
    (project / "sub" / "new.txt").write_text(make_token())
    status, report, _ = scan([str(project)])
    assert status == 1
    assert [Path(f["path"]).name for f in report["findings"]] == ["new.txt"]


def test_ignore_file_entry_for_one_path_does_not_hide_another(
        scan: Any, project: Path) -> None:
    (project / "copy.py").write_text((project / "old.py").read_text())
    _, report, _ = scan(["."], cwd=project)
    (project / ".cendis-scan-ignore").write_text(
        "\n".join(f["fingerprint"] for f in report["findings"] if f["path"] == "old.py"))
    status, report, _ = scan(["."], cwd=project)
    assert status == 1
    assert {f["path"] for f in report["findings"]} == {"copy.py"}


BAD = [
    ("missing", None, "{path}: cannot read: No such file or directory"),
    ("not-json", "this is not json",
     "{path}: not a cendis-scan JSON report (need findings[].fingerprint)"),
    ("sarif", '{"version": "2.1.0", "runs": []}',
     "{path}: not a cendis-scan JSON report (need findings[].fingerprint)"),
    ("no-fingerprint", '{"version": 1, "findings": [{"path": "a"}]}',
     "{path}: not a cendis-scan JSON report (need findings[].fingerprint)"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_baseline_is_a_one_line_error(name: str, content: str | None, message: str,
                                          cli: Any, project: Path, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.json"
    if content is not None:
        path.write_text(content)
    proc = cli(["scan", ".", "--baseline", str(path)], cwd=project)
    assert proc.returncode == 2
    assert proc.err.splitlines() == ["cendis-scan: error: " + message.format(path=path)]
    assert proc.out == ""
