"""The Hyperscan prefilter never loses what the plain search finds.

Random bytes with tokens in every form the detector reads (plain, base64 at each byte
alignment in both alphabets, wrapped base64, base64 of base64, ``\\u``-escaped, and
UTF-16 forms that only a sniffed UTF-16 input decodes) inserted anywhere, searched in
regions cut at arbitrary places (so needles straddle region boundaries), with the deep
plan on or off per region: the prefiltered detector gives the same hits as the plain
one. The plain detector is the search without Hyperscan that a platform without its
wheels runs (``CENDIS_SCAN_PREFILTER=plain``)."""

from __future__ import annotations

import base64
import gzip
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.engine import prefilter
from scanner.engine.detect import Detector, Hit
from scanner.engine.scan_input import Outcome, scan_bytes
from scanner.errors import SourceError
from scanner.rules import load
from scanner.sources.origin import Origin
from scanner.token import generate

RULES = load()


@contextmanager
def _env(value: str | None) -> Iterator[None]:
    old = os.environ.get(prefilter.ENV)
    if value is None:
        os.environ.pop(prefilter.ENV, None)
    else:
        os.environ[prefilter.ENV] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(prefilter.ENV, None)
        else:
            os.environ[prefilter.ENV] = old


with _env(None):
    FAST = Detector(RULES)
with _env("plain"):
    PLAIN = Detector(RULES)


def _forms(token: bytes, pick: int) -> bytes:
    """One of the forms a token is written in."""
    pad = b"x" * (pick % 3)
    forms = [
        token,
        base64.b64encode(pad + token),
        base64.urlsafe_b64encode(pad + b"\xfb\xff" + token),
        base64.encodebytes(b"key: " + pad + token * 2),  # wrapped at 76
        base64.b64encode(base64.b64encode(pad + token)),
        b"\\u0063" + token[1:],
        b"\\x63" + token[1:],
        token.decode().encode("utf-16-le"),
        token.decode().encode("utf-16-be"),
        b"H4sI" + base64.b64encode(pad + token),  # not gzip: must be skipped alike
    ]
    return forms[pick % len(forms)]


@st.composite
def inputs(draw: st.DrawFn) -> tuple[bytes, list[int], list[bool]]:
    """(data, region cuts, deep flag per region)."""
    data = bytearray(draw(st.binary(max_size=2000)))
    for _ in range(draw(st.integers(1, 4))):
        token = generate(random.Random(draw(st.integers(0, 2**32)))).encode()
        at = draw(st.integers(0, len(data)))
        sep = draw(st.sampled_from([b"", b" ", b"\n", b"=", b"\"", b"\n  "]))
        data[at:at] = sep + _forms(token, draw(st.integers(0, 40))) + sep
    data = bytes(data)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=6))) - {0})
    deep = draw(st.lists(st.booleans(), min_size=len(cuts) + 1, max_size=len(cuts) + 1))
    return data, cuts, deep


def _key(h: Hit) -> tuple[object, ...]:
    return (h.offset, h.end, h.rule_id, h.encoding, h.secret_sha256, h.confidence,
            h.suppressed, h.variable)


def _regions(det: Detector, data: bytes, cuts: list[int], deep: list[bool]) -> list[Hit]:
    bounds = [0, *[c for c in cuts if c < len(data)], len(data)]
    hits: list[Hit] = []
    for (lo, hi), d in zip(zip(bounds, bounds[1:], strict=False), deep, strict=False):
        hits += det.scan(data, lo, hi, deep=d)
    return hits


def test_both_paths_exist_as_the_environment_says() -> None:
    """FAST was built with the variable unset, PLAIN with it forced; a detector built
    now follows the environment the suite runs in (``--prefilter``)."""
    forced = os.environ.get(prefilter.ENV, "").strip().lower() == "plain"
    try:
        import hyperscan  # noqa: F401
        importable = True
    except ImportError:
        importable = False
    assert PLAIN.prefilter is None
    assert (FAST.prefilter is not None) == importable
    assert (Detector(RULES).prefilter is not None) == (importable and not forced)


def test_every_form_across_every_region_boundary() -> None:
    """Each form, with a region boundary at each of its bytes: the same hits both
    ways, and the forms the detector reads are found (the property test below is not
    vacuous)."""
    token = generate(random.Random(11)).encode()
    for pick in range(10):
        data = b"a = 1\nkey: " + _forms(token, pick) + b"\n"
        for cut in range(6, len(data) - 1, 3):
            for deep in (True, False):
                plain = [_key(h) for h in _regions(PLAIN, data, [cut], [deep, deep])]
                assert [_key(h) for h in _regions(FAST, data, [cut], [deep, deep])] == plain
                if pick < 3 or (deep and pick < 7):
                    assert plain, (pick, cut, deep)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs())
