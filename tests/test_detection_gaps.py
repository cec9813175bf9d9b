"""Detection gaps (issue 7, class 6): line-wrapped base64, UTF-16 in ``redact``, the JSON
key nearest a value, gzip in gzip, base64 of gzip, zip members, ``\\uXXXX`` escapes."""

from __future__ import annotations

import base64
import gzip
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imagetools import zip_bytes

from scanner.engine.detect import Detector
from scanner.rules import load
from scanner.token import generate, redact
from scanner.token import secret_sha256 as _sha


def secret_sha256(token: str) -> str:
    return _sha(token.encode())

BREAKS = {"lf": "\n", "crlf": "\r\n", "indent": "\n    ", "json": "\\n"}


def _wrapped(data: bytes, width: int, brk: str) -> str:
    enc = base64.b64encode(data).decode()
    return brk.join(enc[i : i + width] for i in range(0, len(enc), width))


def test_wrapped_base64_every_offset(scan: Any, tmp_path: Path,
                                     make_token: Callable[[], str]) -> None:
    """A token at every byte offset of a 64- and 76-column block: every place a line
    break can fall (inside the prefix's base64, inside the body, between groups), with
    LF, CRLF, indentation (YAML) and JSON's escaped newline; one scan of many files."""
    want = {}
    for width in (64, 76):
        for name, brk in BREAKS.items():
            for lead in range(0, 60, 1 if width == 76 and name == "lf" else 7):
                token = make_token()
                body = _wrapped(b"\x00\xff" * 40 + b"x" * lead + token.encode() + b"\n",
                                width, brk)
                text = (f'{{"pem": "{body}"}}\n' if name == "json" else
                        f"cert: |\n    {body}\n" if name == "indent" else
                        f"-----BEGIN DATA-----{brk}{body}{brk}-----END DATA-----{brk}")
                path = tmp_path / f"w{width}-{name}-{lead}.txt"
                path.write_bytes(text.encode())
                want[str(path)] = secret_sha256(token)
    status, report, _ = scan([str(tmp_path)])
    assert status == 1
    got: dict[str, list[str]] = {}
    for f in report["findings"]:
        got.setdefault(f["path"], []).append(f["secret_sha256"])
        assert (f["encoding"], f["confidence"]) == ("base64", "confirmed")
    assert {p: [h] for p, h in want.items()} == got


def test_wrapped_base64_unpadded_and_urlsafe(scan: Any, tmp_path: Path,
                                             make_token: Callable[[], str]) -> None:
    token = make_token()
    enc = base64.urlsafe_b64encode(b"\xfb\xff" * 30 + token.encode()).decode().rstrip("=")
    (tmp_path / "u.txt").write_text("\n".join(enc[i : i + 76] for i in range(0, len(enc), 76)))
    status, report, _ = scan([str(tmp_path)])
    assert [f["secret_sha256"] for f in report["findings"]] == [secret_sha256(token)]


def test_lines_that_only_look_wrapped_are_not_joined(scan: Any, tmp_path: Path,
                                                     make_token: Callable[[], str]) -> None:
    """A base64 token at a line end, then a line of text: nothing glued on, so the
    token keeps its hash (the next line is not a whole-line base64 continuation)."""
    token = make_token()
    enc = base64.b64encode(b"abc" + token.encode()).decode()
    assert len(enc) % 4 == 0
    (tmp_path / "a.env").write_text(f"SECRET={enc}\nabcdEFGH1234: not base64\n")
    status, report, _ = scan([str(tmp_path)])
    [finding] = report["findings"]
    assert finding["secret_sha256"] == secret_sha256(token)
    assert finding["variable"] == "SECRET"


@settings(max_examples=60, deadline=None)
@given(lead=st.binary(max_size=120), tail=st.binary(max_size=40),
       width=st.sampled_from([16, 40, 64, 72, 76]), brk=st.sampled_from(list(BREAKS.values())),
       seed=st.integers(0, 2**32))
