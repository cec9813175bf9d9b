"""The one newline counter (scanner/engine/newlines.py) gives ``bytes.count``'s answer
for every buffer kind the engine hands it and every range, SIMD or not: a line number
one off is a finding pointing at the wrong line."""

from __future__ import annotations

import mmap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.engine import newlines

# Long enough to take the SIMD path (past newlines.SMALL), newlines dense and sparse.
BODIES = st.builds(
    lambda unit, repeat, tail: unit * repeat + tail,
    st.binary(min_size=1, max_size=64).map(lambda b: b.replace(b"\r", b"\n")),
    st.integers(min_value=1, max_value=3000),
    st.binary(max_size=200),
)


@settings(max_examples=150, deadline=None)
@given(body=BODIES, start=st.integers(-50, 200_000), end=st.integers(-50, 200_000))
def test_count_is_bytes_count_for_every_buffer_and_range(body: bytes, start: int,
                                                         end: int) -> None:
    expected = body[max(start, 0):max(end, 0)].count(b"\n")
    for buf in (body, bytearray(body), memoryview(body)):
        assert newlines.count(buf, start, end) == expected
    lo, hi = min(max(start, 0), len(body)), min(max(end, 0), len(body))
    assert newlines.plain(body, lo, hi) == (expected if hi > lo else 0)


@pytest.mark.parametrize("size", [0, 1, newlines.SMALL - 1, newlines.SMALL + 1, 1 << 20])
def test_count_on_a_mapped_file(tmp_path: Path, size: int) -> None:
    body = (b"x" * 99 + b"\n") * (size // 100) + b"y" * (size % 100)
    path = tmp_path / "f"
    path.write_bytes(body or b"\0")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert newlines.count(mm) == (body or b"\0").count(b"\n")
        assert newlines.count(mm, 7, max(7, size - 3)) == body[7:max(7, size - 3)].count(b"\n")


def test_the_simd_counter_is_installed() -> None:
    """It is a dependency: without it every stream pays ~0.3 s CPU a GB more."""
    assert newlines._simd is not None
