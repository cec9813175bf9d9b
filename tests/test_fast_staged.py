"""The hook's quick answer (scanner/cli/fast_staged.py): a clean staged change is
answered without the detector, exactly as the full scan answers it; anything that
holds one of the detector's literals goes to the full scan."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Callable
from pathlib import Path

import pytest
from gitrepo import Repo

from scanner.cli.fast_staged import _prefixes, _repo_arg
from scanner.engine import layers
from scanner.engine.detect import Detector
from scanner.rules import load


def test_the_literals_and_prefixes_are_the_detectors() -> None:
    rules = load()
    assert _prefixes() == [r.prefix for r in rules]
    assert layers.texts(_prefixes() or []) == Detector(rules).literals()


def test_only_the_plain_hook_command_is_answered_quickly() -> None:
    assert _repo_arg(["git", "--staged"]) == "."
    assert _repo_arg(["git", "repo", "--staged"]) == "repo"
    assert _repo_arg(["git", "--staged", "repo"]) == "repo"
    for args in (["git"], ["git", "--all"], ["git", "--staged", "--format", "json"],
                 ["git", "--staged", "--staged"], ["scan", "--staged"], ["git", "a", "b"]):
        assert _repo_arg(args) is None


def test_a_clean_change_reads_as_the_full_scan_says(tmp_path: Path) -> None:
    repo = Repo.make(tmp_path)
    repo.commit("start", **{"README.md": "hello\n", "gone.txt": "x\n"})
    repo.write("README.md", "hello\nworld\n")
    repo.write("new.py", "print('cendis')\n" * 100)
    repo.git("rm", "-q", "gone.txt")
    repo.git("add", "README.md", "new.py")
    quick = repo.scan("git", "--staged")
    full = repo.scan("git", "--staged", "--format", "text")  # an option: the full scan
    assert quick.returncode == full.returncode == 0
    assert quick.out == full.out == ""
    assert quick.err == full.err == ""  # a hook is quiet when all is well


def test_anything_with_a_literal_goes_to_the_full_scan(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    repo.commit("start", **{"README.md": "hello\n"})
    token = make_token()
    repo.write("b64.txt", base64.b64encode(b"x=" + token.encode()).decode() + "\n")
    repo.git("add", "b64.txt")
    proc = repo.scan("git", "--staged")
    assert proc.returncode == 1 and "b64.txt" in proc.out
    repo.git("reset", "-q")
    repo.write("data.gz", gzip.compress(f"T={make_token()}\n".encode()))
    repo.git("add", "data.gz")
    proc = repo.scan("git", "--staged")
    assert proc.returncode == 1 and "data.gz" in proc.out
    repo.git("reset", "-q")
    repo.write(f"notes-{make_token()}.txt", "nothing\n")
    repo.git("add", "-A")
    assert repo.scan("git", "--staged").returncode == 1
    repo.git("reset", "-q")
    proc = repo.scan("git", "--staged", env={"GIT_AUTHOR_EMAIL": f"{make_token()}@x.example"})
    assert proc.returncode == 1 and "author" in proc.out


def _kind_of_repository(tmp_path: Path, kind: str) -> tuple[Repo, Path, dict[str, str]]:
    """A repository of ``kind`` with a clean change staged: (repo, folder to scan, extra
    environment)."""
    origin = Repo.make(tmp_path, "origin")
    origin.commit("one", **{"README.md": "hello\n"})
    origin.commit("two", **{"a.txt": "a\n"})
    env: dict[str, str] = {}
    if kind.startswith("shallow"):
        repo = Repo(tmp_path / "repo", origin.env, init=False)
        origin.git("clone", "-q", "--depth", "1", f"file://{origin.path}", str(repo.path),
                   cwd=tmp_path)
    else:
        repo = origin
    where = repo.path
    if kind.endswith("worktree") or kind == "worktree, GIT_DIR set as in its hooks":
        where = tmp_path / "wt"
        repo.git("worktree", "add", "-q", "-b", "wt", str(where))
        if "GIT_DIR" in kind:
            env["GIT_DIR"] = repo.git("rev-parse", "--absolute-git-dir", cwd=where).strip()
    elif kind == "core.bare unset":
        repo.git("config", "--unset", "core.bare")
    (where / "README.md").write_text("hello\nworld\n")
    (where / "new.txt").write_text("nothing to see\n")
    repo.git("add", "README.md", "new.txt", cwd=where)
    if kind == "core.bare true":
        repo.git("config", "core.bare", "true")
    return repo, where, env


KINDS = ["plain", "worktree", "worktree, GIT_DIR set as in its hooks", "shallow",
         "shallow worktree", "core.bare unset", "core.bare true"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_repository_reads_as_the_full_scan_says(tmp_path: Path,
                                                              kind: str) -> None:
    """The quick answer reads the repository's files instead of asking ``rev-parse``
    where they say plainly that it is not shallow; a shallow clone (the full scan warns),
    a bare setting or anything unusual still goes to the full scan."""
    repo, where, env = _kind_of_repository(tmp_path, kind)
    quick = repo.scan("git", "--staged", env=env, cwd=where)
    full = repo.scan("git", "--staged", "--format", "text", env=env, cwd=where)
    assert (quick.returncode, quick.out, quick.err) == (full.returncode, full.out, full.err)
    assert ("shallow" in quick.err) == kind.startswith("shallow")
    assert ("bare repository" in quick.err) == (kind == "core.bare true")
    assert quick.returncode == (2 if kind == "core.bare true" else 0)


@pytest.mark.parametrize("kind", KINDS)
def test_a_plain_repository_costs_three_gits(tmp_path: Path, kind: str) -> None:
    """diff-index, var and cat-file: rev-parse only where the files cannot answer."""
    repo, where, env = _kind_of_repository(tmp_path, kind)
    trace = tmp_path / "trace"
    repo.scan("git", "--staged", env={**env, "GIT_TRACE": str(trace)}, cwd=where)
    ran = [ln.split("built-in: git ")[1].split(" ")[0]
           for ln in trace.read_text().splitlines() if "built-in: git " in ln]
    if kind.startswith("shallow") or kind.startswith("core.bare"):
        assert "rev-parse" in ran
    else:
        assert sorted(ran) == ["cat-file", "diff-index", "var"]


@pytest.mark.parametrize("cache", ["fresh", "stale", "damaged", "unwritable"])
def test_the_hooks_literals_come_back_from_the_cache_only_when_current(
        tmp_path: Path, make_token: Callable[[], str], cache: str) -> None:
    """The layer decoder's ~1,400 literals are kept between commits; a file derived
    from other sources (another version, other prefixes), a damaged one or a folder that
    cannot be written never makes the quick answer miss what the full scan finds."""
    folder = tmp_path / "cache"
    path = folder / "hook-literals.txt"
    if cache == "unwritable":
        folder.write_text("not a folder\n")
    repo = Repo.make(tmp_path)
    repo.commit("start", **{"README.md": "hello\n"})
    env = {"CENDIS_SCAN_CACHE": str(folder)}
    repo.write("a.txt", "nothing\n")
    repo.git("add", "a.txt")
    assert repo.scan("git", "--staged", env=env).returncode == 0
    if cache != "unwritable":
        head, _, body = path.read_bytes().partition(b"\n")
        assert [bytes.fromhex(x.decode()) for x in body.split()] == \
            layers.texts(_prefixes() or [])
        if cache == "stale":  # what an older version left: nothing to look for
            path.write_bytes(head.replace(b"v1 ", b"v0 ") + b"\n")
        elif cache == "damaged":
            path.write_bytes(b"\x00\xff" * 100)
    token = make_token()
    repo.write("b.txt", base64.b64encode(b"x=" + token.encode()).decode() + "\n")
    repo.git("add", "b.txt")
    proc = repo.scan("git", "--staged", env=env)
    assert proc.returncode == 1 and "b.txt" in proc.out
    if cache != "unwritable":  # derived again and kept
        assert path.read_bytes().partition(b"\n")[0] == head