def test_property_wrapped_base64(lead: bytes, tail: bytes, width: int, brk: str,
                                 seed: int) -> None:
    token = generate(random.Random(seed))
    text = _wrapped(lead + token.encode() + b"\n" + tail, width, brk).encode()
    hits = Detector(load()).scan_text(text)
    assert [h.secret_sha256 for h in hits] == [secret_sha256(token)]


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-16"])
def test_redact_utf16(codec: str, cli: Any, no_leak: Any,
                      make_token: Callable[[], str]) -> None:
    a, b = make_token(), make_token()
    text = f"PS C:\\> $env:T = '{a}' → ok\r\n{b}\r\nlast {a}"
    proc = cli(["redact"], input=text.encode(codec))
    assert proc.returncode == 0
    assert proc.stdout.decode(codec) == text.replace(a, redact(a)).replace(b, redact(b))
    assert proc.err == "cendis-scan: 3 tokens redacted\n"
    no_leak(proc.stdout.decode(codec), proc.stderr)


@pytest.mark.parametrize("shift", [0, 1])
def test_redact_utf16_inside_utf8_log(shift: int, cli: Any,
                                      make_token: Callable[[], str]) -> None:
    """A UTF-16 fragment at an odd or even offset of an otherwise UTF-8 stream."""
    token = make_token()
    data = b"x" * (shift + 2) + ("t=" + token).encode("utf-16-le") + b"\n"
    proc = cli(["redact"], input=data)
    assert token.encode("utf-16-le") not in proc.stdout
    assert token[15:-2].encode("utf-16-le")[1:-1] not in proc.stdout
    assert proc.err == "cendis-scan: 1 token redacted\n"


def test_json_variable_is_the_nearest_key(scan: Any, tmp_path: Path,
                                          make_token: Callable[[], str]) -> None:
    cases = {
        "later.json": lambda t: json.dumps({"a": 1, "token": t}),
        "nested.json": lambda t: json.dumps({"x": {"y": [1, 2], "z": {"apiKey": t}}}),
        "pretty.json": lambda t: json.dumps({"b": "c", "secret": t}, indent=2),
        "docker.json": lambda t: json.dumps({"auths": {"r.example.com": {
            "email": "ci@example.com", "auth": base64.b64encode(f"u:{t}".encode()).decode()}}}),
        "dict.py": lambda t: f"CONF = {{'a': 1, 'cendis_token': '{t}'}}\n",
    }
    want = {"later.json": "token", "nested.json": "apiKey", "pretty.json": "secret",
            "docker.json": "auth", "dict.py": "cendis_token"}
    for name, make in cases.items():
        (tmp_path / name).write_text(make(make_token()))
    status, report, _ = scan([str(tmp_path)])
    assert {Path(f["path"]).name: f["variable"] for f in report["findings"]} == want


