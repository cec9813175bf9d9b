"""The receiver's bearer roles (reader, triager, reporter): configured by the name of an
environment variable, checked in one place (scanner/server/auth.py), every role's token
compared in constant time, through the real HTTP routes of a receiver on loopback."""

from __future__ import annotations

import ast
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from receiver import Rig, RigFactory

from scanner.server.auth import Role, role_tokens, roles_for_token
from scanner.server.config import load_config
from scanner.server.errors import ServerConfigError

READER_TOKEN = "reader-token-for-tests-0123"  # tests/receiver.py's
TRIAGER_TOKEN = "triager-token-for-tests-4567"
REPORT_TOKEN = "report-token-for-tests-89ab"
ROOT = Path(__file__).resolve().parent.parent


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(("text", "env"), [
    (f"triager_token = '{TRIAGER_TOKEN}'", {}),
    ("triager_token_env = 'MY_TRIAGER'", {"MY_TRIAGER": TRIAGER_TOKEN}),
    ("", {"CENDIS_SCAN_TRIAGER_TOKEN": TRIAGER_TOKEN}),  # the default variable
])
def test_the_triager_token_inline_by_variable_or_by_default(
        tmp_path: Path, text: str, env: dict[str, str]) -> None:
    path = tmp_path / "r.toml"
    path.write_text(text + "\n")
    config = load_config(path, env)
    assert config.triager_token == TRIAGER_TOKEN
    assert TRIAGER_TOKEN not in repr(config)
    assert not any("triager" in note for note in config.notes)


@pytest.mark.parametrize("text", ["", "triager_token_env = 'UNSET_TRIAGER'"])
def test_no_triager_token_is_a_note_and_the_route_is_off(tmp_path: Path, text: str) -> None:
    path = tmp_path / "r.toml"
    path.write_text(text + "\n")
    config = load_config(path, {})
    assert config.triager_token is None
    said = [n for n in config.notes if "triager" in n]
    assert len(said) == 1 and "actions is off" in said[0]


@pytest.mark.parametrize(("text", "env", "message"), [
    ("triager_token = 'short'", {}, "triager_token: use at least 16"),
    ("triager_token = 7", {}, "triager_token: expected str"),
    ("triager_token_env = 3", {}, "triager_token_env: expected str"),
    (f"triager_token = '{READER_TOKEN}'\nreader_token = '{READER_TOKEN}'", {},
     "triager_token: the same token as reader_token"),
    ("triager_token_env = 'T'\nreport_token_env = 'R'", {"T": REPORT_TOKEN, "R": REPORT_TOKEN},
     "triager_token: the same token as report_token"),
    ("triager_tokens = 'x'", {}, "unknown key 'triager_tokens'"),
])
def test_bad_triager_settings_are_one_clear_error(tmp_path: Path, text: str,
                                                  env: dict[str, str], message: str) -> None:
    path = tmp_path / "r.toml"
    path.write_text(text + "\n")
    with pytest.raises(ServerConfigError, match=message) as caught:
        load_config(path, env)
    assert READER_TOKEN not in str(caught.value) and REPORT_TOKEN not in str(caught.value)


# ------------------------------------------------------------------ constant time


class CompareSpy:
    """Wraps hmac.compare_digest (still the real comparison): what it was given."""

    def __init__(self, real: Callable[[bytes, bytes], bool]) -> None:
        self.real = real
        self.calls: list[tuple[Any, Any]] = []

    def __call__(self, a: Any, b: Any) -> bool:
        self.calls.append((a, b))
        return self.real(a, b)


@pytest.fixture
def compare_spy(monkeypatch: pytest.MonkeyPatch) -> CompareSpy:
    spy = CompareSpy(hmac.compare_digest)
    monkeypatch.setattr(hmac, "compare_digest", spy)
    return spy


#: Tokens a client may send: each role's, wrong ones of other lengths (empty, one
#: character short, a prefix, much longer), and hostile ones.
def _given() -> list[str]:
    return [READER_TOKEN, TRIAGER_TOKEN, REPORT_TOKEN, "", "x", TRIAGER_TOKEN[:-1],
            TRIAGER_TOKEN + "x", TRIAGER_TOKEN * 50, "wrong-token-0123456789012",
            "é\udc80\ud800 surrogates", "\x00" * 27]


