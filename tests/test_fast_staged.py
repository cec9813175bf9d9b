"""The hook's quick answer (scanner/cli/fast_staged.py): a clean staged change is
answered without the detector, exactly as the full scan answers it; anything that
holds one of the detector's literals goes to the full scan."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Callable
from pathlib import Path

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