def test_layers_gzip_zip_base64(scan: Any, tmp_path: Path,
                                make_token: Callable[[], str]) -> None:
    t = [make_token() for _ in range(8)]
    files = {
        "gg.gz": gzip.compress(gzip.compress(f"a\nb {t[0]}\n".encode())),
        "ggg.gz": gzip.compress(gzip.compress(gzip.compress(f"{t[1]}\n".encode()))),
        "helm.yaml": ("data: " + base64.b64encode(gzip.compress(
            json.dumps({"token": t[2]}).encode())).decode() + "\n").encode(),
        "wrapped.txt": ("blob:\n  " + _wrapped(gzip.compress(b"k " * 200 + t[3].encode()),
                                                76, "\n  ") + "\n").encode(),
        "app.jar": zip_bytes({
            "META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\n",
            "conf/app.properties": f"x=1\ncendis.token={t[4]}\n".encode(),
            "lib/inner.zip": zip_bytes({"deep/.env": f"TOKEN={t[5]}\n".encode()}),
            "logs/a.log.gz": gzip.compress(f"ok\n{t[6]}\n".encode())}),
        "pkg.whl": zip_bytes({"pkg/settings.py": f"TOKEN = '{t[7]}'\n".encode()}),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    status, report, _ = scan([str(tmp_path)])
    assert status == 1
    got = {(f["path"].removeprefix(str(tmp_path) + "/"), f["encoding"], f["line"],
            f["secret_sha256"]) for f in report["findings"]}
    h = [secret_sha256(x) for x in t]
    assert got == {
        ("gg.gz", "gzip+gzip", 2, h[0]), ("ggg.gz", "gzip+gzip+gzip", 1, h[1]),
        ("helm.yaml", "base64+gzip", 1, h[2]), ("wrapped.txt", "base64+gzip", 2, h[3]),
        ("app.jar!conf/app.properties", "zip", 2, h[4]),
        ("app.jar!lib/inner.zip!deep/.env", "zip+zip", 1, h[5]),
        ("app.jar!logs/a.log.gz", "zip+gzip", 2, h[6]),
        ("pkg.whl!pkg/settings.py", "zip", 1, h[7]),
    }
    fingerprints = {f["fingerprint"].split(":")[0] for f in report["findings"]}
    assert "app.jar!lib/inner.zip!deep/.env" in fingerprints


def test_zip_bounded_and_not_a_zip(scan: Any, tmp_path: Path,
                                   make_token: Callable[[], str]) -> None:
    """Members past --max-decompressed are an error for that archive; a file that only
    starts like a zip is scanned as plain bytes."""
    token = make_token()
    (tmp_path / "bomb.zip").write_bytes(zip_bytes({"a.txt": bytes(3 << 20),
                                                   "b.txt": f"{token}\n".encode()}))
    (tmp_path / "fake.zip").write_bytes(b"PK\x03\x04 not really " + token.encode() + b"\n")
    status, report, proc = scan([str(tmp_path), "--max-decompressed", "2M"])
    assert status == 2
    assert [(Path(f["path"]).name, f["encoding"]) for f in report["findings"]] == [
        ("fake.zip", "plain")]
    assert "bomb.zip" in proc.err and "expands beyond" in proc.err


def test_zip_from_stdin(cli: Any, no_leak: Any, make_token: Callable[[], str]) -> None:
    token = make_token()
    proc = cli(["scan", "-", "--format", "json"],
               input=zip_bytes({"x/.env": f"A=1\nTOKEN={token}\n".encode()}))
    [finding] = json.loads(proc.stdout)["findings"]
    assert (finding["path"], finding["line"], finding["variable"]) == ("<stdin>!x/.env", 2,
                                                                       "TOKEN")
    no_leak(proc.stdout, proc.stderr)


@pytest.mark.parametrize("form", ["u-first", "u-upper", "x-first", "all-escaped",
                                  "body-escaped"])
def test_escaped_prefix(form: str, scan: Any, tmp_path: Path,
                        make_token: Callable[[], str]) -> None:
    token = make_token()
    escaped = {
        "u-first": "\\u0063" + token[1:],
        "u-upper": "\\u0063\\u0065" + token[2:6] + "\\u005F" + token[7:],
        "x-first": "\\x63" + token[1:],
        "all-escaped": "".join(f"\\u{ord(c):04x}" for c in token),
        "body-escaped": "\\u0063endis_pat_" + "".join(f"\\u{ord(c):04X}" for c in token[11:]),
    }[form]
    (tmp_path / "c.json").write_text(f'{{"n": 2, "token": "{escaped}", "z": 1}}\n')
    status, report, _ = scan([str(tmp_path)])
    [finding] = report["findings"]
    assert (finding["encoding"], finding["secret_sha256"], finding["variable"],
            finding["column"]) == ("escaped", secret_sha256(token), "token", 20)
