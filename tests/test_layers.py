"""Layers in any order (issue 20): base64, gzip, zlib, hex, percent, HTML references,
backslash escapes and quoted-printable, each pair in both orders, three deep, at
several offsets of a large file, through stdin across chunk boundaries, and bombs.

The encoders here are written from the formats, not taken from the scanner, so a
shared mistake cannot hide. Every scan is the installed CLI on real files.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import os
import random
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run, run_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.token import generate
from scanner.token import secret_sha256 as _sha


def secret_sha256(token: str) -> str:
    return _sha(token.encode())

ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "base64": base64.b64encode,
    "gzip": gzip.compress,
    "zlib": zlib.compress,
    "hex": lambda b: b.hex().encode(),
    "percent": lambda b: "".join(f"%{c:02X}" for c in b).encode(),
    "html": lambda b: "".join(f"&#{c};" for c in b).encode(),
    "escaped": lambda b: "".join(f"\\x{c:02x}" for c in b).encode(),
    "qp": lambda b: "".join(f"={c:02X}" for c in b).encode(),
}
#: Stacks no seed can find (none since zlib under base64 and hex is found by its
#: header at a run's start: literals.ZLIB_SHORT).
UNSEEN: set[tuple[str, str]] = set()


def encode(stack: tuple[str, ...], text: bytes) -> bytes:
    """``stack`` outermost first."""
    for name in reversed(stack):
        text = ENCODERS[name](text)
    return text


def _visible(stack: tuple[str, ...]) -> bool:
    return not any(pair in UNSEEN for pair in zip(stack, stack[1:], strict=False))


#: Compressing compressed data stores it as it is: the inner layer is visible in the
#: file, and found there as itself.
_COMPRESSED = {("gzip", "zlib"), ("zlib", "gzip")}
PAIRS = [s for s in itertools.permutations(ENCODERS, 2) if _visible(s) and s not in _COMPRESSED]
PAIRS += [(n, n) for n in ENCODERS if n not in ("gzip", "zlib")]
#: Three deep: each layer once in the middle, under and over two others.
TRIPLES = [t for n in ENCODERS for t in (("base64", n, "hex"), ("percent", n, "base64"),
                                          ("hex", "base64", n)) if _visible(t)]


def _body(stack: tuple[str, ...], token: str) -> bytes:
    return b"config: " + encode(stack, f"TOKEN={token}\n".encode()) + b"\n"


@pytest.fixture(scope="module")
def layered(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, str]]:
    """One directory with a file per stack, scanned once; findings by file name."""
    root = tmp_path_factory.mktemp("layers")
    rng = random.Random(20)
    tokens: dict[str, str] = {}
    for stack in PAIRS + TRIPLES:
        name = "-".join(stack) + ".txt"
        tokens[name] = generate(rng)
        (root / name).write_bytes(_body(stack, tokens[name]))
    status, report = run_json(["scan", str(root)])
    assert status == 1, report.get("errors")
    found = {Path(f["path"]).name: f for f in report["findings"]}
    return found, tokens


@pytest.mark.parametrize("stack", PAIRS + TRIPLES, ids="+".join)
def test_each_stack_is_found_and_named_outermost_first(
        stack: tuple[str, ...], layered: tuple[dict[str, Any], dict[str, str]]) -> None:
    found, tokens = layered
    name = "-".join(stack) + ".txt"
    assert name in found, f"{name}: not found"
    f = found[name]
    assert f["secret_sha256"] == secret_sha256(tokens[name])
    assert f["encoding"] == "+".join(stack)
    assert f["confidence"] == "confirmed"
    binary = b"\0" in _body(stack, tokens[name])[:8192]
    assert f["line"] == (None if binary else 1)  # a binary file has no lines


def _helm_release(token: str) -> bytes:
    """``kubectl get secret sh.helm.release.v1.api.v3 -o yaml``: ``data.release`` is
    base64 (the Secret) of base64 (Helm) of gzip of the release JSON."""
    release = {"name": "api", "version": 3, "namespace": "prod",
               "chart": {"metadata": {"name": "api", "version": "1.4.0"},
                         "values": {"replicas": 2},
                         "templates": [{"name": "templates/secret.yaml", "data": base64.b64encode(
                             f"apiVersion: v1\nkind: Secret\nstringData:\n  token: {token}\n"
                             .encode()).decode()}]},
               "config": {"image": {"tag": "1.4.0"}, "cendis": {"token": token}},
               "manifest": "---\n# Source: api/templates/deployment.yaml\n" + "x: y\n" * 200}
    inner = base64.b64encode(gzip.compress(json.dumps(release).encode()))
    data = base64.b64encode(inner).decode()
    return (f"apiVersion: v1\ndata:\n  release: {data}\nkind: Secret\nmetadata:\n"
            f"  labels:\n    owner: helm\n  name: sh.helm.release.v1.api.v3\n"
            f"type: helm.sh/release.v1\n").encode()


def test_a_helm_v3_release_secret(tmp_path: Path, make_token: Callable[[], str]) -> None:
    token = make_token()
    path = tmp_path / "release.yaml"
    path.write_bytes(_helm_release(token))
    status, report = run_json(["scan", str(path)])
    assert status == 1
    got = {(f["encoding"], f["line"], f["variable"], f["secret_sha256"])
           for f in report["findings"]}
    assert ("base64+base64+gzip", 3, "token", secret_sha256(token)) in got  # config
    assert ("base64+base64+gzip+base64", 3, "data", secret_sha256(token)) in got  # template
    assert all(f["secret_sha256"] == secret_sha256(token) for f in report["findings"])


STACK_AT = ("base64", "hex", "base64")


@pytest.mark.parametrize("offset", [0, 9 << 20, (2 << 30) + 12345],
                         ids=["near-0", "past-8MiB", "past-2GiB-sparse"])
def test_anywhere_in_a_large_file_with_the_window_open(
        tmp_path: Path, make_token: Callable[[], str], offset: int) -> None:
    token = make_token()
    path = tmp_path / "big.log"
    body = b"\n" + _body(STACK_AT, token)
    with open(path, "wb") as f:  # sparse: a seek, then the line
        f.seek(offset)
        f.write(body)
        f.seek(offset + len(body) + (1 << 20))
        f.write(b"end\n")
    status, report = run_json(["scan", str(path), "--decode-window", "all"], timeout=300)
    assert status == 1, report.get("errors")
    [f] = report["findings"]
    assert f["encoding"] == "+".join(STACK_AT)
    assert f["offset"] == offset + 1 + len(b"config: ")
    assert f["secret_sha256"] == secret_sha256(token)


def test_past_the_default_window_the_cheap_forms_are_still_found(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    """Past the default window: the Helm release (base64 of base64 of gzip) still is."""
    token = make_token()
    path = tmp_path / "big.yaml"
    with open(path, "wb") as f:
        f.write(b"# filler\n" * ((9 << 20) // 9))
        f.write(_helm_release(token))
    status, report = run_json(["scan", str(path)], timeout=300)
    assert status == 1
    assert "base64+base64+gzip" in {f["encoding"] for f in report["findings"]}


@pytest.mark.parametrize("shift", [0, 1, 2, 3, 5, 8, 13, 40, 97, 200, 511])
def test_stdin_across_chunk_boundaries(make_token: Callable[[], str], shift: int) -> None:
    """The encoded token straddles the 1 MiB chunk boundary at ``shift`` bytes of each
    offset class (its start, inside, its end)."""
    token = make_token()
    line = _body(("percent", "base64", "hex"), token)
    chunk = 1 << 20
    filler = b"x" * 63 + b"\n"
    start = chunk - len(line) // 2 - shift
    head = (filler * (start // len(filler) + 1))[:start - 1] + b"\n"
    data = head + line + filler * 100
    assert data.index(b"config: ") == start
    status, report = run_json(["scan", "-", "--decode-window", "all"], input=data)
    assert status == 1, report.get("errors")
    [f] = report["findings"]
    assert f["encoding"] == "percent+base64+hex"
    assert f["offset"] == start + len(b"config: ")


def test_a_gzip_bomb_inside_base64_is_one_error_line(tmp_path: Path) -> None:
    bomb = gzip.compress(gzip.compress(b"\0" * (64 << 20)))
    path = tmp_path / "bomb.yaml"
    path.write_bytes(b"blob: " + base64.b64encode(bomb) + b"\n")
    proc = run(["scan", str(path), "--max-decompressed", "1M"], timeout=60)
    assert proc.returncode == 2
    lines = [ln for ln in proc.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "expand beyond 1 MiB" in lines[0], proc.err
    assert "Traceback" not in proc.err


def test_nesting_past_the_layer_limit_is_one_error_line(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    token = make_token()
    path = tmp_path / "deep.txt"
    path.write_bytes(_body(("base64", "gzip") * 3, token))
    proc = run(["scan", str(path)], timeout=60)
    lines = [ln for ln in proc.err.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.err
    assert "more than 4 layers" in lines[0]


LAYERS = [n for n in ENCODERS]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stack=st.lists(st.sampled_from(LAYERS), min_size=1, max_size=3).map(tuple),
       seed=st.integers(0, 1 << 30))
def test_random_stacks_are_found_and_named(tmp_path: Path, stack: tuple[str, ...],
                                           seed: int) -> None:
    if not _visible(stack) or any(a in ("gzip", "zlib") and b in ("gzip", "zlib")
                                  for a, b in zip(stack, stack[1:], strict=False)):
        return
    from scanner.engine.detect import Detector
    from scanner.rules import load

    token = generate(random.Random(seed))
    hits = Detector(load()).scan_text(_body(stack, token))
    assert [(h.encoding, h.secret_sha256) for h in hits] == [
        ("+".join(stack), secret_sha256(token))]


@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=0, max_size=4000), layer=st.sampled_from(LAYERS))
def test_no_finding_in_random_clean_data_of_any_alphabet(data: bytes, layer: str) -> None:
    from scanner.engine.detect import Detector
    from scanner.rules import load

    assert Detector(load()).scan_text(ENCODERS[layer](data)) == []


def test_a_clean_input_is_not_decoded(tmp_path: Path) -> None:
    """No seed, no decoding: a file of long base64 and hex runs (JWT-like) is clean."""
    rng = random.Random(7)
    lines = [base64.b64encode(os.urandom(rng.randrange(40, 400))) + b" " +
             os.urandom(32).hex().encode() for _ in range(2000)]
    path = tmp_path / "clean.log"
    path.write_bytes(b"\n".join(lines) + b"\n")
    status, report = run_json(["scan", str(path)])
    assert status == 0 and report["findings"] == []


def test_the_shipped_seeds_are_the_derived_ones() -> None:
    """scanner/engine/seed_data.py is generated: regenerated here, it is the same file
    (if this fails after a change to the seeds, write ``render_seed_data()`` to it), and
    what the decoder and the hook read from it is what derivation gives."""
    from scanner.engine import layers, literals, seed_data

    path = Path(seed_data.__file__)
    assert path.read_text(encoding="utf-8") == literals.render_seed_data(), (
        "stale: python -c 'from scanner.engine import literals; print(literals."
        "render_seed_data(), end=\"\")' > scanner/engine/seed_data.py")
    prefix = b"cendis_pat_"
    assert literals.seed_specs(prefix) == literals.derive_seeds(prefix)
    assert [(s.text, s.layer, s.align) for s in layers.seeds(prefix)] == list(
        literals.derive_seeds(prefix))
    other = b"acme_key_"  # a rule of the user's: derived, not read
    assert literals.seed_specs(other) == literals.derive_seeds(other)
    assert literals.seed_specs(prefix, depth=1) == literals.derive_seeds(prefix, depth=1)


def _q_word(text: bytes) -> bytes:
    """RFC 2047 ``Q``: letters and digits as they are, everything else (``_`` too,
    which means a space there) as ``=XX``."""
    return b"".join(bytes([c]) if chr(c).isalnum() else b"=%02X" % c for c in text)


MIME_WORDS = {
    "utf-8?b": lambda t: b"=?utf-8?b?" + base64.b64encode(t) + b"?=",
    "UTF-8?B": lambda t: b"=?UTF-8?B?" + base64.b64encode(t) + b"?=",
    "iso-8859-1?q": lambda t: b"=?iso-8859-1?q?" + _q_word(t) + b"?=",
    "utf-8?Q": lambda t: b"=?utf-8?Q?" + _q_word(t) + b"?=",
}


@pytest.mark.parametrize("word", MIME_WORDS)
@pytest.mark.parametrize("lead", [b"", b"k=", b"token: ", b"The key is "])
def test_mime_encoded_words_in_a_header(tmp_path: Path, make_token: Callable[[], str],
                                        word: str, lead: bytes) -> None:
    """An e-mail header's encoded-word (RFC 2047): ``?b?`` is base64, ``?q?`` is
    quoted-printable with every ``_`` written ``=5F``; the token at several offsets in
    the word's text (base64 alignments)."""
    token = make_token()
    path = tmp_path / "mail.eml"
    path.write_bytes(b"From: ops@example.com\nSubject: " +
                     MIME_WORDS[word](lead + token.encode()) + b"\n\nbody\n")
    status, report = run_json(["scan", str(path)])
    assert status == 1, report.get("errors")
    [f] = report["findings"]
    assert f["secret_sha256"] == secret_sha256(token)
    assert f["encoding"] == ("base64" if word.lower().endswith("b") else "qp")
    assert f["line"] == 2


