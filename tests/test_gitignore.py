"""``scan --respect-gitignore`` scans exactly the files git would consider.

Every file but the ignore files holds its own token, so the findings name the files
scanned; each test compares them with git's own answer,
``git ls-files --cached --others --exclude-standard``, run in the same isolated
environment (HOME in the temp folder, so the user's own excludes never leak in).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gitrepo import Repo, isolated_env


def _fill(root: Path, paths: list[str], make_token: Callable[[], str],
          ignores: dict[str, str]) -> None:
    for rel, text in ignores.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for rel in paths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"TOKEN={make_token()}\n")


def _git_set(repo: Repo, cwd: Path | None = None) -> set[str]:
    out = repo.git("ls-files", "-z", "--cached", "--others", "--exclude-standard",
                   cwd=cwd)
    return {p for p in out.split("\0") if p}


def _scanned(repo: Repo, target: str = ".", cwd: Path | None = None,
             env: dict[str, str] | None = None) -> tuple[set[str], int]:
    """(files with a finding, files scanned) for ``scan TARGET --respect-gitignore``."""
    status, report, err = repo.scan_json("scan", target, "--respect-gitignore",
                                         cwd=cwd, env=env)
    assert status in (0, 1), err
    paths = {f["path"] for f in report["findings"]}
    assert len(paths) == len(report["findings"])  # one token per file
    return paths, report["summary"]["files"]


def _tokens(paths: set[str]) -> set[str]:
    return {p for p in paths if not p.endswith(".gitignore")}


PATHS = ["a.log", "keep.log", "src/app.log", "src/keep.log", "src/deep/keep.log",
         "src/deep/other.log", "logs/keep.log", "build/out.js", "src/build/out.js",
         "src/build.txt", "x", "src/x", "x.d/y", "notes.txt", "src/main.py"]
IGNORES = {
    ".gitignore": "*.log\nbuild/\n/x\nlogs/\n",
    # Re-included below a parent's *.log; but not inside logs/, which is excluded whole.
    "src/.gitignore": "!keep.log\n",
    "logs/.gitignore": "!keep.log\n",
    # The last matching line of a file wins; the deepest file with a match decides.
    "src/deep/.gitignore": "other.log\n!other.log\nkeep.log\n",
}


def test_nested_negations_directory_and_anchored_patterns(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    _fill(repo.path, PATHS, make_token, IGNORES)
    scanned, files = _scanned(repo)
    expected = _git_set(repo)
    assert scanned == _tokens(expected)
    assert files == len(expected)
    # What the rules above mean, spelled out (git agrees, as checked just now):
    assert {"src/keep.log", "src/deep/other.log", "src/x", "src/build.txt", "x.d/y",
            "notes.txt"} <= scanned
    assert not {"a.log", "keep.log", "src/app.log", "src/deep/keep.log", "logs/keep.log",
                "build/out.js", "src/build/out.js", "x"} & scanned


def test_info_exclude_core_excludes_file_and_tracked_files(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    home = Path(repo.env["HOME"])
    (home / "global-ignore").write_text("*.secret\n")
    repo.git("config", "--global", "core.excludesFile", str(home / "global-ignore"))
    (repo.path / ".git" / "info").mkdir(exist_ok=True)
    (repo.path / ".git" / "info" / "exclude").write_text("local-only/\n")
    _fill(repo.path, ["a.secret", "local-only/x.txt", "tracked.tmp", "b.tmp", "ok.txt"],
          make_token, {})
    repo.git("add", "tracked.tmp")
    (repo.path / ".gitignore").write_text("*.tmp\n")  # tracked.tmp stays tracked
    scanned, files = _scanned(repo)
    expected = _git_set(repo)
    assert scanned == _tokens(expected) == {"ok.txt", "tracked.tmp"}
    assert files == len(expected)


def test_default_excludes_file_under_xdg_config_home(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    ignore = Path(repo.env["XDG_CONFIG_HOME"]) / "git" / "ignore"
    ignore.parent.mkdir(parents=True)
    ignore.write_text(".env\n")
    _fill(repo.path, [".env", "app.py"], make_token, {})
    scanned, _ = _scanned(repo)
    assert scanned == _tokens(_git_set(repo)) == {"app.py"}
    repo.git("config", "core.excludesFile", "/dev/null")  # the repository's own wins
    scanned, _ = _scanned(repo)
    assert scanned == _tokens(_git_set(repo)) == {".env", "app.py"}


def test_scan_of_a_subfolder_nested_repository_and_hook_environment(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    _fill(repo.path, PATHS, make_token, IGNORES)
    # Scanning src/ alone: the parent's *.log still applies there, as in git.
    scanned, _ = _scanned(repo, "src", cwd=repo.path)
    assert scanned == {f"src/{p}" for p in _tokens(_git_set(repo, repo.path / "src"))}
    assert "src/app.log" not in scanned and "src/keep.log" in scanned
    # A repository inside the tree answers for itself (its own rules, not the outer's).
    inner = Repo(repo.path / "vendor" / "lib", repo.env)
    _fill(inner.path, ["inner.log", "dist/bundle.js", "lib.py"], make_token,
          {".gitignore": "dist/\n"})
    scanned, _ = _scanned(repo)
    expected = _tokens(_git_set(repo)) - {"vendor/lib/"}
    expected |= {f"vendor/lib/{p}" for p in _tokens(_git_set(inner))}
    assert scanned == expected
    assert "vendor/lib/inner.log" in scanned and "vendor/lib/dist/bundle.js" not in scanned
    # In a git hook GIT_DIR names the hook's repository: the scan still asks the tree's.
    other = Repo.make(tmp_path, "other")
    scanned_in_hook, _ = _scanned(repo, env={"GIT_DIR": str(other.path / ".git"),
                                             "GIT_WORK_TREE": str(other.path)})
    assert scanned_in_hook == scanned


def test_tree_outside_git_reads_gitignore_files_as_git_would(
        tmp_path: Path, make_token: Callable[[], str], scan: Any) -> None:
    tree = tmp_path / "tree"
    _fill(tree, PATHS, make_token, IGNORES)
    env = isolated_env(tmp_path / "home")
    outside = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=tree, env=env,
                             capture_output=True)
    assert outside.returncode != 0, "the temp folder must not be inside a work tree"
    status, report, _ = scan([".", "--respect-gitignore"], cwd=tree, env=env)
    assert status == 1
    scanned = {f["path"] for f in report["findings"]}
    # The same files as a repository made of a copy of the tree, asked of git.
    copy = Repo(tmp_path / "copy", env, init=False)
    shutil.copytree(tree, copy.path)
    copy.git("init", "-q")
    expected = _git_set(copy)
    assert scanned == _tokens(expected)
    assert report["summary"]["files"] == len(expected)


def test_without_the_flag_git_ignored_files_are_scanned(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    _fill(repo.path, PATHS, make_token, IGNORES)
    status, report, _ = repo.scan_json("scan", ".")
    assert status == 1
    assert {f["path"] for f in report["findings"]} == set(PATHS)


def test_without_git_on_path_the_gitignore_files_still_count(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    _fill(repo.path, PATHS, make_token, IGNORES)
    empty = tmp_path / "bin"  # the CLI is run by its full path; git is not found
    empty.mkdir()
    scanned, files = _scanned(repo, env={"PATH": str(empty)})
    expected = _git_set(repo)
    assert scanned == _tokens(expected)
    assert files == len(expected)
