"""The git package against golden files: a small repository built from a fixed script
(fixed identities and dates, so fixed commit ids), scanned by the installed CLI, its
JSON report compared whole with ``tests/data/golden/``.

The tokens are the spec's test vectors (tests/data/token-vectors.json), never real
ones, and reports only hold them redacted: the golden files hold no whole token (checked
here too). After an intended change of output, regenerate with ``UPDATE_GOLDEN=1`` and
review the diff.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_golden
from gitrepo import Repo

#: Fields that depend on the machine or the moment, not on the repository.
VOLATILE = ("elapsed", "elapsed_s", "duration", "seconds", "time", "version", "scanned_at",
            "started", "finished")


def _history(tmp_path: Path, tokens: list[str]) -> Repo:
    """Every place a history can hold a token, each once, plus the moves that must not
    make a second finding: a rename, a copy, a merge, a deletion."""
    a, b, c, d, e = tokens[:5]
    repo = Repo.make(tmp_path)
    repo.commit("first", **{"README.md": "hello\n", "src__app.py": "x = 1\n"})
    repo.commit("add config", **{"config.env": f"# settings\nCENDIS_TOKEN={a}\n"})
    repo.git("mv", "config.env", "settings.env")
    repo.commit("rename config")
    repo.commit(f"debug: token was {b}")  # a commit message
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit("feature", **{"notes__gz.bin": gzip.compress(f"key: {c}\n".encode(),
                                                              mtime=0)})
    repo.git("checkout", "-q", "main")
    repo.commit("main work", **{"src__app.py": "x = 2\n"})
    repo.clock[0] += 60
    repo.git("merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    repo.commit("copy", **{"copy.env": f"CENDIS_TOKEN={a}\n"})  # an old token again
    repo.write("settings.env", "# settings\n")
    repo.commit("remove token")
    repo.clock[0] += 60
    repo.git("tag", "-a", "v1.0", "-m", f"release; deploy key {d}")
    repo.commit("path", **{f"keys__{e}.txt": "see name\n"})  # a token in a path name
    return repo


def _stable(report: dict[str, Any]) -> dict[str, Any]:
    """The report without what varies between machines and runs."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in VOLATILE}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value
    return clean(report)


def _check(name: str, report: dict[str, Any]) -> None:
    assert_golden(name, (json.dumps(_stable(report), indent=2, sort_keys=True) + "\n").encode())


@pytest.fixture
def history(tmp_path: Path, vectors: dict[str, Any]) -> Repo:
    return _history(tmp_path, [v["token"] for v in vectors["valid"]])


def test_git_all_matches_golden(history: Repo) -> None:
    status, report, _ = history.scan_json("git", "--all")
    assert status == 1
    _check("git_all.json", report)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_git_all_same_in_parallel(history: Repo, jobs: str) -> None:
    """Workers split the store differently: the report must not change."""
    _, report, _ = history.scan_json("git", "--all", "--jobs", jobs)
    _check("git_all.json", report)


def test_git_range_matches_golden(history: Repo) -> None:
    first = history.git("rev-list", "--max-parents=0", "HEAD")
    status, report, _ = history.scan_json("git", "--range", f"{first}..HEAD")
    assert status == 1
    _check("git_range.json", report)


def test_git_staged_matches_golden(history: Repo, vectors: dict[str, Any]) -> None:
    token = vectors["valid"][5]["token"]
    history.write("deploy.sh", f"export CENDIS_TOKEN={token}\n")
    history.git("add", "deploy.sh")
    status, report, _ = history.scan_json("git", "--staged")
    assert status == 1
    _check("git_staged.json", report)