def test_every_role_is_compared_in_constant_time_whatever_the_length(
        compare_spy: CompareSpy) -> None:
    config = load_config(None, {"CENDIS_SCAN_READER_TOKEN": READER_TOKEN,
                                "CENDIS_SCAN_TRIAGER_TOKEN": TRIAGER_TOKEN,
                                "CENDIS_SCAN_REPORT_TOKEN": REPORT_TOKEN})
    tokens = role_tokens(config)
    expected = {READER_TOKEN: {Role.READER}, TRIAGER_TOKEN: {Role.TRIAGER},
                REPORT_TOKEN: {Role.REPORTER}}
    for given in _given():
        compare_spy.calls.clear()
        assert roles_for_token(given, tokens) == expected.get(given, set())
        # every configured role compared (no early exit on a match or on the length),
        # each time two 32-byte digests: the time taken says nothing of the lengths
        assert len(compare_spy.calls) == 3, given
        assert all(isinstance(a, bytes) and isinstance(b, bytes) and len(a) == len(b) == 32
                   for a, b in compare_spy.calls)


def test_a_role_without_a_token_matches_nothing() -> None:
    tokens = {Role.READER: None, Role.TRIAGER: "", Role.REPORTER: REPORT_TOKEN}
    for given in ("", " ", "None"):
        assert roles_for_token(given, tokens) == set()
    assert roles_for_token(REPORT_TOKEN, tokens) == {Role.REPORTER}


def test_only_auth_py_reads_the_role_tokens() -> None:
    """One place compares tokens: no other module of the receiver reads a configured
    token (``config.reader_token`` and the like) or calls compare_digest on one."""
    readers = []
    for path in sorted((ROOT / "scanner").rglob("*.py")):
        if path.name == "config.py" and path.parent.name == "server":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in (
                    "reader_token", "triager_token", "report_token"):
                readers.append(str(path.relative_to(ROOT)))
    assert set(readers) == {"scanner/server/auth.py"}, readers


# ------------------------------------------------------------------ through HTTP


@pytest.fixture
async def rig(rig_factory: RigFactory) -> Rig:
    return await rig_factory(known=1, triager_token=TRIAGER_TOKEN, report_token=REPORT_TOKEN)


NONE: dict[str, str] = {}
#: (headers, GET /incidents, POST /v1/findings, POST /incidents/1/actions)
ROLE_TABLE = [
    (NONE, 401, 401, 401),
    ({"Authorization": "Bearer"}, 401, 401, 401),
    ({"Authorization": f"Basic {TRIAGER_TOKEN}"}, 401, 401, 401),
    (_bearer("wrong-token-0123456789012"), 401, 401, 401),
    (_bearer(TRIAGER_TOKEN[:-1]), 401, 401, 401),
    (_bearer(TRIAGER_TOKEN + "0"), 401, 401, 401),
    (_bearer(READER_TOKEN), 200, 403, 403),
    ({"Authorization": f"bearer  {READER_TOKEN} "}, 200, 403, 403),
    (_bearer(REPORT_TOKEN), 403, 400, 403),  # 400: authorised, the body is not JSON
    (_bearer(TRIAGER_TOKEN), 200, 403, 400),  # 400: authorised, the body is not JSON
]


@pytest.mark.parametrize(("headers", "read", "report", "act"), ROLE_TABLE)
async def test_each_route_answers_each_role(rig: Rig, headers: dict[str, str], read: int,
                                            report: int, act: int) -> None:
    assert (await rig.report([rig.tokens[0]]))[0] == 200
    resp = await rig.client.get("/incidents", headers=headers)
    assert resp.status == read
    assert (await rig.client.get("/incidents/1", headers=headers)).status == read
    if read == 401:
        assert resp.headers["WWW-Authenticate"] == "Bearer"
    if read >= 400:
        assert await resp.json() == {"error": "unauthorized" if read == 401 else "forbidden"}
    sent = {"Content-Type": "application/json", **headers}
    resp = await rig.client.post("/v1/findings", data=b"not json", headers=sent)
    assert resp.status == report
    resp = await rig.client.post("/incidents/1/actions", data=b"not json", headers=sent)
    assert resp.status == act
    assert (await resp.json())["error"] == {401: "unauthorized", 403: "forbidden",
                                            400: "bad_json"}[act]


async def test_every_role_is_compared_on_every_request(rig: Rig,
                                                       compare_spy: CompareSpy) -> None:
    for token in _given()[:9]:
        for method, path in (("GET", "/incidents"), ("POST", "/v1/findings"),
                             ("POST", "/incidents/1/actions")):
            compare_spy.calls.clear()
            await rig.client.request(method, path, data=b"{}", headers={
                "Content-Type": "application/json", **_bearer(token)})
            digests = [(a, b) for a, b in compare_spy.calls if len(a) == 32]
            assert len(digests) >= 3, (method, path)
            assert all(len(a) == len(b) for a, b in compare_spy.calls)
