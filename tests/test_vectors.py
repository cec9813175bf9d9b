"""Every vector in token-vectors.json (tests/data, a copy of the spec's), scanned from a real
file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import SPEC

VECTORS = json.loads((SPEC / "token-vectors.json").read_text())
VALID = VECTORS["valid"]
PLACEHOLDERS = [v for v in VECTORS["invalid"] if v["why"].startswith("placeholder")]
POSSIBLE = [v for v in VECTORS["invalid"] if not v["why"].startswith("placeholder")]


def _id(vector: dict[str, Any]) -> str:
    return vector.get("note") or vector.get("why") or vector["sha256"][:8]


def test_vector_classes_are_all_covered() -> None:
    whys = " ".join(v["why"] for v in POSSIBLE)
    for kind in ("checksum", "truncated", "too long", "case swapped"):
        assert kind in whys
    assert len(VALID) >= 9 and len(PLACEHOLDERS) >= 2


@pytest.mark.parametrize("vector", VALID, ids=[_id(v) for v in VALID])
def test_valid_vector_is_confirmed(vector: dict[str, Any], scan: Any, tmp_path: Path) -> None:
    token = vector["token"]
    (tmp_path / "config.txt").write_text(f"first line\nuse {token} here\n")
    status, report, _ = scan([str(tmp_path / "config.txt")])
    assert status == 1
    [finding] = report["findings"]
    body = token[len("cendis_pat_"):]
    assert finding["confidence"] == "confirmed"
    assert finding["secret_sha256"] == vector["sha256"]
    assert finding["redacted"] == f"cendis_pat_{body[:4]}…{body[-2:]}"
    assert (finding["line"], finding["column"]) == (2, 5)


@pytest.mark.parametrize("vector", POSSIBLE, ids=[_id(v) for v in POSSIBLE])
def test_token_shaped_invalid_vector_is_possible(vector: dict[str, Any], scan: Any,
                                                  tmp_path: Path) -> None:
    token = vector["token"]
    (tmp_path / "config.txt").write_text(f"TOKEN={token}\n")
    status, report, _ = scan([str(tmp_path)])
    assert status == 1
    [finding] = report["findings"]
    body = token[len("cendis_pat_"):]
    assert finding["confidence"] == "possible"
    assert finding["redacted"] == f"cendis_pat_{body[:4]}…{body[-2:]}"
    assert finding["variable"] == "TOKEN"


@pytest.mark.parametrize("vector", PLACEHOLDERS, ids=[_id(v) for v in PLACEHOLDERS])
def test_placeholder_vector_is_not_reported(vector: dict[str, Any], scan: Any,
                                            tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(f"export CENDIS_TOKEN={vector['token']}\n")
    status, report, _ = scan([str(tmp_path)])
    assert (status, report["findings"], report["summary"]["suppressed"]) == (0, [], 0)


def test_all_vectors_in_one_file_keep_their_lines(scan: Any, tmp_path: Path) -> None:
    everything = VALID + POSSIBLE + PLACEHOLDERS
    text = "".join(f"{i}: {v['token']}\n" for i, v in enumerate(everything))
    (tmp_path / "all.txt").write_text(text)
    status, report, _ = scan([str(tmp_path / "all.txt")])
    assert status == 1
    got = [(f["line"], f["confidence"]) for f in report["findings"]]
    want = [(i + 1, "confirmed") for i in range(len(VALID))] + [
        (len(VALID) + i + 1, "possible") for i in range(len(POSSIBLE))]
    assert got == want
    assert {f["secret_sha256"] for f in report["findings"][: len(VALID)]} == {
        v["sha256"] for v in VALID}
