"""Every text hiding place in the spec: the token is found once, at the right line and
column, with the variable it is assigned to."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

T = "{token}"
# (file name, content with {token}, variable or None); the token's line and column are
# computed from where {token} sits in the content.
CASES = [
    ("notes.txt", f"some notes\nthe token is {T} (do not share)\n", None),
    ("no-newline.txt", f"first\nlast line {T}", None),
    (".env", f"# local settings\nDEBUG=1\nCENDIS_TOKEN={T}\n", "CENDIS_TOKEN"),
    (".env.production", f'export CENDIS_TOKEN="{T}"\n', "CENDIS_TOKEN"),
    (".envrc", f"export PATH=$PATH:bin\nexport CENDIS_TOKEN='{T}'\n", "CENDIS_TOKEN"),
    ("settings.json", f'{{\n  "cendis": {{\n    "token": "{T}"\n  }}\n}}\n', "token"),
    ("values.yaml", f"cendis:\n  url: https://api.example.com\n  apiToken: {T}\n", "apiToken"),
    ("list.yaml", f"env:\n  - CENDIS_TOKEN={T}\n", "CENDIS_TOKEN"),
    ("config.toml", f'[cendis]\ntoken = "{T}"\n', "token"),
    ("setup.ini", f"[cendis]\ntoken={T}\n", "token"),
    ("clone.sh", f"git clone https://ci:{T}@git.example.com/org/repo.git\n", None),
    ("curl.sh", f"curl 'https://api.example.com/v1/user?access_token={T}&page=2'\n", None),
    ("crlf.txt", f"one\r\ntwo\r\nTOKEN={T}\r\nfour\r\n", "TOKEN"),
    ("crlf-end.txt", f"one\r\n{T}", None),
    ("unicode.txt", f"größe: ünïcødé → 令牌 {T}\n", None),
    ("tab.txt", f"\t\tkey:\t{T}\n", "key"),
]


def _where(content: str) -> tuple[int, int]:
    before = content[: content.index(T)]
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


@pytest.mark.parametrize(("name", "content", "variable"), CASES, ids=[c[0] for c in CASES])
def test_found_in_text_file(name: str, content: str, variable: str | None, scan: Any,
                            tmp_path: Path, make_token: Callable[[], str]) -> None:
    token = make_token()
    (tmp_path / name).write_bytes(content.replace(T, token).encode())
    status, report, _ = scan([str(tmp_path)])
    assert status == 1
    [finding] = report["findings"]
    assert finding["path"] == str(tmp_path / name)
    assert (finding["line"], finding["column"]) == _where(content)
    assert finding["encoding"] == "plain"
    assert finding["confidence"] == "confirmed"
    assert finding["variable"] == variable


def test_several_tokens_on_one_line_in_order(scan: Any, tmp_path: Path,
                                              make_token: Callable[[], str]) -> None:
    a, b, c = make_token(), make_token(), make_token()
    (tmp_path / "line.txt").write_text(f"{a},{b} {c}\n")
    status, report, _ = scan([str(tmp_path)])
    assert status == 1
    assert [f["column"] for f in report["findings"]] == [1, 49, 97]
    assert len({f["secret_sha256"] for f in report["findings"]}) == 3


def test_uppercase_prefix_is_not_a_token(scan: Any, tmp_path: Path,
                                         make_token: Callable[[], str]) -> None:
    (tmp_path / "a.txt").write_text(make_token().upper() + "\n")
    status, report, _ = scan([str(tmp_path)])
    assert (status, report["findings"]) == (0, [])