#: Wrapped base64 (76-character lines, as e-mail and ``base64`` write it) under another
#: layer: the line breaks are inside the outer layer's text. Under an escaping layer
#: (hex, percent, HTML, escapes, quoted-printable, base64) a break two bytes into the
#: token, and at some other places for some tokens, is still missed: a known gap
#: (issue 20), not tested here until it is fixed.
WRAPPED_UNDER = ["gzip", "zlib"]


@pytest.mark.parametrize("outer", WRAPPED_UNDER)
@pytest.mark.parametrize("shift", [8, 25, 40, 46, 49, 51])
def test_wrapped_base64_below_the_first_layer(make_token: Callable[[], str], outer: str,
                                              shift: int) -> None:
    """The token's base64 is cut by a line break at several places (``shift`` bytes of
    filler before it move the break through the needle and the token)."""
    from scanner.engine.detect import Detector
    from scanner.rules import load

    token = make_token()
    inner = base64.encodebytes(b"x" * shift + f"TOKEN={token}\n".encode())
    start = shift + len("TOKEN=")
    assert start <= 57 < start + len(token)  # a 76-character line holds 57 bytes
    hits = Detector(load()).scan_text(b"data: " + ENCODERS[outer](inner) + b"\n")
    assert [(h.encoding, h.secret_sha256) for h in hits] == [
        (f"{outer}+base64", secret_sha256(token))]