def test_prefilter_finds_every_hit_the_plain_search_finds(
        case: tuple[bytes, list[int], list[bool]]) -> None:
    data, cuts, deep = case
    plain = [_key(h) for h in _regions(PLAIN, data, cuts, deep)]
    fast = [_key(h) for h in _regions(FAST, data, cuts, deep)]
    assert set(plain) <= set(fast)
    assert fast == plain  # and nothing else, in the same order


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs(), st.sampled_from([b"", b"\xff\xfe", b"\x1f\x8b"]))
def test_whole_inputs_give_the_same_findings(
        case: tuple[bytes, list[int], list[bool]], head: bytes) -> None:
    """Through sniffing (UTF-16, gzip-looking, binary) and line numbering."""
    data = head + case[0]
    fast, plain = _outcome(FAST, data), _outcome(PLAIN, data)
    assert fast == plain


def _outcome(det: Detector, data: bytes) -> object:
    """The findings, or the one error (a gzip magic before bytes that are not gzip)."""
    try:
        out = scan_bytes(det, data, Origin("x"))
    except SourceError as exc:
        return str(exc)
    return out.findings, out.suppressed, out.errors


@settings(max_examples=150, deadline=None)
@given(inputs())
def test_region_candidates_cover_every_literal(case: tuple[bytes, list[int], list[bool]]
                                               ) -> None:
    """What the git object prefilter marks: every place a literal is, as find sees it."""
    if FAST.prefilter is None:
        return
    data = case[0]
    got = set(FAST.candidates(data, 0, len(data)))
    for lit in FAST.literals():
        p = data.find(lit)
        while p != -1:
            assert p in got
            p = data.find(lit, p + 1)


def test_missing_hyperscan_is_said_once_and_the_scan_goes_on(make_token) -> None:
    """A platform without the wheels: one warning line however many detectors, and
    the same findings."""
    token = make_token()
    code = (
        "import sys, logging\n"
        "sys.modules['hyperscan'] = None\n"
        "logging.basicConfig(format='%(levelname)s %(message)s')\n"
        "from scanner.rules import load\n"
        "from scanner.engine.detect import Detector\n"
        "rules = load()\n"
        "dets = [Detector(rules) for _ in range(3)]\n"
        "assert all(d.prefilter is None for d in dets)\n"
        f"hits = dets[0].scan_text(b'k=' + {token.encode()!r})\n"
        "print(len(hits), hits[0].confidence)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != prefilter.ENV}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "confirmed"]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("WARNING hyperscan is not available")
    assert token not in proc.stderr


def test_small_files_searched_together_give_what_each_alone_gives(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    """A worker's unit of small files (scanner.scan._scan_batch: one prefilter pass
    over many files) finds, words errors and counts exactly as scanning each file."""
    from scanner.scan import _scan_batch, scan_origin
    from scanner.sources.files import walk

    files: dict[str, bytes] = {f"plain{i}.txt": b"nothing here\n" * i for i in range(20)}
    files["env"] = f"A=1\nCENDIS_TOKEN={make_token()}\n".encode()
    files["b64.txt"] = base64.b64encode(f"k={make_token()}".encode()) + b"\n"
    files["data.gz"] = gzip.compress(f"T={make_token()}\n".encode())
    files["utf16.txt"] = f"\ufeffT={make_token()}\n".encode("utf-16-le")
    files["blob.bin"] = b"\0\1\2" + make_token().encode() + b"\0"
    files["marker.py"] = f"x = '{make_token()}'  # cendis-scan:allow\n".encode()
    files["edge"] = make_token().encode()  # a token at the very end of a file
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    outcome = Outcome()
    origins = list(walk([str(tmp_path)], (), False, outcome.errors, [], []))
    (tmp_path / "plain3.txt").unlink()  # walked, then gone: an error for it alone
    alone = Outcome()
    for origin in origins:
        alone.merge(scan_origin(Detector(RULES), origin))
    together = _scan_batch(RULES, origins, 1 << 30)
    key = lambda f: (f.path, f.offset, f.encoding)  # noqa: E731
    assert sorted(together.findings, key=key) == sorted(alone.findings, key=key)
    assert len(alone.findings) == 6 and alone.suppressed == 1 and len(alone.errors) == 1
    assert (together.files, together.bytes, together.suppressed) == (
        alone.files, alone.bytes, alone.suppressed)
    assert together.errors == alone.errors


def test_buffers_longer_than_a_hyperscan_block_lose_nothing(monkeypatch) -> None:
    """Hyperscan takes 32-bit lengths: longer spans are cut into blocks that overlap by
    a literal's length, and every occurrence is reported once."""
    if FAST.prefilter is None:
        return
    literals = FAST.literals()
    rng = random.Random(5)
    data = b"".join(rng.choice([b"xy\n", *literals]) for _ in range(400))
    whole = FAST.prefilter.find(data, 0, len(data))
    monkeypatch.setattr(prefilter, "BLOCK", 37)
    assert FAST.prefilter.find(data, 0, len(data)) == whole
    assert FAST.prefilter.find(data, 5, len(data) - 3) == [
        (p, i) for p, i in whole if p >= 5 and p + len(literals[i]) <= len(data) - 3]
