"""Every report writer (scanner/report/) against golden files, in-process: a fixed list
of findings of every kind (a line in a file, a binary offset, a possible token, an
encoded one, each place git can hold one, names with bytes that are not UTF-8 and with
control characters), rendered by each format and compared byte for byte with
``tests/data/golden/report-<scenario>.<format>``. After an intended change of output,
regenerate with ``UPDATE_GOLDEN=1`` and review the diff (as for test_git_golden.py).

The tokens are the spec's vectors, and a finding only ever holds them redacted.
"""

from __future__ import annotations

import importlib
import inspect
import json
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from conftest import assert_golden, assert_no_leak

import scanner
from scanner.finding import Finding, SourceKind
from scanner.report import FORMATS
from scanner.result import ScanIssue, ScanResult
from scanner.token import Confidence, redact, secret_sha256

#: What varies between runs and releases, fixed here: the writers' clock and version.
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
VERSION = "0.0.0-golden"
COMMIT = "3f786850e387550fdab836ed7e6dc881de23001b"
AUTHOR = {"author_name": "Ada \x1b[31mLovelace", "author_email": "ada@example.com",
          "date": "2026-02-27T10:00:00+01:00"}


def _findings(tokens: list[str], broken: str) -> list[Finding]:
    """One of each kind a writer must place and word differently."""
    def make(token: str, **kw: Any) -> Finding:
        fields: dict[str, Any] = {
            "rule_id": "cendis-pat", "confidence": Confidence.CONFIRMED, "path": "app.env",
            "line": 3, "column": 15, "offset": 40, "encoding": "plain",
            "redacted": redact(token), "secret_sha256": secret_sha256(token.encode())}
        fields.update(kw)
        return Finding(**fields)

    a, b, c, d, e = tokens[:5]
    return [
        make(a, variable="CENDIS_TOKEN"),
        make(b, path="bin/app.bin", line=None, column=None, offset=256, encoding="base64"),
        make(broken, confidence=Confidence.POSSIBLE, path="notes.txt", line=1, column=1,
             offset=0),
        make(c, path="data/caf\udce9-\udcff.env", line=2, column=1, offset=9,
             encoding="gzip+base64", note="inside notes.gz"),
        make(d, path="evil\x1b[2J\r\u202ename.txt", line=1, column=7, offset=6),
        make(e, path="naïve/ünïcode.txt", line=12, column=80, offset=900,
             encoding="utf-16"),
        make(a, source=SourceKind.GIT, commit=COMMIT, path="settings.env", line=2,
             column=14, location="file", occurrences=2, **AUTHOR),
        make(b, source=SourceKind.GIT, commit=COMMIT, path=None, line=1, column=18,
             offset=17, location="commit-message", **AUTHOR),
        make(c, source=SourceKind.GIT, commit=COMMIT, path=f"keys/{redact(c)}.txt",
             line=None, column=None, offset=5, location="path", **AUTHOR),
        make(d, source=SourceKind.GIT, commit=COMMIT, path=None, line=1, column=26,
             offset=25, location="tag-message", **AUTHOR),
        make(e, source=SourceKind.GIT, commit=COMMIT, path=None, line=None, column=None,
             offset=0, location="author", **AUTHOR),
        make(a, source=SourceKind.GIT, path="refs/heads/x", line=None, column=None,
             offset=0, location="ref"),
    ]


def _scenario(name: str, vectors: dict[str, Any]) -> ScanResult:
    tokens = [v["token"] for v in vectors["valid"]]
    broken = vectors["invalid"][0]["token"]
    if name == "empty":
        return ScanResult(findings=[], suppressed=0, files=0, bytes=0, seconds=0.0)
    if name == "incomplete":
        return ScanResult(
            findings=_findings(tokens, broken)[:1], suppressed=0, files=2, bytes=120,
            seconds=0.25, errors=[
                ScanIssue("io", "locked\r\x1b[1m.txt: Permission denied", "locked.txt"),
                ScanIssue("source", f"big.gz: over the 1 GiB limit ({tokens[1]})")])
    return ScanResult(findings=_findings(tokens, broken), suppressed=1, files=7,
                      bytes=123_456, seconds=1.5, ignored=2, commits=4)


def _render(fmt: str, result: ScanResult, color: bool,
            monkeypatch: pytest.MonkeyPatch) -> str:
    """The writer's own ``render``, with the clock (where it takes one) and the version
    fixed."""
    monkeypatch.setattr(scanner, "__version__", VERSION)
    writer = importlib.import_module(f"scanner.report.{fmt}")
    extra = {"now": NOW} if "now" in inspect.signature(writer.render).parameters else {}
    text: str = writer.render(result, color=color, **extra)
    return text


CASES = [(fmt, scenario, False) for fmt in FORMATS
         for scenario in ("findings", "incomplete", "empty")] + [("text", "findings", True)]


@pytest.mark.parametrize(("fmt", "scenario", "color"), CASES,
                         ids=[f"{f}-{s}{'-color' if c else ''}" for f, s, c in CASES])
def test_report_matches_golden(fmt: str, scenario: str, color: bool,
                               vectors: dict[str, Any], sarif_schema: dict[str, Any],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    result = _scenario(scenario, vectors)
    text = _render(fmt, result, color, monkeypatch)
    data = text.encode("utf-8")  # a str a writer returns must be valid UTF-8
    assert_no_leak(data)
    # No raw control character: a name cannot forge lines or colours in any format
    # (only the text report's own colours, when asked for).
    raw = {ch for ch in text.replace("\n", "") if ord(ch) < 0x20 or 0x7f <= ord(ch) < 0xa0}
    assert raw <= ({"\x1b"} if color else set()), sorted(raw)
    assert "\u202e" not in text
    for finding in result.findings:
        assert finding.redacted in text
    if fmt != "text":
        doc = json.loads(text)
        if fmt == "sarif":
            errors = [f"{list(e.absolute_path)}: {e.message}"
                      for e in jsonschema.Draft7Validator(sarif_schema).iter_errors(doc)]
            assert errors == []
            assert len(doc["runs"][0]["results"]) == len(result.findings)
    suffix = "-color" if color else ""
    assert_golden(f"report-{scenario}{suffix}.{fmt}", data)

