"""Whole histories and commit ranges: a token is reported once, at the commit that
introduced it, with every other place that wrote it counted in ``occurrences``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
from gitrepo import Repo


def only(report: dict[str, Any]) -> dict[str, Any]:
    assert len(report["findings"]) == 1, report["findings"]
    return report["findings"][0]


def test_reported_at_the_commit_that_introduced_it_not_the_one_that_deleted_it(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    token = make_token()
    repo.commit("start", **{"README.md": "hello\n"})
    added = repo.commit("add config", **{"app.env": f"# settings\nCENDIS_TOKEN={token}\n"})
    repo.commit("more", **{"README.md": "hello again\n"})
    repo.git("rm", "-q", "app.env")
    repo.commit("remove the token")
    status, report, err = repo.scan_json("git")
    assert status == 1
    f = only(report)
    assert f["commit"] == added
    assert f["path"] == "app.env" and f["location"] == "file"
    assert (f["line"], f["column"]) == (2, 14)
    assert f["variable"] == "CENDIS_TOKEN"
    assert f["author_name"] == "Ada Lovelace" and f["author_email"] == "ada@example.com"
    assert f["date"] == repo.date(added) == "2023-11-14T22:15:20+00:00"
    assert f["occurrences"] == 1
    assert f["fingerprint"].startswith(added + ":app.env:cendis-pat:")
    assert token not in str(report) + err


def test_a_token_kept_through_many_commits_is_reported_once(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    token = make_token()
    first = repo.commit("add", **{"config.ini": f"[cendis]\ntoken = {token}\nrev = 0\n"})
    for i in range(1, 50):
        repo.commit(f"edit {i}", **{"config.ini": f"[cendis]\ntoken = {token}\nrev = {i}\n"})
    f = only(repo.scan_json("git", "--all")[1])
    assert f["commit"] == first
    assert f["occurrences"] == 50  # every commit that wrote the file with the token


def test_a_merged_branch_is_reported_once_at_the_branch_commit(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    token = make_token()
    repo.commit("start", **{"a.txt": "a\n"})
    repo.git("checkout", "-q", "-b", "feature")
    on_branch = repo.commit("feature", **{"src__client.py": f'TOKEN = "{token}"\n'})
    repo.git("checkout", "-q", "main")
    repo.commit("main moves on", **{"b.txt": "b\n"})
    repo.git("merge", "-q", "--no-ff", "--no-edit", "feature")
    repo.commit("after", **{"c.txt": "c\n"})
    f = only(repo.scan_json("git")[1])
    assert f["commit"] == on_branch
    assert f["path"] == "src/client.py"


def test_a_token_added_by_a_merge_itself_is_reported_at_the_merge(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    token = make_token()
    repo.commit("start", **{"a.txt": "a\n"})
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit("feature", **{"f.txt": "f\n"})
    repo.git("checkout", "-q", "main")
    repo.commit("main", **{"m.txt": "m\n"})
    repo.git("merge", "-q", "--no-ff", "--no-commit", "feature")
    repo.write("m.txt", f"m\n{token}\n")
    repo.git("add", "m.txt")
    repo.clock[0] += 60
    repo.git("commit", "-q", "--no-edit")
    f = only(repo.scan_json("git")[1])
    assert f["commit"] == repo.head()
    assert (f["path"], f["line"]) == ("m.txt", 2)


def test_a_renamed_file_is_not_reported_again(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    token = make_token()
    added = repo.commit("add", **{"old.yaml": f"token: {token}\n"})
    repo.git("mv", "old.yaml", "new.yaml")
    repo.commit("rename")
    f = only(repo.scan_json("git")[1])
    assert (f["commit"], f["path"]) == (added, "old.yaml")
    assert f["occurrences"] == 2


def test_a_token_added_again_after_removal_is_one_finding(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    token = make_token()
    first = repo.commit("add", **{"a.env": f"T={token}\n"})
    repo.commit("remove", **{"a.env": "T=\n"})
    repo.commit("oops, again", **{"a.env": f"T={token}\n"})
    f = only(repo.scan_json("git")[1])
    assert f["commit"] == first
    assert f["occurrences"] == 2


def test_token_in_a_commit_message(tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    token = make_token()
    repo.commit("start", **{"a.txt": "a\n"})
    leaky = repo.commit(f"Fix CI\n\nUsed the token {token} to test.\n")
    status, report, err = repo.scan_json("git")
    f = only(report)
    assert status == 1
    assert f["commit"] == leaky
    assert f["location"] == "commit-message"
    assert f["path"] is None
    assert f["line"] == 3  # counted from the subject line
    text = repo.scan("git")
    assert f"{leaky[:12]} commit message:" in text.out
    assert token not in text.out + text.err + err


def test_every_ref_counts_but_unreachable_commits_do_not(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    on_branch, amended_away, in_tag = make_token(), make_token(), make_token()
    repo.commit("start", **{"a.txt": "a\n"})
    repo.git("checkout", "-q", "-b", "side")
    side = repo.commit("side", **{"s.txt": on_branch})
    repo.git("checkout", "-q", "main")
    repo.commit("wip", **{"w.txt": amended_away})
    repo.write("w.txt", "nothing\n")
    repo.git("add", "w.txt")
    repo.git("commit", "-q", "--amend", "-m", "wip, without the token")
    repo.git("checkout", "-q", "--detach")
    tagged = repo.commit("tagged", **{"t.txt": in_tag})
    repo.git("tag", "v1")
    repo.git("checkout", "-q", "main")
    report = repo.scan_json("git")[1]
    assert {f["commit"] for f in report["findings"]} == {side, tagged}


def test_range_and_since_commit_scan_only_those_commits(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    old, new = make_token(), make_token()
    base = repo.commit("old token", **{"a.env": f"A={old}\n"})
    repo.commit("edit a line of the file that holds it", **{"a.env": f"A={old}\nB=1\n"})
    leak = repo.commit("new token", **{"b.env": f"B={new}\n"})
    tip = repo.commit("later", **{"c.txt": "c\n"})
    for args in (["--since-commit", base], ["--range", f"{base}..{tip}"]):
        status, report, _ = repo.scan_json("git", *args)
        assert status == 1
        f = only(report)
        assert (f["commit"], f["path"]) == (leak, "b.env")
    status, report, _ = repo.scan_json("git", "--range", f"{leak}..{tip}")
    assert (status, report["findings"]) == (0, [])
    assert repo.scan("git", "--range", "nonsense").returncode == 2


def test_allow_marker_and_min_confidence(tmp_path: Path, make_token: Callable[[], str]
                                         ) -> None:
    repo = Repo.make(tmp_path)
    token = make_token()
    repo.commit("fixture", **{"t.py": f'T = "{token}"  # cendis-scan:allow\n',
                              "p.txt": f"{token[:-3]}\n"})
    status, report, _ = repo.scan_json("git")
    assert report["summary"]["suppressed"] == 1
    assert [f["confidence"] for f in report["findings"]] == ["possible"]
    status, report, _ = repo.scan_json("git", "--min-confidence", "confirmed")
    assert (status, report["findings"]) == (0, [])


def test_baseline_skips_known_findings(tmp_path: Path, make_token: Callable[[], str]
                                       ) -> None:
    repo = Repo.make(tmp_path)
    repo.commit("add", **{"a.env": f"A={make_token()}\n"})
    baseline = tmp_path / "baseline.json"
    assert repo.scan("git", "--format", "json", "-o", str(baseline)).returncode == 1
    assert repo.scan("git", "--baseline", str(baseline)).returncode == 0
    repo.commit("another", **{"b.env": f"B={make_token()}\n"})
    status, report, _ = repo.scan_json("git", "--baseline", str(baseline))
    assert status == 1 and only(report)["path"] == "b.env"


def test_sarif_is_valid_for_files_and_messages(
        tmp_path: Path, make_token: Callable[[], str], sarif_schema: dict[str, Any]) -> None:
    import json

    repo = Repo.make(tmp_path)
    repo.commit("add", **{"a.env": f"A={make_token()}\n"})
    repo.commit(f"message with {make_token()}")
    proc = repo.scan("git", "--format", "sarif")
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, sarif_schema)
    results = doc["runs"][0]["results"]
    assert len(results) == 2
    assert all(r["properties"]["commit"] for r in results)
    assert {r["properties"]["location"] for r in results} == {"file", "commit-message"}


def test_gzip_and_utf16_blobs(tmp_path: Path, make_token: Callable[[], str]) -> None:
    import gzip

    repo = Repo.make(tmp_path)
    a, b = make_token(), make_token()
    repo.commit("encoded", **{"logs__app.log.gz": gzip.compress(f"x\ntoken={a}\n".encode()),
                              "transcript.txt": f"\ufeffPS> $env:T = '{b}'\r\n"
                              .encode("utf-16-le")})
    report = repo.scan_json("git")[1]
    assert sorted(f["encoding"] for f in report["findings"]) == ["gzip", "utf-16"]


def test_a_long_range_is_read_by_workers(tmp_path: Path, make_token: Callable[[], str]
                                         ) -> None:
    """Thousands of new blobs in a range (a first push) take the parallel path."""
    repo = Repo.make(tmp_path)
    repo.commit("start", **{"a.txt": "a\n"})
    base = repo.head()
    for i in range(2100):
        repo.write(f"data/{i:04}.txt", f"row {i}\n")
    repo.write("data/1234.txt", f"row 1234 {make_token()}\n")
    leak = repo.commit("bulk import")
    status, report, _ = repo.scan_json("git", "--since-commit", base)
    assert status == 1
    assert (only(report)["commit"], only(report)["path"]) == (leak, "data/1234.txt")
    assert report["summary"]["files"] >= 2101


def test_merging_in_a_token_the_other_side_already_had_is_not_a_new_leak(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    repo.commit("start", **{"a.txt": "a\n"})
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit("feature work", **{"f.txt": "f\n"})
    repo.git("checkout", "-q", "main")
    on_main = repo.commit("token on main", **{"m.env": f"M={make_token()}\n"})
    repo.git("checkout", "-q", "feature")
    repo.git("merge", "-q", "--no-edit", "main")  # the merge's first parent is feature
    status, report, _ = repo.scan_json("git", "--range", "main..feature")
    assert (status, report["findings"]) == (0, [])
    assert only(repo.scan_json("git")[1])["commit"] == on_main
