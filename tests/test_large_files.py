"""Large inputs: a minified line of megabytes, mapped files, and files split across
processes with a token straddling the split point."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scanner.engine.detect import Detector
from scanner.engine.scan_input import READ_WHOLE, split_large
from scanner.rules import load
from scanner.scan import SPLIT_BYTES, scan_origin
from scanner.sources.origin import Origin


def test_minified_line_of_three_megabytes(scan: Any, tmp_path: Path,
                                          make_token: Callable[[], str]) -> None:
    first, second = make_token(), make_token()
    # Two-byte characters before the tokens: columns count code points, not bytes.
    filler = "é" * 750_000
    text = f'var a="{filler}",t="{first}",b="{filler}";var c={{k:"{second}"}}'
    (tmp_path / "bundle.min.js").write_text(text)
    assert 3_000_000 < (tmp_path / "bundle.min.js").stat().st_size < READ_WHOLE
    status, report, _ = scan([str(tmp_path)])
    assert status == 1
    assert [(f["line"], f["column"]) for f in report["findings"]] == [
        (1, text.index(first) + 1), (1, text.index(second) + 1)]


def test_mapped_file_lines_and_columns(scan: Any, tmp_path: Path,
                                       make_token: Callable[[], str]) -> None:
    tokens = [make_token() for _ in range(3)]
    line = "x" * 99 + "\n"
    lines = [line] * (READ_WHOLE // len(line) + 20_000)
    for n, token in zip((10, READ_WHOLE // len(line), len(lines) - 1), tokens, strict=True):
        lines[n] = f"  key: {token}\n"
    (tmp_path / "big.log").write_text("".join(lines))
    assert (tmp_path / "big.log").stat().st_size > READ_WHOLE
    status, report, _ = scan([str(tmp_path)])
    assert status == 1
    assert [(f["line"], f["column"], f["variable"]) for f in report["findings"]] == [
        (11, 8, "key"), (READ_WHOLE // len(line) + 1, 8, "key"), (len(lines), 8, "key")]


def _detector() -> Detector:
    return Detector(load())


@pytest.mark.parametrize("shift", [-47, -30, -11, -6, -1, 0, 1])
@pytest.mark.parametrize("encoded", [False, True], ids=["plain", "base64"])
def test_token_straddling_the_split_point_is_found_once(
        shift: int, encoded: bool, tmp_path: Path, make_token: Callable[[], str]) -> None:
    size = 200_000
    token = make_token().encode()
    secret = base64.b64encode(b"ci:" + token) if encoded else token
    half = -(-size // 2)
    at = half + shift
    data = bytearray(b"." * size)
    data[at : at + len(secret)] = secret
    path = tmp_path / "huge.txt"
    path.write_bytes(bytes(data))
    task = Origin(str(path), "huge.txt", size=size, fs_path=str(path))
    parts = split_large(task, parts=2, min_size=0)
    assert [(p.start, p.end) for p in parts] == [(0, half), (half, size)]
    detector = _detector()
    outcomes = [scan_origin(detector, part) for part in parts]
    findings = [f for o in outcomes for f in o.findings]
    assert [o.errors for o in outcomes] == [[], []]
    assert len(findings) == 1
    assert findings[0].offset == at
    assert findings[0].column == at + 1
    assert findings[0].encoding == ("base64" if encoded else "plain")
    assert sum(o.bytes for o in outcomes) == size


def test_split_file_through_the_cli_numbers_lines(scan: Any, tmp_path: Path,
                                                  make_token: Callable[[], str]) -> None:
    line = b"." * 63 + b"\n"
    n = SPLIT_BYTES // 128 + 1
    tokens = [make_token().encode() for _ in range(3)]
    path = tmp_path / "huge.log"
    with path.open("wb") as f:
        f.write(line * 4 + b"a " + tokens[0] + b"\n" + line * (n - 4))
        f.write(b"xxxx " + tokens[1] + b"\n")  # starts 20 bytes before the middle
        f.write(line * n + tokens[2])
    size = path.stat().st_size
    assert size >= SPLIT_BYTES
    middle = split_large(Origin(str(path), "huge.log", size=size, fs_path=str(path)), 2,
                         0)[1].start
    assert middle == len(line) * n + 50 + 5 + 20
    status, report, _ = scan([str(path), "--jobs", "2"])
    assert status == 1
    assert [(f["line"], f["column"]) for f in report["findings"]] == [
        (5, 3), (n + 2, 6), (2 * n + 3, 1)]
    assert report["summary"]["bytes"] == size
    assert report["summary"]["files"] == 1
