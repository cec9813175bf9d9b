"""``cendis-scan check-token``: one token on stdin, a verdict, never the token."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import SPEC

from scanner.token import redact

VECTORS = json.loads((SPEC / "token-vectors.json").read_text())
REASONS = {
    "checksum mismatch": "checksum mismatch: a character was mistyped or changed",
    "truncated": "truncated: 29 of 36 characters after cendis_pat_; copy the whole token again",
    "too long": "too long: 37 characters after cendis_pat_, a v1 token has 36",
    "body case swapped": "checksum mismatch: a character was mistyped or changed",
}
PLACEHOLDER = "a placeholder, not a token (too short or too repetitive)"


def _check(cli: Any, no_leak: Any, text: str) -> Any:
    proc = cli(["check-token"], input=text)
    no_leak(proc.stdout, proc.stderr)
    assert proc.err == ""
    assert len(proc.out.splitlines()) == 1
    return proc


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["sha256"][:8])
def test_valid_vectors(vector: dict[str, str], cli: Any, no_leak: Any) -> None:
    proc = _check(cli, no_leak, vector["token"] + "\n")
    assert proc.returncode == 0
    assert proc.out == f"{redact(vector['token'])}: well-formed v1 token\n"


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["why"])
def test_invalid_vectors(vector: dict[str, str], cli: Any, no_leak: Any) -> None:
    proc = _check(cli, no_leak, vector["token"])
    assert proc.returncode == 1
    if vector["why"].startswith("placeholder"):
        assert proc.out == PLACEHOLDER + "\n"
        return
    [reason] = [text for why, text in REASONS.items() if vector["why"].startswith(why)]
    assert proc.out == f"{redact(vector['token'])}: {reason}\n"


@pytest.mark.parametrize(("text", "message"), [
    ("cendis_pat_<your-token>", PLACEHOLDER),
    ("cendis_pat_YOUR_TOKEN_HERE", PLACEHOLDER),
    ("Bearer not-a-cendis-token", "not a Cendis token: it does not start with cendis_pat_"),
])
def test_placeholders_and_other_tokens(text: str, message: str, cli: Any,
                                       no_leak: Any) -> None:
    proc = _check(cli, no_leak, text)
    assert (proc.returncode, proc.out) == (1, message + "\n")


def test_generated_token_with_surrounding_whitespace(cli: Any, no_leak: Any,
                                                     make_token: Callable[[], str]) -> None:
    token = make_token()
    proc = _check(cli, no_leak, f"  {token}\r\n")
    assert (proc.returncode, proc.out) == (0, f"{redact(token)}: well-formed v1 token\n")
    upper = _check(cli, no_leak, token.upper())
    assert upper.returncode == 1 and "does not start with cendis_pat_" in upper.out
    quoted = _check(cli, no_leak, token[:30] + '"' + token[30:])
    assert quoted.returncode == 1 and "a quote, space or line break" in quoted.out


@pytest.mark.parametrize("text", ["", " \n\t\n"], ids=["empty", "blank"])
def test_no_token_on_stdin(text: str, cli: Any) -> None:
    proc = cli(["check-token"], input=text)
    assert proc.returncode == 2
    assert proc.err == ("cendis-scan: error: no token on stdin "
                        "(pipe it in: pbpaste | cendis-scan check-token)\n")
    assert proc.out == ""
