"""Directory scans: what is walked and what is skipped, the order of findings, and the
note on ``.env`` files git would commit."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def _put(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _git_init(root: Path) -> None:
    subprocess.run(["git", "init", "-q", str(root)], check=True)


def _paths(report: dict[str, Any]) -> list[str]:
    return [f["path"] for f in report["findings"]]


def test_recursion_dotfiles_and_gitignored_files(scan: Any, tmp_path: Path,
                                                 make_token: Callable[[], str]) -> None:
    _git_init(tmp_path)
    _put(tmp_path, {
        ".gitignore": ".env\nsecrets/\n*.bak\n",
        ".env": f"CENDIS_TOKEN={make_token()}\n",
        "secrets/prod.txt": make_token(),
        "deploy.bak": make_token(),
        "a/b/c/d/deep.py": f"TOKEN = '{make_token()}'\n",
        ".config/tool/settings": make_token(),
        "clean.txt": "nothing here\n",
    })
    status, report, _ = scan(["."], cwd=tmp_path)
    assert status == 1
    assert _paths(report) == [".config/tool/settings", ".env", "a/b/c/d/deep.py",
                              "deploy.bak", "secrets/prod.txt"]
    assert report["summary"]["files"] == 7


def test_dot_git_is_never_scanned(scan: Any, tmp_path: Path,
                                  make_token: Callable[[], str]) -> None:
    _git_init(tmp_path)
    _put(tmp_path, {
        ".git/config": f"[remote]\nurl = https://ci:{make_token()}@git.example.com/r\n",
        "sub/.git/HEAD": make_token(),  # a submodule's or nested repository's .git
        "sub/file.txt": "clean\n",
    })
    status, report, _ = scan([str(tmp_path)])
    assert (status, report["findings"]) == (0, [])
    assert report["summary"]["files"] == 1


def test_exclude_globs(scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    _put(tmp_path, {
        "app.log": make_token(),
        "logs/old/app.log": make_token(),
        "vendor/lib/x.py": make_token(),
        "src/vendor.py": make_token(),
        "src/main.py": make_token(),
    })
    status, report, _ = scan([".", "--exclude", "*.log", "--exclude", "vendor/"],
                             cwd=tmp_path)
    assert status == 1
    assert _paths(report) == ["src/main.py", "src/vendor.py"]
    assert report["summary"]["files"] == 2


def test_respect_gitignore(scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    _put(tmp_path, {
        ".gitignore": "*.bak\nbuild/\n!keep.bak\n",
        "a.bak": make_token(),
        "keep.bak": make_token(),
        "build/out.js": make_token(),
        "pkg/.gitignore": "local.cfg\n",
        "pkg/local.cfg": make_token(),
        "pkg/shared.cfg": make_token(),
        "local.cfg": make_token(),  # the nested .gitignore does not reach up here
    })
    status, report, _ = scan([".", "--respect-gitignore"], cwd=tmp_path)
    assert status == 1
    assert _paths(report) == ["keep.bak", "local.cfg", "pkg/shared.cfg"]
    status, report, _ = scan(["."], cwd=tmp_path)
    assert len(report["findings"]) == 6


def test_order_is_path_line_column_whatever_the_jobs(scan: Any, tmp_path: Path,
                                                     make_token: Callable[[], str]) -> None:
    files = {f"d{i % 7}/f{i:03d}.txt": "clean\n" for i in range(450)}  # enough to fork
    for i in (3, 77, 200, 449):
        files[f"d{i % 7}/f{i:03d}.txt"] = (
            f"x\n{make_token()} {make_token()}\n\n  {make_token()}\n")
    _put(tmp_path, files)
    reports = [scan([".", "--jobs", jobs], cwd=tmp_path)[1] for jobs in ("1", "2", "2")]
    keys = [(f["path"], f["line"], f["column"]) for f in reports[0]["findings"]]
    assert len(keys) == 12 and keys == sorted(keys)
    assert keys[:3] == [("d0/f077.txt", 2, 1), ("d0/f077.txt", 2, 49), ("d0/f077.txt", 4, 3)]
    for other in reports[1:]:
        assert other["findings"] == reports[0]["findings"]
        assert other["summary"]["files"] == 450


@pytest.mark.parametrize("name", [".env", ".envrc", ".env.local"])
def test_env_file_git_would_commit_gets_a_note(name: str, scan: Any, tmp_path: Path,
                                               make_token: Callable[[], str]) -> None:
    _git_init(tmp_path)
    _put(tmp_path, {name: f"export CENDIS_TOKEN={make_token()}\n",
                    "config.sh": f"CENDIS_TOKEN={make_token()}\n"})
    status, report, _ = scan([str(tmp_path)])
    assert status == 1
    notes = {Path(f["path"]).name: f["note"] for f in report["findings"]}
    assert notes["config.sh"] is None
    assert ".gitignore" in notes[name] and name in notes[name]


def test_ignored_or_untracked_env_file_gets_no_note(scan: Any, cli: Any, tmp_path: Path,
                                                    make_token: Callable[[], str]) -> None:
    _git_init(tmp_path / "repo")
    _put(tmp_path, {"repo/.gitignore": ".env\n", "repo/.env": f"T={make_token()}\n",
                    "outside/.env": f"T={make_token()}\n"})
    status, report, _ = scan([str(tmp_path)])
    assert status == 1
    assert [f["note"] for f in report["findings"]] == [None, None]
    proc = cli(["scan", str(tmp_path)])
    assert "note:" not in proc.out
