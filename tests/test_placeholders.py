"""Documentation placeholders are never reported; inline markers suppress and are counted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# Every placeholder the spec lists, in the places documentation puts them.
PLACEHOLDERS = [
    "cendis_pat_...",
    "cendis_pat_<your-token>",
    "cendis_pat_${SECRET}",
    "cendis_pat_{{ .Values.token }}",
    "cendis_pat_****",
    "cendis_pat_" + "x" * 36,
    "cendis_pat_" + "x" * 8 + "…",
    "cendis_pat_YOUR_TOKEN_HERE",
    "cendis_pat_" + "0" * 36,
]


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_placeholder_is_never_reported(placeholder: str, scan: Any, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(
        f"Set it:\n\n    export CENDIS_TOKEN={placeholder}\n\n`{placeholder}`\n")
    (tmp_path / "values.yaml").write_text(f'token: "{placeholder}"\n')
    (tmp_path / ".env").write_text(f"CENDIS_TOKEN={placeholder}")
    status, report, _ = scan([str(tmp_path)])
    assert status == 0
    assert report["findings"] == []
    assert report["summary"]["files"] == 3


@pytest.mark.parametrize("marker", ["cendis-scan:allow", "pragma: allowlist secret"])
def test_inline_marker_suppresses_and_is_counted(marker: str, scan: Any, tmp_path: Path,
                                                 make_token: Callable[[], str]) -> None:
    allowed, other = make_token(), make_token()
    (tmp_path / "test_client.py").write_text(
        f'FAKE = "{allowed}"  # {marker}\n'
        f"# {marker}\n"
        f'REAL = "{other}"\n')
    status, report, _ = scan([str(tmp_path)])
    assert status == 1
    [finding] = report["findings"]
    assert (finding["line"], finding["variable"]) == (3, "REAL")
    assert report["summary"]["suppressed"] == 1
    assert report["summary"]["findings"] == 1


def test_only_suppressed_findings_exit_clean(scan: Any, tmp_path: Path,
                                             make_token: Callable[[], str]) -> None:
    (tmp_path / "a.yaml").write_text(f"token: {make_token()}  # cendis-scan:allow\n"
                                     f"other: {make_token()}  # pragma: allowlist secret\n")
    status, report, _ = scan([str(tmp_path)])
    assert (status, report["findings"]) == (0, [])
    assert report["summary"]["suppressed"] == 2


def test_text_summary_counts_suppressed(cli: Any, tmp_path: Path,
                                        make_token: Callable[[], str], no_leak: Any) -> None:
    (tmp_path / "a.txt").write_text(f"{make_token()} cendis-scan:allow\n")
    proc = cli(["scan", str(tmp_path)])
    assert proc.returncode == 0
    assert "1 suppressed by inline marker" in proc.err
    no_leak(proc.stdout, proc.stderr)
