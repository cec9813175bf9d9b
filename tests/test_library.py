"""The public API, driven directly (no subprocess): every function gives the same
findings as the CLI does for the same input, and its types are what it says."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gitrepo import Repo

import scanner
from scanner import Confidence, Finding, ScanOptions, ScanResult, SourceKind


def _keys(findings: list[Finding] | list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What must agree between library and CLI, for either representation."""
    rows = [f.to_dict() if isinstance(f, Finding) else f for f in findings]
    return [(r["path"], r["line"], r["column"], r["secret_sha256"], r["confidence"],
             r["fingerprint"], r["commit"], r["source"]) for r in rows]


@pytest.fixture(scope="module")
def rules() -> list[scanner.Rule]:
    return scanner.load_rules()


def test_public_names_are_documented_and_importable() -> None:
    for name in scanner.__all__:
        value = getattr(scanner, name)
        if callable(value) and name != "__version__":
            assert value.__doc__, f"scanner.{name} has no docstring"
    with pytest.raises(AttributeError):
        scanner._filter  # noqa: B018 - private names are not part of the API


def test_scan_paths_matches_the_cli(tmp_path: Path, rules: list[scanner.Rule],
                                    make_token: Callable[[], str], cli_json: Any) -> None:
    (tmp_path / "a.env").write_text(f"CENDIS_TOKEN={make_token()}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text(f"x: 1\ntoken: {make_token()[:40]}\n")
    result = scanner.scan_paths([tmp_path], rules)
    assert isinstance(result, ScanResult)
    assert result.files == 2 and result.complete
    status, report = cli_json(["scan", str(tmp_path)])
    assert status == 1
    assert _keys(result.findings) == _keys(report["findings"])
    first = result.findings[0]
    assert first.confidence is Confidence.CONFIRMED and first.source is SourceKind.FILE
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.line = 3  # type: ignore[misc]
    assert json.loads(json.dumps(first.to_dict()))["confidence"] == "confirmed"


def test_min_confidence_and_errors_are_objects(tmp_path: Path, rules: list[scanner.Rule],
                                               make_token: Callable[[], str]) -> None:
    (tmp_path / "t.txt").write_text(f"{make_token()[:40]}\n")
    options = ScanOptions(min_confidence=Confidence.CONFIRMED)
    result = scanner.scan_paths([tmp_path, tmp_path / "missing"], rules, options)
    assert result.findings == []
    [error] = result.errors
    assert error.reason == "io" and "missing" in error.message


def test_scan_stream_and_bytes_match_the_cli(rules: list[scanner.Rule], cli_json: Any,
                                             make_token: Callable[[], str]) -> None:
    data = f"line one\nexport CENDIS_TOKEN='{make_token()}'\n".encode()
    streamed = scanner.scan_stream(io.BytesIO(data), rules)
    held = scanner.scan_bytes(data, rules, name="<stdin>")
    status, report = cli_json(["scan", "-"], input=data)
    assert status == 1
    assert _keys(streamed.findings) == _keys(held.findings) == _keys(report["findings"])
    assert streamed.findings[0].source is SourceKind.STDIN
    assert streamed.findings[0].variable == "CENDIS_TOKEN"


def test_git_functions_match_the_cli(tmp_path: Path, rules: list[scanner.Rule],
                                     make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    first = repo.commit("one", **{"a.txt": f"t={make_token()}\n"})
    repo.commit("two", **{"b.txt": f"t={make_token()}\n"})
    tip = repo.commit("three", **{"c.txt": f"t={make_token()}\n"})
    repo.write("d.txt", f"t={make_token()}\n")
    repo.git("add", "d.txt")

    history = scanner.scan_git_history(repo.path, rules)
    assert [f.path for f in history.findings] == ["a.txt", "b.txt", "c.txt"]
    assert all(f.source is SourceKind.GIT and f.commit for f in history.findings)
    assert history.commits == 3
    _, report, _ = repo.scan_json("git", "--all")
    assert _keys(history.findings) == _keys(report["findings"])

    new = scanner.scan_git_revs(repo.path, scanner.new_since([tip], [first]), rules)
    _, report, _ = repo.scan_json("git", "--range", f"{first}..{tip}")
    assert [f.path for f in new.findings] == ["b.txt", "c.txt"]
    assert _keys(new.findings) == _keys(report["findings"])
    assert new.commits == 2

    staged = scanner.scan_git_staged(repo.path, rules)
    _, report, _ = repo.scan_json("git", "--staged")
    assert [f.path for f in staged.findings] == ["d.txt"]
    assert _keys(staged.findings) == _keys(report["findings"])


def test_errors_are_a_hierarchy_with_reasons(tmp_path: Path,
                                             rules: list[scanner.Rule]) -> None:
    with pytest.raises(scanner.GitError) as caught:
        scanner.scan_git_history(tmp_path, rules)
    assert caught.value.reason == "git" and isinstance(caught.value, scanner.ScanError)
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rules]]\nid = 'x'\n")
    with pytest.raises(scanner.ConfigError):
        scanner.load_rules([bad])
