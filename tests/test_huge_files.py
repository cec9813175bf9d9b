"""Files of any size: offsets past 2 GiB, 4 GiB and 5 GiB.

The files are sparse: a few data blocks at the boundaries and holes everywhere else,
so they cost no disk. Holes are skipped by the scanner (``SEEK_DATA``: a hole reads as
zeros, which hold no token and no newline), which is what keeps these tests fast: a
scan of 5 GB of real zeros takes tens of seconds here. So the cost of zeros is not what
is tested; what is tested is every offset computation (search, base64 decoding, RE2,
line and column counting, the split into per-worker ranges) at offsets that do not fit
in 31 or 32 bits. ``test_data_extents`` checks the hole skipping itself, and
``test_sparse_file_of_the_issue`` the issue's exact example (a file that starts with a
hole, so it is read as binary).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scanner.engine.inputs import data_extents

GiB = 1 << 30


def _write_at(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_sparse_file_of_the_issue(scan: Any, tmp_path: Path,
                                  make_token: Callable[[], str]) -> None:
    """`truncate -s $((2**31+4096)) f`, a token written at 2**31+1000: it used to be
    missed with `internal error: OverflowError`."""
    path = tmp_path / "f"
    with open(path, "wb") as f:
        f.truncate(2**31 + 4096)
    _write_at(path, 2**31 + 1000, make_token().encode())
    status, report, proc = scan([str(path)])
    assert status == 1, proc.err
    assert [(f["offset"], f["line"], f["confidence"]) for f in report["findings"]] == [
        (2**31 + 1000, None, "confirmed")]


@pytest.mark.parametrize("jobs", ["1", "2"], ids=["one-process", "split-across-workers"])
def test_tokens_at_the_2_4_and_5_gib_boundaries(scan: Any, tmp_path: Path, jobs: str,
                                               make_token: Callable[[], str]) -> None:
    """A text file (so lines and columns are counted, and with two workers it is cut
    into ranges): tokens straddling 2 GiB and 4 GiB, just after each, base64 past
    4 GiB, and one past 5 GiB."""
    path = tmp_path / "huge.log"
    head = b"".join(b"line %d of a log\n" % n for n in range(1000))  # > one sniff
    size = 5 * GiB + 8192
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    newlines = head.count(b"\n")
    expected = []
    for at, encoded in [(2**31 - 20, False), (2**31 + 100, False), (2**32 - 9, False),
                        (2**32 + 100, True), (5 * GiB + 100, False)]:
        token = make_token().encode()
        secret = base64.b64encode(b"u:" + token) if encoded else token
        line = b"\nkey: " + secret + b"\n"
        start = at - len(b"\nkey: ")
        _write_at(path, start, line)
        expected.append((at, newlines + 2, 6, "base64" if encoded else "plain", "key"))
        newlines += 2
    assert os.stat(path).st_blocks * 512 < 1 << 20  # sparse: the test costs no disk
    status, report, proc = scan([str(path), "--jobs", jobs])
    assert status == 1, proc.err
    got = [(f["offset"], f["line"], f["column"], f["encoding"], f["variable"])
           for f in report["findings"]]
    assert got == expected
    assert report["summary"]["bytes"] == size


def test_data_extents(tmp_path: Path) -> None:
    """Holes are found where the file system says (ext4, xfs, btrfs, tmpfs); a hole
    shorter than HOLE_MIN is read through, and a range ending in a hole stops there."""
    path = tmp_path / "sparse"
    with open(path, "wb") as f:
        f.truncate(4 * GiB)
    for at in (0, 2**31, 2**31 + 4096 * 4, 2**32 - 4096):
        _write_at(path, at, b"x" * 10)
    with open(path, "rb") as f:
        extents = data_extents(f.fileno(), 0, 4 * GiB)
        assert extents == [(0, 4096), (2**31, 2**31 + 4096 * 5), (2**32 - 4096, 2**32)]
        assert data_extents(f.fileno(), 4096, 2**31) == []
        assert data_extents(f.fileno(), 2**31 + 10, 2**31 + 20) == [(2**31 + 10, 2**31 + 20)]


def test_huge_json_report_offsets_read_back_as_baseline(cli: Any, tmp_path: Path,
                                                       make_token: Callable[[], str]) -> None:
    """A finding past 4 GiB goes through the report and back in as a baseline."""
    path = tmp_path / "disk.img"
    with open(path, "wb") as f:
        f.truncate(4 * GiB + 4096)
    _write_at(path, 4 * GiB + 10, make_token().encode())
    first = cli(["scan", str(path), "--format", "json"])
    assert first.returncode == 1, first.err
    (tmp_path / "base.json").write_bytes(first.stdout)
    again = cli(["scan", str(path), "--format", "json", "--baseline",
                 str(tmp_path / "base.json")])
    assert again.returncode == 0, again.err
    assert json.loads(again.stdout)["findings"] == []
