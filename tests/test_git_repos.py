"""Repositories of every shape: bare, shallow, detached, empty, worktrees, submodules,
binary and huge blobs, names and contents that are not UTF-8, and ones git can't read."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from gitrepo import Repo


@pytest.fixture
def leaky(tmp_path: Path, make_token: Callable[[], str]) -> tuple[Repo, str]:
    """Three commits; the second adds a token. Returns the repo and that commit."""
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"a.txt": "a\n"})
    leak = repo.commit("two", **{"conf__prod.env": f"TOKEN={make_token()}\n"})
    repo.commit("three", **{"b.txt": "b\n"})
    return repo, leak


def test_bare_repository(tmp_path: Path, leaky: tuple[Repo, str]) -> None:
    repo, leak = leaky
    repo.git("clone", "-q", "--bare", str(repo.path), str(tmp_path / "bare.git"))
    bare = Repo(tmp_path / "bare.git", repo.env, init=False)
    status, report, _ = bare.scan_json("git", str(bare.path), cwd=tmp_path)
    assert status == 1
    assert [(f["commit"], f["path"]) for f in report["findings"]] == [(leak, "conf/prod.env")]
    proc = bare.scan("git", "--staged")
    assert proc.returncode == 2
    assert proc.err.count("\n") == 1 and "work tree" in proc.err


def test_shallow_clone_scans_what_is_there_and_says_so(
        tmp_path: Path, leaky: tuple[Repo, str]) -> None:
    repo, _ = leaky
    shallow = tmp_path / "shallow"
    repo.git("clone", "-q", "--depth", "1", f"file://{repo.path}", str(shallow))
    clone = Repo(shallow, repo.env, init=False)
    status, report, err = clone.scan_json("git")
    assert status == 1
    [f] = report["findings"]
    # The token came in before the clone's depth: it shows at the oldest commit present.
    assert f["commit"] == clone.head() and f["path"] == "conf/prod.env"
    assert "shallow" in err


def test_detached_head_commits_are_scanned(tmp_path: Path, make_token: Callable[[], str]
                                          ) -> None:
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"a.txt": "a\n"})
    repo.git("checkout", "-q", "--detach")
    leak = repo.commit("on no branch", **{"d.env": f"D={make_token()}\n"})
    status, report, _ = repo.scan_json("git")
    assert status == 1 and report["findings"][0]["commit"] == leak
    repo.write("e.env", f"E={make_token()}\n")
    repo.git("add", "e.env")
    assert repo.scan("git", "--staged").returncode == 1


def test_empty_repository(tmp_path: Path) -> None:
    repo = Repo.make(tmp_path)
    for mode in ("--all", "--staged"):
        status, report, _ = repo.scan_json("git", mode)
        assert (status, report["findings"]) == (0, [])
    bare = Repo.make(tmp_path, "empty.git", bare=True)
    assert bare.scan_json("git")[0] == 0


def test_binary_blob_has_offset_and_no_line(tmp_path: Path, make_token: Callable[[], str]
                                           ) -> None:
    repo = Repo.make(tmp_path)
    blob = b"\x89PNG\r\n\x1a\n\0\0\0" + os.urandom(300).replace(b"cendis", b"xxxxxx")
    repo.commit("image", **{"logo.png": blob + make_token().encode() + b"\0\0"})
    [f] = repo.scan_json("git")[1]["findings"]
    assert (f["path"], f["line"], f["column"], f["offset"]) == ("logo.png", None, None,
                                                                len(blob))


def test_huge_blob_is_streamed(tmp_path: Path, make_token: Callable[[], str]) -> None:
    """Larger than the scanner holds in memory (16 MiB): read through in pieces."""
    repo = Repo.make(tmp_path)
    first, last = make_token(), make_token()
    line = b"2024-01-01T00:00:00Z INFO request served in 3 ms path=/api/v2/items\n"
    filler = line * ((18 << 20) // len(line))
    repo.commit("big log", **{"big.log": first.encode() + b"\n" + filler + last.encode()})
    report = repo.scan_json("git")[1]
    lines = sorted(f["line"] for f in report["findings"])
    assert lines == [1, filler.count(b"\n") + 2]
    assert report["summary"]["bytes"] > 18 << 20


def test_names_and_contents_that_are_not_utf8(tmp_path: Path, make_token: Callable[[], str]
                                             ) -> None:
    repo = Repo.make(tmp_path)
    name = b"caf\xe9 \n.env"  # Latin-1, with a newline in the name
    content = b"# r\xe9glages\nT=" + make_token().encode() + b"\n"
    repo.write(name, content)
    repo.git("add", "-A")
    staged = repo.scan("git", "--staged", "--format", "json")
    assert staged.returncode == 1
    [f] = json.loads(staged.stdout)["findings"]
    assert f["path"] == "caf\\xe9 \\x0a.env" and f["line"] == 2  # one escaping everywhere
    repo.commit("add")
    report = repo.scan_json("git")[1]
    assert report["findings"][0]["path"] == "caf\\xe9 \\x0a.env"
    sarif = json.loads(repo.scan("git", "--format", "sarif").stdout)
    uri = sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"][
        "artifactLocation"]["uri"]
    assert uri == "caf%E9%20%0A.env"  # the real bytes, percent-encoded
    assert "caf\\xe9" in repo.scan("git").out


def test_submodules_are_skipped_and_said_so(tmp_path: Path, make_token: Callable[[], str]
                                           ) -> None:
    sub = Repo.make(tmp_path, "lib")
    sub.commit("lib", **{"lib.env": f"L={make_token()}\n"})
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"a.txt": "a\n"})
    repo.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub.path),
             "vendor/lib")
    repo.git("add", "-A")
    staged = repo.scan("git", "--staged")
    assert staged.returncode == 0
    assert "skipped submodule" in staged.err and "vendor/lib" in staged.err
    repo.commit("add submodule")
    proc = repo.scan("git")
    assert proc.returncode == 0
    assert "skipped submodule" in proc.err and "vendor/lib" in proc.err


def test_worktree(tmp_path: Path, leaky: tuple[Repo, str], make_token: Callable[[], str]
                  ) -> None:
    repo, leak = leaky
    repo.git("worktree", "add", "-q", "-b", "wt", str(tmp_path / "wt"))
    wt = Repo(tmp_path / "wt", repo.env, init=False)
    in_wt = wt.commit("in the worktree", **{"w.env": f"W={make_token()}\n"})
    status, report, _ = wt.scan_json("git")
    assert status == 1
    assert {f["commit"] for f in report["findings"]} == {leak, in_wt}
    wt.write("x.env", f"X={make_token()}\n")
    wt.git("add", "x.env")
    [f] = wt.scan_json("git", "--staged")[1]["findings"]
    assert f["path"] == "x.env"


@pytest.mark.parametrize("case", ["missing", "not-a-repo", "corrupt-head", "missing-object"])
def test_a_repository_git_cannot_read_is_exit_2_with_gits_message(
        tmp_path: Path, leaky: tuple[Repo, str], case: str) -> None:
    repo, _ = leaky
    target = repo.path
    expected = "fatal:"
    if case == "missing":
        target = tmp_path / "nowhere"
        expected = "cannot change to"
    elif case == "not-a-repo":
        target = tmp_path / "plain"
        target.mkdir()
        expected = "not a git repository"
    elif case == "corrupt-head":
        (repo.path / ".git" / "HEAD").write_text("garbage\n")
        expected = "not a git repository"
    else:
        blob = repo.git("rev-parse", "HEAD~1:conf/prod.env")
        shutil.rmtree(repo.path / ".git" / "objects" / blob[:2])
        expected = blob
    mode = ["--range", "HEAD~2..HEAD"] if case == "missing-object" else []
    proc = repo.scan("git", str(target), *mode, cwd=tmp_path)
    assert proc.returncode == 2
    assert expected in proc.err
    assert proc.err.startswith("cendis-scan: error: ")
    assert proc.err.count("\n") <= 2, proc.err


def test_a_blob_that_cannot_be_decoded_is_an_error_and_the_scan_goes_on(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    import gzip

    repo = Repo.make(tmp_path)
    broken = gzip.compress(b"x" * 1000)[:-20]  # truncated
    leak = repo.commit("two files", **{"old.log.gz": broken, "a.env": f"A={make_token()}\n"})
    proc = repo.scan("git", "--format", "json")
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["findings"][0]["commit"] == leak
    assert "not valid gzip" in proc.err
