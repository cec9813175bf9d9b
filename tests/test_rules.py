"""User rules (``--rules FILE``), their validation errors, ``rules check`` and ``rules list``."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scanner.rules import builtin_dir

ACME = """\
[[rules]]
id = "acme-key"
description = "ACME deploy key"
prefix = "acme_key_"
body = "[a-f0-9]"
checksum = "none"
min_length = 20
true_samples = ["ACME_KEY={confirmed}"]
false_samples = ["acme_key_<your key>", "acme_key_0000000000000000000000000000"]
"""


def _acme_key(rng: random.Random, length: int = 40) -> str:
    return "acme_key_" + "".join(rng.choice("0123456789abcdef") for _ in range(length))


def test_user_rule_finds_its_tokens(scan: Any, tmp_path: Path, rng: random.Random,
                                    make_token: Callable[[], str]) -> None:
    rules = tmp_path / "acme.toml"
    rules.write_text(ACME)
    key = _acme_key(rng)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "deploy.sh").write_text(
        f"export ACME_KEY={key}\nshort=acme_key_abc123\n"
        f"CENDIS_TOKEN={make_token()}\n")
    status, report, _ = scan(["src"], cwd=tmp_path)
    assert status == 1
    assert [f["rule_id"] for f in report["findings"]] == ["cendis-pat"]
    status, report, proc = scan(["src", "--rules", str(rules)], cwd=tmp_path)
    assert status == 1
    assert [(f["rule_id"], f["line"], f["column"], f["variable"], f["confidence"])
            for f in report["findings"]] == [
        ("acme-key", 1, 17, "ACME_KEY", "possible"), ("cendis-pat", 3, 14, "CENDIS_TOKEN",
                                                      "confirmed")]
    assert report["findings"][0]["redacted"].startswith("acme_key_")
    assert key not in proc.out and key not in proc.err


def test_rule_keys_may_be_omitted(cli: Any, tmp_path: Path) -> None:
    rules = tmp_path / "minimal.toml"
    rules.write_text('[[rules]]\nid = "tiny"\nprefix = "tiny_"\nbody = "[A-Za-z0-9]"\n'
                     'true_samples = ["{confirmed}"]\n')
    proc = cli(["rules", "check", str(rules)])
    assert (proc.returncode, proc.out, proc.err) == (0, f"{rules}: ok\n", "")


def _rule(**fields: str) -> str:
    base = {"id": '"acme"', "prefix": '"acme_key_"', "body": '"[a-f0-9]"',
            "checksum": '"none"'}
    base.update(fields)
    return "[[rules]]\n" + "".join(f"{k} = {v}\n" for k, v in base.items() if v)


INVALID = [
    ("bad-toml", "[[rules]\nid = 'x'\n",
     "not valid TOML: Expected ']]' at the end of an array declaration (at line 1, column 8)"),
    ("no-rules", "title = 'nothing'\n", "no [[rules]] tables"),
    ("not-a-table", "rules = ['x']\n", "rule #1: must be a table"),
    ("unknown-key", _rule(colour='"red"'), "rule acme: unknown key 'colour'"),
    ("no-prefix", _rule(prefix=""), "rule acme: 'prefix' is required and must be a "
                                    "non-empty string"),
    ("short-prefix", _rule(prefix='"ak_"'), "rule acme: 'prefix' must be at least 4 "
                                            "printable ASCII characters"),
    ("not-a-class", _rule(body='"[a-f]+"'), "rule acme: 'body' must be one RE2 character "
                                            "class such as [0-9A-Za-z]"),
    ("back-reference", _rule(body=r'"[a-f](x)\\1[a-f]"'),
     "rule acme: 'body' is not a valid RE2 class: Backreferences not supported"),
    ("look-behind", _rule(body='"[a-f](?<=a)[a-f]"'),
     "rule acme: 'body' is not a valid RE2 class: look-arounds not supported: (?<="),
    ("negative-look-behind", _rule(body='"[a-f](?<!a)[a-f]"'),
     "rule acme: 'body' is not a valid RE2 class: look-arounds not supported: (?<!"),
    ("look-ahead", _rule(body='"[a-f](?=a)[a-f]"'),
     "rule acme: 'body' is not a valid RE2 class: look-arounds not supported: (?="),
    ("negative-look-ahead", _rule(body='"[a-f](?!a)[a-f]"'),
     "rule acme: 'body' is not a valid RE2 class: look-arounds not supported: (?!"),
    ("named-back-reference", _rule(body='"[a-f](?P<x>a)(?P=x)[a-f]"'),
     "rule acme: 'body' is not a valid RE2 class: Backreferences not supported"),
    ("atomic-group", _rule(body='"[a-f](?>a)[a-f]"'),
     "rule acme: 'body' is not a valid RE2 class: needs backtracking, which RE2 does "
     "not do"),
    ("quotes", _rule(body="'[a-f\"]'"), "rule acme: 'body' must match some characters, "
                                        "and no quotes or spaces"),
    ("min-length", _rule(min_length="4"), "rule acme: 'min_length' must be a whole number "
                                          "from 8 to 256"),
    ("checksum", _rule(checksum='"md5"'), "rule acme: 'checksum' must be one of "
                                          "crc32-base62, none"),
    ("check-length", _rule(checksum='"crc32-base62"', check_length="8"),
     "rule acme: 'crc32-base62' checks are 6 characters"),
    ("entropy", _rule(entropy_floor="9"), "rule acme: 'entropy_floor' must be a number "
                                          "from 0 to 8"),
    ("samples", _rule(true_samples='"x"'), "rule acme: 'true_samples' must be a list of "
                                           "strings"),
    ("duplicate", _rule() + _rule(), "rule acme: duplicate id"),
    ("builtin-id", _rule(id='"cendis-pat"'), "rule cendis-pat: duplicate id"),
    ("false-sample", _rule(false_samples='["key: acme_key_0123456789abcdef0123"]'),
     "rule acme: false sample reported: 'key: acme_key_0123456789abcdef0123'"),
    ("true-sample", _rule(true_samples='["acme_key_abc"]'),
     "rule acme: true sample not found: 'acme_key_abc'"),
]


@pytest.mark.parametrize(("name", "text", "message"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_rule_file_is_a_one_line_error(name: str, text: str, message: str, cli: Any,
                                               tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(text)
    (tmp_path / "a.txt").write_text("clean\n")
    proc = cli(["scan", str(tmp_path / "a.txt"), "--rules", str(rules)])
    assert proc.returncode == 2
    assert proc.err.splitlines() == [f"cendis-scan: error: {rules}: {message}"]
    assert proc.out == ""


def test_missing_rule_file(cli: Any, tmp_path: Path) -> None:
    proc = cli(["scan", str(tmp_path), "--rules", str(tmp_path / "nope.toml")])
    assert proc.returncode == 2
    assert proc.err.splitlines() == [
        f"cendis-scan: error: {tmp_path / 'nope.toml'}: cannot read rules: "
        "No such file or directory"]


def test_rules_check(cli: Any, tmp_path: Path) -> None:
    good = tmp_path / "acme.toml"
    good.write_text(ACME)
    builtin = Path(builtin_dir()) / "cendis.toml"
    proc = cli(["rules", "check", str(good), str(builtin)])
    assert (proc.returncode, proc.err) == (0, "")
    assert proc.out.splitlines() == [f"{good}: ok", f"{builtin}: ok"]

    bad = tmp_path / "bad.toml"
    bad.write_text(_rule(true_samples='["acme_key_abc", "{confirmed}"]',
                         false_samples='["acme_key_0123456789abcdef0123"]'))
    proc = cli(["rules", "check", str(good), str(bad)])
    assert proc.returncode == 2
    assert proc.out == f"{good}: ok\n"
    assert proc.err.splitlines() == [
        f"{bad}: rule acme: true sample not found: 'acme_key_abc'",
        f"{bad}: rule acme: false sample reported: 'acme_key_0123456789abcdef0123'"]

    broken = tmp_path / "broken.toml"
    broken.write_text(_rule(colour='"red"'))
    proc = cli(["rules", "check", str(broken)])
    assert proc.returncode == 2
    assert proc.err.splitlines() == [
        f"cendis-scan: error: {broken}: rule acme: unknown key 'colour'"]


def test_rules_list(cli: Any, tmp_path: Path) -> None:
    proc = cli(["rules", "list"])
    assert proc.returncode == 0
    assert proc.out.splitlines() == ["cendis-pat\tcendis_pat_\tCendis personal access token"]
    (tmp_path / "acme.toml").write_text(ACME)
    proc = cli(["rules", "list", str(tmp_path / "acme.toml")])
    assert proc.returncode == 0
    assert proc.out.splitlines()[1:] == ["acme-key\tacme_key_\tACME deploy key"]


@pytest.mark.parametrize("modules", [
    "scanner.rules", "scanner.engine.detect", "scanner.scan", "scanner.cli.commands"])
def test_importing_the_library_leaves_re2_settings_alone(modules: str) -> None:
    """pyre2's fallback setting belongs to the process: after importing the library (and
    loading and running the rules), the application's own ``re2.compile`` of a pattern
    RE2 cannot run still falls back quietly, as pyre2 does by default."""
    import subprocess
    import sys

    code = (f"import {modules}, re2, scanner\n"
            "rules = scanner.load_rules()\n"
            "assert scanner.scan_bytes(b'clean', rules).findings == []\n"
            "print(type(re2.compile(rb'(a)\\1')).__name__)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "FallbackPattern"