def _past(path: Path, token: str, offset: int) -> int:
    """A text file (its head is log lines: split into ranges when large) holding the
    STACK_AT form of ``token`` at ``offset``, sparse before it; the encoded text's
    offset."""
    body = b"\n" + _body(STACK_AT, token)
    with open(path, "wb") as f:
        f.write(b"2025-03-03 INFO ok\n" * 4096)
        f.seek(offset)
        f.write(body)
        f.write(b"end\n" * 1024)
    return offset + 1 + len(b"config: ")


@pytest.mark.parametrize("how", ["one-process", "threads", "workers", "stream"])
def test_the_window_travels_in_scan_options(
        tmp_path: Path, make_token: Callable[[], str], how: str) -> None:
    """``ScanOptions.decode_window`` reaches every detector of a scan, those of worker
    processes and threads too (no environment variable carries it): the same deep
    form past 9 MiB is found with the window open, or wide enough, and not with the
    default one."""
    import scanner
    from scanner.result import DECODE_WINDOW, EVERYWHERE

    token = make_token()
    big = tmp_path / "big.log"
    at = _past(big, token, (72 << 20) if how == "threads" else (9 << 20))
    (tmp_path / "small.txt").write_text("nothing here\n")
    rules = scanner.load_rules()

    def found(window: int) -> list[tuple[str, int]]:
        if how == "stream":
            options = scanner.ScanOptions(decode_window=window)
            with open(big, "rb") as f:
                result = scanner.scan_stream(f, rules, options)
        else:
            jobs, paths = {"one-process": (1, [big]), "threads": (2, [big]),
                           "workers": (2, [big, tmp_path / "small.txt"])}[how]
            options = scanner.ScanOptions(jobs=jobs, parallel_bytes=0, decode_window=window)
            result = scanner.scan_paths(paths, rules, options)
        assert not result.errors, result.errors
        return [(f.encoding, f.offset) for f in result.findings
                if f.secret_sha256 == secret_sha256(token)]

    assert found(DECODE_WINDOW) == []
    assert found(EVERYWHERE) == [("+".join(STACK_AT), at)]
    assert found(at + (1 << 20)) == [("+".join(STACK_AT), at)]


