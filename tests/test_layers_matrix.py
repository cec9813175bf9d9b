"""Every ordered pair of layers (issue 20), each layer in the forms real encoders write
(both base64 alphabets and wrapped, hex in both cases, percent and HTML and backslash
escapes of every byte in each notation, and the escapers of punctuation only:
``urllib.parse.quote``, ``html.escape``, a JSON string's backslash, quoted-printable's
``=3D``), the token at several offsets (base64 alignments); and triples of the total
forms. Each case is a file; the directory is scanned once by the installed CLI, and
each file must give its token with ``encoding`` naming the layers outermost first.

A case is left out only where a layer leaves the token's text as it is (an escaper of
punctuation over letters and digits, or over a form that has none): there is no layer
to name.
"""

from __future__ import annotations

import base64
import gzip
import html
import itertools
import random
import urllib.parse
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_json

from scanner.token import generate
from scanner.token import secret_sha256 as _sha

Encoder = Callable[[bytes], bytes]


def _every(fmt: str) -> Encoder:
    return lambda b: "".join(fmt % c for c in b).encode()


#: Forms that change every byte (or, for base64, hex and compression, all of them).
TOTAL: dict[str, dict[str, Encoder]] = {
    "base64": {"std": base64.b64encode,
               "url": lambda b: base64.urlsafe_b64encode(b).rstrip(b"="),
               "wrapped": base64.encodebytes},
    "gzip": {"gz": gzip.compress},
    "zlib": {"z6": zlib.compress, "z9": lambda b: zlib.compress(b, 9)},
    "hex": {"lower": lambda b: b.hex().encode(), "upper": lambda b: b.hex().upper().encode()},
    "percent": {"upper": _every("%%%02X"), "lower": _every("%%%02x")},
    "html": {"dec": _every("&#%d;"), "hex": _every("&#x%x;")},
    "escaped": {"x": _every("\\x%02x"), "u": _every("\\u%04x"), "oct": _every("\\%03o")},
    "qp": {"full": _every("=%02X")},
}
#: Escapers of punctuation only: outer layers over a form that has punctuation.
PUNCT: dict[str, dict[str, Encoder]] = {
    "percent": {"quote": lambda b: urllib.parse.quote(b, safe="").encode()},
    "html": {"escape": lambda b: html.escape(b.decode("latin-1")).encode("latin-1")},
    "escaped": {"json": lambda b: b.replace(b"\\", b"\\\\").replace(b'"', b'\\"')},
    "qp": {"eq": lambda b: b.replace(b"=", b"=3D")},
}
TEXT = {"base64", "hex", "percent", "html", "escaped", "qp"}  # forms that are text
OFFSETS = [0, 1, 2]


def _compressed(a: str, b: str) -> bool:
    return a in ("gzip", "zlib") and b in ("gzip", "zlib")


def _cases() -> list[tuple[tuple[tuple[str, str], ...], int]]:
    out = []
    for a, b in itertools.product(TOTAL, repeat=2):
        if _compressed(a, b):
            continue
        outer = dict(TOTAL[a])
        if b in TEXT and b not in ("base64", "hex"):  # punctuation to escape
            outer.update(PUNCT.get(a, {}))
        for va, vb in itertools.product(outer, TOTAL[b]):
            inner = TOTAL[b][vb](b"cendis_pat_")
            if outer[va](inner) != inner:  # else the outer layer is not there
                out += [(((a, va), (b, vb)), off) for off in OFFSETS]
    for stack in itertools.permutations(TOTAL, 3):
        if any(_compressed(x, y) for x, y in itertools.pairwise(stack)):
            continue
        out += [(tuple((n, next(iter(TOTAL[n]))) for n in stack), off) for off in (0, 1)]
    return out


CASES = _cases()


def _encoder(layer: str, variant: str) -> Encoder:
    return {**TOTAL[layer], **PUNCT.get(layer, {})}[variant]


def _name(stack: tuple[tuple[str, str], ...], off: int) -> str:
    return "+".join(f"{n}:{v}" for n, v in stack) + f"@{off}"


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, str]]:
    root = tmp_path_factory.mktemp("matrix")
    rng = random.Random(2020)
    tokens: dict[str, str] = {}
    for i, (stack, off) in enumerate(CASES):
        token = generate(rng)
        text = b"x" * off + f"TOKEN={token}\n".encode()
        for layer, variant in reversed(stack):
            text = _encoder(layer, variant)(text)
        tokens[f"{i}.txt"] = token
        (root / f"{i}.txt").write_bytes(b"config: " + text + b"\n")
    status, report = run_json(["scan", str(root)], timeout=600)
    assert status == 1, report.get("errors")
    found: dict[str, Any] = {}
    for f in report["findings"]:
        found.setdefault(Path(f["path"]).name, []).append(f)
    return found, tokens


#: Known gap (issue 20, "wrapped base64 under another layer"): a line break of the
#: outer base64 falls inside the inner layer's seed. Strict: fixing it fails the mark.
WRAP_GAP = {"base64:wrapped+html:hex@2", "base64:wrapped+escaped:u@2"}


@pytest.mark.parametrize("index", [
    pytest.param(i, marks=pytest.mark.xfail(strict=True, reason="line break in a seed"))
    if _name(*case) in WRAP_GAP else i for i, case in enumerate(CASES)],
    ids=[_name(*case) for case in CASES])
def test_every_order_is_found_and_named_outermost_first(
        index: int, matrix: tuple[dict[str, Any], dict[str, str]]) -> None:
    found, tokens = matrix
    stack, _ = CASES[index]
    name = f"{index}.txt"
    want = ("+".join(n for n, _ in stack), _sha(tokens[name].encode()))
    got = [(f["encoding"], f["secret_sha256"]) for f in found.get(name, [])]
    assert want in got, f"{_name(*CASES[index])}: {got}"
