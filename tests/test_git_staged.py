"""``git --staged``: what the next commit would add, the index against HEAD."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gitrepo import Repo


def test_staged_token_blocks_with_where_and_what_to_do(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    token = make_token()
    repo.commit("start", **{"README.md": "hello\n"})
    repo.write("settings.py", f'DEBUG = False\nCENDIS_TOKEN = "{token}"\n')
    repo.git("add", "settings.py")
    proc = repo.scan("git", "--staged")
    assert proc.returncode == 1
    redacted = f"{token[:15]}…{token[-2:]}"
    assert f"settings.py:2:17: confirmed cendis-pat {redacted}" in proc.out
    assert f"settings.py:2:17  {redacted}" in proc.err
    assert "commit blocked" in proc.err
    assert "Remove it from the change" in proc.err
    assert "revoke it in Cendis" in proc.err and "same scopes" in proc.err
    assert "cendis-scan:allow" in proc.err
    assert token not in proc.out + proc.err


def test_staged_json_has_no_commit(tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    repo.commit("start", **{"a.txt": "a\n"})
    repo.write("a.txt", f"a\n{make_token()}\n")
    repo.git("add", "a.txt")
    status, report, _ = repo.scan_json("git", "--staged")
    assert status == 1
    [f] = report["findings"]
    assert (f["path"], f["line"], f["commit"], f["location"]) == ("a.txt", 2, None, "file")


def test_only_what_the_change_adds(tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    old = make_token()
    repo.commit("old token, already committed", **{"a.env": f"A={old}\n"})
    repo.write("a.env", f"A={old}\nB=2\n")  # an edit elsewhere in a file that holds one
    repo.git("add", "a.env")
    assert repo.scan("git", "--staged").returncode == 0
    repo.git("rm", "-q", "--cached", "a.env")  # staging the removal of a token is fine
    assert repo.scan("git", "--staged").returncode == 0


def test_unstaged_changes_are_not_the_commit(tmp_path: Path, make_token: Callable[[], str]
                                             ) -> None:
    repo = Repo.make(tmp_path)
    repo.commit("start", **{"a.txt": "a\n"})
    repo.write("a.txt", f"a\n{make_token()}\n")  # in the work tree only
    repo.write("new.txt", make_token())  # untracked
    status, report, _ = repo.scan_json("git", "--staged")
    assert (status, report["findings"]) == (0, [])


def test_repository_without_commits(tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    assert repo.scan("git", "--staged").returncode == 0
    repo.write("first.env", f"T={make_token()}\n")
    repo.git("add", "first.env")
    status, report, _ = repo.scan_json("git", "--staged")
    assert status == 1
    assert [f["path"] for f in report["findings"]] == ["first.env"]


def test_same_token_in_two_staged_files_is_one_finding(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    token = make_token()
    repo.write("b.env", f"T={token}\n")
    repo.write("a.env", f"T={token}\n")
    repo.git("add", ".")
    [f] = repo.scan_json("git", "--staged")[1]["findings"]
    assert (f["path"], f["occurrences"]) == ("a.env", 2)