@pytest.mark.parametrize("value", [-1, True, "all", 1.5])
def test_a_bad_decode_window_is_a_usage_error(value: Any) -> None:
    import scanner
    from scanner.errors import UsageError

    with pytest.raises(UsageError, match="decode_window must be a whole number"):
        scanner.ScanOptions(decode_window=value)


def test_decode_window_all_reaches_the_cli_s_workers(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    """``--decode-window all`` with worker processes (a folder, two jobs)."""
    token = make_token()
    at = _past(tmp_path / "big.log", token, 9 << 20)
    for n in range(3):
        (tmp_path / f"small{n}.txt").write_text("nothing here\n")
    status, report = run_json(["scan", str(tmp_path), "--jobs", "2"], timeout=300)
    assert status == 0, report
    status, report = run_json(["scan", str(tmp_path), "--jobs", "2", "--decode-window", "all"],
                              timeout=300)
    assert status == 1, report.get("errors")
    assert [(f["encoding"], f["offset"], f["secret_sha256"]) for f in report["findings"]] == [
        ("+".join(STACK_AT), at, secret_sha256(token))]


def _nest(kinds: str, data: bytes) -> bytes:
    """``kinds`` outermost first: g gzip, b bzip2, x xz, t a tar holding one member."""
    import bz2
    import io
    import lzma
    import tarfile

    def tar(inner: bytes) -> bytes:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as t:
            info = tarfile.TarInfo("m.bin")
            info.size = len(inner)
            t.addfile(info, io.BytesIO(inner))
        return out.getvalue()

    wrap = {"g": gzip.compress, "b": bz2.compress, "x": lzma.compress, "t": tar}
    for kind in reversed(kinds):
        data = wrap[kind](data)
    return data


@pytest.mark.parametrize("kinds", ["g" * 6, "g" * 8, "g" * 10, "g" * 14, "gbgbgbgbgb",
                                   "xgxgxgxgxg", "gtgtgtgggggg", "bbbbbbbbgggg"])
def test_containers_nested_past_the_limit_are_one_error_line(
        tmp_path: Path, make_token: Callable[[], str], kinds: str) -> None:
    """A stream unpacked past its limit, whose remaining bytes hold yet more layers the
    decoder would take off past its own: one error line, not one per limit."""
    token = make_token()
    path = tmp_path / "deep.bin"
    path.write_bytes(_nest(kinds, f"TOKEN={token}\n".encode()))
    proc = run(["scan", str(path)], timeout=60)
    lines = [ln for ln in proc.err.splitlines() if "error" in ln]
    assert proc.returncode == 2 and len(lines) == 1, proc.err
    assert "more than 4 layers" in lines[0] and "Traceback" not in proc.err


ZLIB_OVER = {
    "base64": base64.b64encode,
    "base64-url": lambda b: base64.urlsafe_b64encode(b).rstrip(b"="),
    "base64-wrapped": base64.encodebytes,
    "hex": lambda b: b.hex().encode(),
    "hex-upper": lambda b: b.hex().upper().encode(),
}
ZLIB_PLACES = {"yaml": (b"blob: ", b"\n"), "json": (b'{"data":"', b'"}'),
               "start": (b"", b""), "xml": (b"<v>", b"</v>")}


@pytest.mark.parametrize("place", sorted(ZLIB_PLACES))
@pytest.mark.parametrize("level", [1, 6, 9])
@pytest.mark.parametrize("outer", sorted(ZLIB_OVER))
def test_zlib_under_base64_or_hex(tmp_path: Path, make_token: Callable[[], str], outer: str,
                                  level: int, place: str) -> None:
    """zlib (each header an encoder writes: levels 1, 6, 9) under base64 (both
    alphabets, wrapped) and hex (both cases), wherever the run starts in its line."""
    token = make_token()
    lead, tail = ZLIB_PLACES[place]
    blob = ZLIB_OVER[outer](zlib.compress(f"x=1\nTOKEN={token}\n".encode(), level))
    path = tmp_path / "z.txt"
    path.write_bytes(lead + blob + tail + b"\n")
    status, report = run_json(["scan", str(path)])
    assert status == 1, report.get("errors")
    [f] = report["findings"]
    assert f["encoding"] == outer.split("-")[0] + "+zlib"
    assert (f["offset"], f["secret_sha256"]) == (len(lead), secret_sha256(token))


#: How an inflated layer is embedded in a text file (issue 20 hostile pass, item 3).
INFLATED_UNDER: dict[str, Callable[[bytes], bytes]] = {
    "base64+gzip": lambda b: base64.b64encode(gzip.compress(b)),
    "base64+zlib": lambda b: base64.b64encode(zlib.compress(b)),
    "hex+gzip": lambda b: gzip.compress(b).hex().encode(),
    "gzip": lambda b: b"raw bytes follow: " + gzip.compress(b),
}


@pytest.mark.parametrize("at_mib", [4.2, 9.5])
@pytest.mark.parametrize("stack", sorted(INFLATED_UNDER))
def test_an_embedded_compressed_layer_is_read_past_4_mib(
        tmp_path: Path, make_token: Callable[[], str], stack: str, at_mib: float) -> None:
    """A gzip or zlib layer inside a text is inflated and scanned as a stream up to the
    input's budget, not cut at the span read around a seed."""
    token = make_token()
    filler = b"".join(b"%08d lorem ipsum dolor sit amet\n" % i
                      for i in range(int(at_mib * (1 << 20)) // 33 + 1))
    path = tmp_path / "blob.txt"
    path.write_bytes(b'x = "' + INFLATED_UNDER[stack](filler + f"TOKEN={token}\n".encode())
                     + b'"\n')
    status, report = run_json(["scan", str(path)], timeout=120)
    assert status == 1, report.get("errors")
    assert [(f["encoding"], f["secret_sha256"]) for f in report["findings"]] == [
        (stack, secret_sha256(token))]


@pytest.mark.parametrize("stack", sorted(INFLATED_UNDER))
def test_an_embedded_layer_past_the_budget_is_one_error_line(
        tmp_path: Path, stack: str) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(INFLATED_UNDER[stack](b"\0" * (8 << 20)) + b"\n")
    proc = run(["scan", str(path), "--max-decompressed", "2M"], timeout=60)
    lines = [ln for ln in proc.err.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.err
    assert "expand beyond 2 MiB" in lines[0]


@pytest.mark.parametrize("stack", [("hex",), ("percent",), ("escaped",), ("html", "base64")],
                         ids="+".join)
@pytest.mark.parametrize("how", ["file", "stdin"])
def test_a_file_honours_the_decode_window_as_stdin_does(
        tmp_path: Path, make_token: Callable[[], str], stack: tuple[str, ...], how: str
        ) -> None:
    """``--decode-window`` bounds the deep forms in a regular file exactly as in a
    stream (hostile pass, item 14: a file searched its first 32 MiB region whatever the
    window): past a 1K window the form is not found, inside a 64K one it is, and the
    prefix and its base64 are found past any window."""
    token, plain = make_token(), make_token()
    path = tmp_path / "win.log"
    path.write_bytes(b"2025-03-03 INFO ok\n" * 600 + _body(stack, token)
                     + f"plain: {plain}\n".encode())
    assert path.stat().st_size > 11 << 10

    def found(window: str) -> set[str]:
        args = ["scan", "-" if how == "stdin" else str(path), "--decode-window", window]
        status, report = run_json(args, input=path.read_bytes() if how == "stdin" else None,
                                  timeout=120)
        assert status == 1, report.get("errors")
        return {f["secret_sha256"] for f in report["findings"]}

    assert found("1K") == {secret_sha256(plain)}
    assert found("64K") == found("all") == {secret_sha256(token), secret_sha256(plain)}


#: How deep layers are found (README, "How deep"): text layers up to 3 over the token,
#: and up to 3 over a gzip or zlib layer, which starts the count again (4 in all).
SEEN_DEEP = [("base64",) * 3, ("hex",) * 3, ("percent", "base64", "hex"),
             ("base64", "base64", "base64", "gzip"), ("base64", "gzip", "base64", "base64"),
             ("hex", "percent", "base64", "gzip"), ("base64", "base64", "gzip", "hex"),
             ("percent", "base64", "percent", "base64")]
#: Four text layers straight over the token: no seed is that deep (documented).
UNSEEN_DEEP = [("base64",) * 4, ("hex",) * 4, ("base64", "hex") * 2]


@pytest.mark.parametrize("stack", SEEN_DEEP, ids="+".join)
def test_the_documented_depths_are_found(
        tmp_path: Path, make_token: Callable[[], str], stack: tuple[str, ...]) -> None:
    token = make_token()
    path = tmp_path / "deep.txt"
    path.write_bytes(_body(stack, token))
    status, report = run_json(["scan", str(path)], timeout=60)
    assert status == 1, report.get("errors")
    assert [(f["encoding"], f["secret_sha256"]) for f in report["findings"]] == [
        ("+".join(stack), secret_sha256(token))]


@pytest.mark.parametrize("stack", UNSEEN_DEEP, ids="+".join)
def test_four_text_layers_over_the_token_are_not_seen_as_documented(
        tmp_path: Path, make_token: Callable[[], str], stack: tuple[str, ...]) -> None:
    """The README says so (seeds 4 deep would slow every scan): a change that finds
    these must update it, and this test."""
    path = tmp_path / "deep.txt"
    path.write_bytes(_body(stack, make_token()))
    status, report = run_json(["scan", str(path)], timeout=60)
    assert (status, report["findings"], report.get("errors", [])) == (0, [], [])


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("lead", [8, 14, 20, 27, 33, 40, 44, 46, 48, 50, 51, 52])
def test_quoted_printable_with_a_soft_break_inside_the_token(
        tmp_path: Path, make_token: Callable[[], str], lead: int, newline: bytes) -> None:
    """``quopri`` wraps at 76 columns with ``=`` + newline: the break falls inside the
    prefix or the body depending on what comes before the token (hostile pass, item 4)."""
    import quopri

    token = make_token()
    text = quopri.encodestring(b"Authorization: token " + b"x" * lead + b" "
                               + token.encode() + b" T\n")
    assert b"=\n" in text and token.encode() not in text
    path = tmp_path / "mail.eml"
    path.write_bytes(b"Content-Transfer-Encoding: quoted-printable\n\n"
                     + text.replace(b"\n", newline))
    status, report = run_json(["scan", str(path)], timeout=60)
    assert status == 1, report.get("errors")
    assert [(f["encoding"], f["confidence"], f["secret_sha256"])
            for f in report["findings"]] == [("qp", "confirmed", secret_sha256(token))]


@pytest.mark.parametrize("level", [0, 9], ids=["stored", "best"])
@pytest.mark.parametrize("stack", [("gzip",) * 2, ("gzip",) * 3, ("gzip",) * 4,
                                   ("gzip", "zlib"), ("zlib", "gzip", "gzip"),
                                   ("gzip", "base64", "gzip")], ids="+".join)
def test_a_layer_kept_verbatim_inside_another_is_one_finding(
        tmp_path: Path, make_token: Callable[[], str], stack: tuple[str, ...], level: int
        ) -> None:
    """Compressing compressed data stores it: the inner stream (and the token) is in the
    file as it is, inside the outer one's span. One finding, named by the outermost
    path (hostile pass, item 11: two layers gave it twice, four layers four times)."""
    token = make_token()
    text = f"TOKEN={token}\n".encode()
    make = {"gzip": lambda b: gzip.compress(b, compresslevel=level),
            "zlib": lambda b: zlib.compress(b, level), "base64": base64.b64encode}
    for name in reversed(stack):
        text = make[name](text)
    path = tmp_path / "blob.txt"
    path.write_bytes(b"some text then raw: " + text + b"\nend\n")
    status, report = run_json(["scan", str(path)], timeout=60)
    assert status == 1, report.get("errors")
    assert [(f["encoding"], f["secret_sha256"]) for f in report["findings"]] == [
        ("+".join(stack), secret_sha256(token))]


@pytest.mark.parametrize("layer", ["plain", "gzip"])
@pytest.mark.parametrize("width", [16, 20, 28, 64, 76])
@pytest.mark.parametrize("align", [0, 1, 2])
def test_wrapped_base64_is_placed_where_its_run_starts(
        tmp_path: Path, make_token: Callable[[], str], layer: str, width: int, align: int
        ) -> None:
    """token-format.md: a token inside base64 is at the line where the encoded run
    starts, whether base64 holds it directly or holds its gzip (hostile pass, item 21:
    the direct one was placed at the line of the token's characters)."""
    import textwrap

    token = make_token()
    inner = b"A" * align + f"some config\nTOKEN={token}\nmore\n".encode() + b"B" * 200
    if layer == "gzip":
        inner = gzip.compress(inner)
    wrapped = "\n".join(textwrap.wrap(base64.b64encode(inner).decode(), width))
    path = tmp_path / "blob.txt"
    path.write_text("header line\nsecond: x\n" + wrapped + "\n", newline="")
    status, report = run_json(["scan", str(path)], timeout=60)
    assert status == 1, report.get("errors")
    [f] = report["findings"]
    assert (f["line"], f["column"], f["offset"], f["secret_sha256"]) == (
        3, 1, len("header line\nsecond: x\n"), secret_sha256(token))
