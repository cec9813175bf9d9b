"""Tokens behind an encoding: UTF-16, base64 (every alignment and alphabet, nested),
gzip (and a gzip bomb), and binary files."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scanner.result import GZIP_LIMIT


def _single(scan: Any, path: Path) -> dict[str, Any]:
    status, report, _ = scan([str(path)])
    assert status == 1, report
    [finding] = report["findings"]
    assert finding["confidence"] == "confirmed"
    return finding


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-16-be-bom"])
def test_utf16(codec: str, scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    token = make_token()
    text = ("**********************\r\nPowerShell transcript start\r\n"
            f"PS C:\\> $env:CENDIS_TOKEN = '{token}'\r\nPS C:\\> exit\r\n")
    data = (b"\xfe\xff" + text.encode("utf-16-be") if codec == "utf-16-be-bom"
            else text.encode(codec))
    (tmp_path / "transcript.txt").write_bytes(data)
    finding = _single(scan, tmp_path / "transcript.txt")
    assert finding["encoding"] == "utf-16"
    assert (finding["line"], finding["column"]) == (3, 30)
    assert finding["variable"] is None


def _b64_case(k: int, urlsafe: bool, token: str) -> bytes:
    """Base64 of a token at byte alignment ``k``, between bytes that encode to ``/`` (or
    ``_``: base64 of alphanumerics alone never differs between the alphabets), ending
    with padding."""
    plain = b"\xff\xfe\xfd" + b"x" * k + token.encode() + b"\xff"
    plain += b"" if len(plain) % 3 else b"\xff"
    return base64.urlsafe_b64encode(plain) if urlsafe else base64.b64encode(plain)


@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
@pytest.mark.parametrize("urlsafe", [False, True], ids=["standard", "urlsafe"])
@pytest.mark.parametrize("k", [0, 1, 2])
def test_base64(k: int, urlsafe: bool, padded: bool, scan: Any, tmp_path: Path,
                make_token: Callable[[], str]) -> None:
    enc = _b64_case(k, urlsafe, make_token())
    assert enc.endswith(b"=")
    if not padded:
        enc = enc.rstrip(b"=")
    assert (b"-" in enc or b"_" in enc) == urlsafe
    (tmp_path / "blob.yaml").write_bytes(b"kind: Blob\npayload:\n  value: " + enc + b"\n")
    finding = _single(scan, tmp_path / "blob.yaml")
    assert finding["encoding"] == "base64"
    assert (finding["line"], finding["column"]) == (3, 10)
    assert finding["variable"] == "value"


def test_base64_run_inside_longer_text(scan: Any, tmp_path: Path,
                                       make_token: Callable[[], str]) -> None:
    token = make_token()
    blob = base64.b64encode(b'{"sub": "ci", "note": "long enough to matter", "t": "'
                            + token.encode() + b'"}').decode()
    (tmp_path / "jwt.txt").write_text(f"Authorization: Bearer eyJhbGciOi.{blob}.c2ln\n")
    finding = _single(scan, tmp_path / "jwt.txt")
    assert finding["encoding"] == "base64"
    assert (finding["line"], finding["column"]) == (1, len("Authorization: Bearer eyJhbGciOi.") + 1)


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def test_kubernetes_secret(scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    token = make_token()
    (tmp_path / "secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: cendis\ntype: Opaque\ndata:\n"
        f"  username: {_b64('ci-bot')}\n  token: {_b64(token)}\n")
    finding = _single(scan, tmp_path / "secret.yaml")
    assert finding["encoding"] == "base64"
    assert (finding["line"], finding["column"], finding["variable"]) == (8, 10, "token")


def _docker_config(token: str) -> str:
    auth = _b64(f"ci-bot:{token}")
    return json.dumps({"auths": {"registry.example.com": {"auth": auth}}}, indent=2)


def test_docker_config_auths(scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    (tmp_path / "config.json").write_text(_docker_config(make_token()) + "\n")
    finding = _single(scan, tmp_path / "config.json")
    assert finding["encoding"] == "base64"
    assert (finding["line"], finding["column"], finding["variable"]) == (4, 16, "auth")


def test_dockerconfigjson_inside_kubernetes_secret(scan: Any, tmp_path: Path,
                                                   make_token: Callable[[], str]) -> None:
    nested = _b64(_docker_config(make_token()))
    (tmp_path / "pull-secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: regcred\n"
        "type: kubernetes.io/dockerconfigjson\ndata:\n"
        f"  .dockerconfigjson: {nested}\n")
    finding = _single(scan, tmp_path / "pull-secret.yaml")
    assert finding["encoding"] == "base64+base64"
    assert (finding["line"], finding["column"]) == (7, 22)


def test_gzip_log(scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    token = make_token()
    lines = [f"2024-05-01T10:00:{i:02d} GET /health 200" for i in range(50)]
    lines[37] = f"2024-05-01T10:00:37 using token {token}"
    (tmp_path / "app.log.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    finding = _single(scan, tmp_path / "app.log.gz")
    assert finding["encoding"] == "gzip"
    assert (finding["line"], finding["column"]) == (38, 33)


def test_gzip_of_base64(scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    data = f"header\nsecret: {_b64(make_token())}\n".encode()
    (tmp_path / "dump").write_bytes(gzip.compress(data))
    finding = _single(scan, tmp_path / "dump")
    assert finding["encoding"] == "gzip+base64"
    assert (finding["line"], finding["column"]) == (2, 9)


def test_multi_member_gzip(scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    data = gzip.compress(b"first member\n") + gzip.compress(f"x {make_token()}\n".encode())
    (tmp_path / "rotated.gz").write_bytes(data)
    finding = _single(scan, tmp_path / "rotated.gz")
    assert (finding["encoding"], finding["line"], finding["column"]) == ("gzip", 2, 3)


def _gzip_bomb(path: Path, expands_to: int) -> None:
    """Zeros compressed as identical full-flush blocks: ~1 KB per MiB, written in a few
    milliseconds. The trailer is never reached, so the CRC need not be right."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    first = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    repeat = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    with path.open("wb") as f:
        f.write(first)
        for _ in range(expands_to // len(block)):
            f.write(repeat)
        f.write(c.flush())


def test_gzip_bomb_is_an_error_for_that_file_only(scan: Any, tmp_path: Path,
                                                  make_token: Callable[[], str]) -> None:
    """The bound is a parameter (--max-decompressed), so the bomb inflates megabytes; the
    same code path stops it at the default GZIP_LIMIT (1 GiB)."""
    limit = 4 << 20
    _gzip_bomb(tmp_path / "a-bomb.gz", limit + (8 << 20))
    assert (tmp_path / "a-bomb.gz").stat().st_size < 64 << 10
    (tmp_path / "b.txt").write_text(f"after the bomb: {make_token()}\n")
    status, report, proc = scan([str(tmp_path), "--max-decompressed", "4M"])
    assert status == 2
    assert [f["path"] for f in report["findings"]] == [str(tmp_path / "b.txt")]
    assert report["summary"]["files"] == 2
    [error] = proc.err.splitlines()
    assert error == (f"cendis-scan: error: {tmp_path / 'a-bomb.gz'}: gzip expands beyond "
                     "4 MiB; not scanned further")


def test_gzip_just_under_the_bound_is_scanned(scan: Any, tmp_path: Path,
                                             make_token: Callable[[], str]) -> None:
    token = make_token()
    data = b"\0" * ((4 << 20) - 100) + b"\n" + token.encode() + b"\n"
    (tmp_path / "log.gz").write_bytes(gzip.compress(data, 1))
    status, report, _ = scan([str(tmp_path / "log.gz"), "--max-decompressed", "4M"])
    assert status == 1
    assert [f["encoding"] for f in report["findings"]] == ["gzip"]
    status, report, proc = scan([str(tmp_path / "log.gz"), "--max-decompressed", "4095K"])
    assert (status, report["findings"]) == (2, [])
    assert "gzip expands beyond" in proc.err


def test_default_gzip_bound_is_one_gib() -> None:
    from scanner import ScanOptions
    from scanner.cli.parsing import build_parser

    assert GZIP_LIMIT == 1 << 30 == ScanOptions().max_decompressed
    args = build_parser("scan").parse_args(["scan", "x"])
    assert args.max_decompressed is None  # the library's default applies


@pytest.mark.parametrize("size", ["0", "-1", "1.5M", "64MB", "M", ""])
def test_bad_max_decompressed_is_a_usage_error(size: str, cli: Any, tmp_path: Path) -> None:
    proc = cli(["scan", str(tmp_path), "--max-decompressed", size])
    assert proc.returncode == 2
    [line] = proc.err.splitlines()
    assert "--max-decompressed" in line and "invalid size" in line


def test_corrupt_gzip_is_an_error(scan: Any, tmp_path: Path) -> None:
    (tmp_path / "broken.gz").write_bytes(gzip.compress(b"hello world\n" * 100)[:40])
    status, report, proc = scan([str(tmp_path)])
    assert (status, report["findings"]) == (2, [])
    assert "broken.gz: not valid gzip" in proc.err


def test_binary_file_has_offset_and_no_line(scan: Any, cli: Any, no_leak: Any,
                                            tmp_path: Path,
                                            make_token: Callable[[], str]) -> None:
    data = bytes(range(256)) * 8 + b"\n\n" + make_token().encode() + b"\0\xff\n" * 10
    (tmp_path / "app.bin").write_bytes(data)
    finding = _single(scan, tmp_path / "app.bin")
    assert (finding["line"], finding["column"]) == (None, None)
    assert finding["offset"] == 256 * 8 + 2
    assert finding["encoding"] == "plain"
    proc = cli(["scan", str(tmp_path / "app.bin")])
    assert f"app.bin:offset {256 * 8 + 2}: confirmed" in proc.out
    no_leak(proc.stdout, proc.stderr)
