"""A valid token inserted anywhere in random bytes is found exactly once, at the right
place, however the input is cut into chunks: in-process with hypothesis (many examples),
then a few seeded cases through the CLI on stdin, gzip and files past a region boundary."""

from __future__ import annotations

import gzip
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scanner.engine.detect import Detector
from scanner.engine.inputs import CHUNK, REGION, scan_stream
from scanner.rules import load
from scanner.token import generate, secret_sha256

DETECTOR = Detector(load())
SEPARATORS = b" \n\t\"',;:=/\0\xff"


@st.composite
def cases(draw: st.DrawFn) -> tuple[bytes, int, bytes, list[bytes], int]:
    """(data, where the token starts, token, chunks, chunk size)."""
    token = generate(random.Random(draw(st.integers(0, 2**32)))).encode()
    filler = draw(st.sampled_from([b"", b"x\n", b"\xc3\xa9", b"ab=="]))
    head = (draw(st.binary(max_size=300)) + filler * draw(st.integers(0, 6000))
            + draw(st.binary(max_size=300)))
    after = draw(st.sampled_from(SEPARATORS)).to_bytes(1, "big")
    tail = after + draw(st.binary(max_size=300)) + filler * draw(st.integers(0, 1000))
    data = head + token + tail
    # Cuts anywhere, and some close to the token (inside it, just before, just after).
    near = draw(st.lists(st.integers(-64, 64), max_size=4))
    anywhere = draw(st.lists(st.integers(0, len(data)), max_size=8))
    cuts = sorted({min(max(0, len(head) + d), len(data)) for d in near} | set(anywhere))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return data, len(head), token, chunks, draw(st.integers(1, 4096))


def _column(data: bytes, at: int) -> int:
    """Code points from the start of the line: bytes that are not UTF-8 continuations."""
    start = data.rfind(b"\n", 0, at) + 1
    return sum(1 for b in data[start:at] if not 0x80 <= b < 0xC0) + 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_token_anywhere_in_random_bytes_is_found_once(
        case: tuple[bytes, int, bytes, list[bytes], int]) -> None:
    data, at, token, chunks, chunk_size = case
    assume(data.count(b"cendis_pat_") == 1)  # random bytes holding another prefix
    want = secret_sha256(token)
    found = [loc for loc in scan_stream(DETECTOR, chunks, chunk_size=chunk_size)
             if loc.hit.secret_sha256 == want]
    assert len(found) == 1
    [loc] = found
    assert loc.offset == at
    assert loc.hit.encoding == "plain" and loc.hit.confidence == "confirmed"
    assert loc.line == data.count(b"\n", 0, at) + 1
    assert loc.column == _column(data, at)


def _noise(rng: random.Random, n: int, text: bool) -> bytes:
    """Random bytes that cannot extend a token run (or look like gzip or UTF-16)."""
    data = rng.randbytes(n)
    if text:  # each byte drawn from the alphabet (translate: ~0.5 s less per MiB)
        alphabet = b"abc XYZ 019\n.,;-\xc3\xa9"
        data = data.translate(bytes(alphabet[i % len(alphabet)] for i in range(256)))
    return b"#" + data.replace(b"cendis_pat_", b"") + b" "


def test_cli_stdin_random_bytes_across_chunk_boundaries(
        scan: Any, rng: random.Random, make_token: Callable[[], str]) -> None:
    for text in (True, False):
        for _ in range(3):
            head = _noise(rng, CHUNK - rng.randrange(-50, 50), text)
            token = make_token()
            data = head + token.encode() + _noise(rng, rng.randrange(0, 5000), text)
            status, report, _ = scan(["-"], input=data)
            assert status == 1
            [finding] = [f for f in report["findings"]
                         if f["secret_sha256"] == secret_sha256(token.encode())]
            assert finding["offset"] == len(head)
            assert finding["line"] == (data.count(b"\n", 0, len(head)) + 1 if text else None)


def test_cli_gzip_random_text_across_chunk_boundaries(
        scan: Any, tmp_path: Path, rng: random.Random, make_token: Callable[[], str]) -> None:
    token = make_token()
    head = _noise(rng, 2 * CHUNK - rng.randrange(0, 48), text=True)
    data = head + token.encode() + _noise(rng, 100, text=True)
    (tmp_path / "log.gz").write_bytes(gzip.compress(data, compresslevel=1))
    status, report, _ = scan([str(tmp_path / "log.gz")])
    assert status == 1
    [finding] = report["findings"]
    assert (finding["offset"], finding["encoding"]) == (len(head), "gzip")
    assert finding["line"] == data.count(b"\n", 0, len(head)) + 1
    assert finding["column"] == _column(data, len(head))


def test_cli_file_token_across_a_region_boundary(
        scan: Any, tmp_path: Path, rng: random.Random, make_token: Callable[[], str]) -> None:
    tokens = [make_token() for _ in range(3)]
    at = [REGION - rng.randrange(1, 47), REGION + 1000, REGION + (1 << 20)]
    data = bytearray(b"x" * 63 + b"\n") * ((REGION + (2 << 20)) // 64)
    for where, token in zip(at, tokens, strict=True):
        data[where - 1 : where + 48] = b" " + token.encode() + b" "
    (tmp_path / "big.log").write_bytes(data)
    status, report, _ = scan([str(tmp_path / "big.log"), "--jobs", "1"])
    assert status == 1
    assert [f["offset"] for f in report["findings"]] == at
    assert [(f["line"], f["column"]) for f in report["findings"]] == [
        (data.count(b"\n", 0, w) + 1, _column(data, w)) for w in at]
