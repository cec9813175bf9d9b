"""Hooks: ``install-hook`` for plain git, and the pre-commit framework's hooks from
``.pre-commit-hooks.yaml`` run for real by ``pre-commit run``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from gitrepo import Repo, isolated_env

from scanner.hooks import MARKER


def redacted(token: str) -> str:
    return f"{token[:15]}…{token[-2:]}"


def test_install_hook_writes_an_executable_marked_hook(tmp_path: Path) -> None:
    repo = Repo.make(tmp_path)
    proc = repo.scan("install-hook")
    assert proc.returncode == 0, proc.err
    hook = repo.path / ".git" / "hooks" / "pre-commit"
    assert os.access(hook, os.X_OK)
    text = hook.read_text()
    assert MARKER in text and "git --staged" in text
    assert repo.scan("install-hook").returncode == 0  # its own hook: replaced quietly
    assert repo.scan("install-hook", "--pre-push").returncode == 0
    assert "git --pre-push" in (hook.parent / "pre-push").read_text()


def test_install_hook_refuses_someone_elses_hook_unless_forced(tmp_path: Path) -> None:
    repo = Repo.make(tmp_path)
    hook = repo.path / ".git" / "hooks" / "pre-commit"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text("#!/bin/sh\necho theirs\n")
    proc = repo.scan("install-hook")
    assert proc.returncode == 2
    assert "not written by cendis-scan" in proc.err and "--force" in proc.err
    assert hook.read_text() == "#!/bin/sh\necho theirs\n"
    assert repo.scan("install-hook", "--force").returncode == 0
    assert MARKER in hook.read_text()


def test_install_hook_follows_core_hooks_path_and_worktrees(tmp_path: Path) -> None:
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"a.txt": "a\n"})
    repo.git("worktree", "add", "-q", "-b", "wt", str(tmp_path / "wt"))
    assert repo.scan("install-hook", str(tmp_path / "wt"), cwd=tmp_path).returncode == 0
    assert MARKER in (repo.path / ".git" / "hooks" / "pre-commit").read_text()
    repo.git("config", "core.hooksPath", ".githooks")
    assert repo.scan("install-hook").returncode == 0
    assert MARKER in (repo.path / ".githooks" / "pre-commit").read_text()


def test_installed_hook_blocks_a_real_commit(tmp_path: Path, make_token: Callable[[], str]
                                             ) -> None:
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"a.txt": "a\n"})
    assert repo.scan("install-hook").returncode == 0
    before = repo.head()
    token = make_token()
    repo.write("deploy.env", f"CENDIS_TOKEN={token}\n")
    repo.git("add", "deploy.env")
    proc = subprocess.run(["git", "commit", "-q", "-m", "deploy"], cwd=repo.path,
                          env={**os.environ, **repo.env, "NO_COLOR": "1"},
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert repo.head() == before
    out = proc.stdout + proc.stderr
    assert "commit blocked" in out and f"deploy.env:1:14  {redacted(token)}" in out
    assert token not in out
    repo.write("deploy.env", "CENDIS_TOKEN=${CENDIS_TOKEN}\n")
    repo.git("add", "deploy.env")
    repo.git("commit", "-q", "-m", "deploy, reading the token from the environment")
    assert repo.head() != before


def test_installed_pre_push_hook_blocks_a_real_push(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    remote = Repo.make(tmp_path, "remote.git", bare=True)
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"a.txt": "a\n"})
    repo.git("remote", "add", "origin", str(remote.path))
    repo.git("push", "-q", "origin", "main")
    assert repo.scan("install-hook", "--pre-push").returncode == 0
    token = make_token()
    repo.commit("leak", **{"b.env": f"B={token}\n"})
    repo.commit("and remove it again", **{"b.env": "B=\n"})
    proc = subprocess.run(["git", "push", "-q", "origin", "main"], cwd=repo.path,
                          env={**os.environ, **repo.env, "NO_COLOR": "1"},
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "push blocked" in proc.stderr and redacted(token) in proc.stdout + proc.stderr
    assert token not in proc.stdout + proc.stderr
    assert remote.git("rev-list", "--count", "main") == "1"


# --------------------------------------------------------------- the pre-commit framework


@pytest.fixture(scope="session")
def hook_checkout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, str]]:
    """This checkout as pre-commit sees a hook repository: a commit holding the files a
    pip install needs. PRE_COMMIT_HOME is per session, so the hook's environment is
    built (pip install from this checkout) once for all the tests below."""
    base = tmp_path_factory.mktemp("hooks")
    env = {**isolated_env(base / "home"), "PRE_COMMIT_HOME": str(base / "pre-commit-home")}
    snap = Repo(base / "cendis-scan", env, init=True)
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy(ROOT / name, snap.path / name)
    for folder in ("scanner", "rules"):
        shutil.copytree(ROOT / folder, snap.path / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    sha = snap.commit("snapshot of the checkout under test")
    return snap.path, sha, env


def run_hook(hook_checkout: tuple[Path, str, dict[str, str]], repo: Repo, hook: str,
             *args: str) -> subprocess.CompletedProcess:
    """``pre-commit run HOOK`` with a config naming this checkout at its snapshot, as a
    project's ``.pre-commit-config.yaml`` would. (Not ``try-repo``: it keeps its store in
    a new temporary folder each time, ignoring PRE_COMMIT_HOME, and so rebuilt the hook's
    environment, ~10 s, on every call.) The config sits outside the repository, so it is
    neither staged nor scanned."""
    checkout, sha, env = hook_checkout
    config = repo.path.parent / f"pre-commit-config-{hook}.yaml"
    config.write_text(f"repos:\n- repo: {json.dumps(str(checkout))}\n  rev: {sha}\n"
                      f"  hooks:\n  - id: {hook}\n")
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--config", str(config), hook,
         "--color", "never", *args],
        cwd=repo.path, env={**os.environ, **repo.env, **env}, capture_output=True,
        text=True, timeout=900)


@pytest.mark.early
def test_pre_commit_framework_staged_hook(
        tmp_path: Path, hook_checkout: tuple[Path, str, dict[str, str]],
        make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"a.txt": "a\n"})
    repo.write("clean.py", "import os\nTOKEN = os.environ['CENDIS_TOKEN']\n")
    repo.git("add", "clean.py")
    proc = run_hook(hook_checkout, repo, "cendis-scan")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Passed" in proc.stdout
    token = make_token()
    repo.write("leak.py", f'TOKEN = "{token}"\n')
    repo.git("add", "leak.py")
    proc = run_hook(hook_checkout, repo, "cendis-scan")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Failed" in out and f"leak.py:1:10  {redacted(token)}" in out
    assert "commit blocked" in out
    assert token not in out


@pytest.mark.early
def test_pre_commit_framework_push_hook(
        tmp_path: Path, hook_checkout: tuple[Path, str, dict[str, str]],
        make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    base = repo.commit("one", **{"a.txt": "a\n"})
    clean = repo.commit("two", **{"b.txt": "b\n"})
    stage = ["--hook-stage", "pre-push", "--from-ref"]
    proc = run_hook(hook_checkout, repo, "cendis-scan-push", *stage, base, "--to-ref", clean)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    token = make_token()
    leak = repo.commit("three", **{"c.env": f"C={token}\n"})
    proc = run_hook(hook_checkout, repo, "cendis-scan-push", *stage, clean, "--to-ref", leak)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Failed" in out and redacted(token) in out and "push blocked" in out
    assert token not in out


@pytest.mark.early
def test_pre_commit_framework_push_hook_without_refs_says_nothing_was_scanned(
        tmp_path: Path, hook_checkout: tuple[Path, str, dict[str, str]]) -> None:
    """``pre-commit run --hook-stage pre-push`` with no --from-ref/--to-ref: a silent
    "Passed" would claim a push was checked; the hook fails and says why."""
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"a.txt": "a\n"})
    proc = run_hook(hook_checkout, repo, "cendis-scan-push", "--hook-stage", "pre-push")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Failed" in out and "nothing was scanned" in out and "--from-ref" in out


# ------------------------------------------------ quiet when all is well, clear when not


def _git_commit(repo: Repo, message: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "commit", "-q", "-m", message], cwd=repo.path,
                          env={**os.environ, **repo.env, "NO_COLOR": "1"},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("change", ["text", "placeholder", "gzip", "deletion", "many-files",
                                    "binary"])
def test_a_clean_commit_through_the_real_hook_prints_nothing(tmp_path: Path,
                                                              change: str) -> None:
    """Whichever path answers (the quick literal check, or the full scan for a literal,
    gzip or binary content), a hook that finds nothing says nothing."""
    import gzip

    repo = Repo.make(tmp_path)
    repo.commit("one", **{"a.txt": "a\n", "old.txt": "old\n"})
    assert repo.scan("install-hook").returncode == 0
    if change == "text":
        repo.write("b.py", "import os\nTOKEN = os.environ['CENDIS_TOKEN']\n")
    elif change == "placeholder":
        repo.write("b.md", "export CENDIS_TOKEN=cendis_pat_<your token here>\n")
    elif change == "gzip":
        repo.write("b.gz", gzip.compress(b"nothing secret\n" * 100))
    elif change == "deletion":
        repo.git("rm", "-q", "old.txt")
    elif change == "many-files":
        for i in range(30):
            repo.write(f"d/f{i}.txt", f"line {i}\n")
    else:
        repo.write("b.bin", bytes(range(256)) * 10)
    repo.git("add", "-A")
    before = repo.head()
    proc = _git_commit(repo, "clean")
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout, proc.stderr) == ("", "")
    assert repo.head() != before
    direct = repo.scan("git", "--staged")  # nothing staged now: still quiet
    assert (direct.returncode, direct.out, direct.err) == (0, "", "")


def test_a_clean_push_through_the_real_hook_prints_nothing(tmp_path: Path) -> None:
    remote = Repo.make(tmp_path, "remote.git", bare=True)
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"a.txt": "a\n"})
    repo.git("remote", "add", "origin", str(remote.path))
    repo.git("push", "-q", "origin", "main")
    assert repo.scan("install-hook", "--pre-push").returncode == 0
    repo.commit("two", **{"b.txt": "b\n"})
    proc = subprocess.run(["git", "push", "-q", "origin", "main"], cwd=repo.path,
                          env={**os.environ, **repo.env, "NO_COLOR": "1"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout, proc.stderr) == ("", "")


def _lean_line(hook: Path) -> str:
    lines = [ln for ln in hook.read_text().splitlines() if " -S -P -c " in ln]
    assert len(lines) == 1, hook.read_text()
    return lines[0]


@pytest.mark.parametrize("start", ["lean", "moved interpreter", "moved package"])
@pytest.mark.parametrize("change", ["clean", "token", "token in the author"])
def test_the_hook_starts_python_directly_or_falls_back_to_the_console_script(
        tmp_path: Path, make_token: Callable[[], str], start: str, change: str) -> None:
    """The installed hook runs the interpreter with ``-S`` (no site, no .pth files); when
    the interpreter or the package has moved, the console script, as before. Both
    answer alike: quiet when clean, blocked with the same message otherwise. Which one
    ran shows in Python's import log: the lean start never imports ``site`` before the
    quick answer, the console script always does."""
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"a.txt": "a\n"})
    assert repo.scan("install-hook").returncode == 0
    hook = repo.path / ".git" / "hooks" / "pre-commit"
    line = _lean_line(hook)
    if start != "lean":  # what the shell checks before exec: [ -x PYTHON ] && [ -f INIT ]
        python, init = line.split(" ")[2], line.split(" ")[7]
        moved = python if start == "moved interpreter" else init
        hook.write_text(hook.read_text().replace(moved, str(tmp_path / "gone" / "x")))
    token = make_token()
    env = {**os.environ, **repo.env, "NO_COLOR": "1", "PYTHONPROFILEIMPORTTIME": "1"}
    if change == "token in the author":
        env["GIT_AUTHOR_EMAIL"] = f"{token}@example.com"
    repo.write("b.txt", f"T={token}\n" if change == "token" else "nothing here\n")
    repo.git("add", "b.txt")
    before = repo.head()
    proc = subprocess.run(["git", "commit", "-q", "-m", "b"], cwd=repo.path, env=env,
                          capture_output=True, text=True, timeout=120)
    imports = [ln.split("|")[-1].strip() for ln in proc.stderr.splitlines()
               if ln.startswith("import time:")]
    said = "\n".join(ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:"))
    assert "scanner.cli" in imports
    first_scanner = imports.index("scanner.cli")
    assert ("site" in imports[:first_scanner]) == (start != "lean"), imports[:first_scanner]
    assert token not in proc.stdout + said
    if change == "clean":
        assert (proc.returncode, proc.stdout, said) == (0, "", "")
        assert "site" not in imports or start != "lean"  # the quick answer: no site at all
        assert repo.head() != before
    else:
        assert proc.returncode != 0 and repo.head() == before
        assert "commit blocked: 1 Cendis token" in said
        assert ("author" in said) == (change == "token in the author")
        assert "site" in imports  # the full scan loaded the environment's packages


@pytest.mark.parametrize("change", ["clean", "token"])
def test_the_lean_hook_imports_nothing_from_the_repository(
        tmp_path: Path, make_token: Callable[[], str], change: str) -> None:
    """The hook runs in the top folder of the repository being committed: modules there
    named like the standard library's or like ours are never imported (``-P``), on the
    quick answer or through the full scan."""
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"a.txt": "a\n"})
    assert repo.scan("install-hook").returncode == 0
    mark = tmp_path / "imported"
    trap = f"open({str(mark)!r}, 'a').write(__name__ + '\\n')\n"
    for name in ("os.py", "re.py", "site.py", "stat.py", "json.py", "logging.py",
                 "scanner/__init__.py", "scanner/cli/__init__.py", "re2.py"):
        repo.write(name, trap)
    token = make_token()
    repo.write("b.txt", f"T={token}\n" if change == "token" else "nothing here\n")
    repo.git("add", "-A")
    proc = _git_commit(repo, "b")
    assert not mark.exists(), mark.read_text()
    if change == "clean":
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    else:
        assert proc.returncode != 0 and "commit blocked: 1 Cendis token" in proc.stderr


def test_a_hook_not_ending_in_the_console_script_is_left_as_it_is() -> None:
    from scanner.hooks import with_lean_start

    for text in ("#!/bin/sh\nexec other-tool --staged\n", "", "#!/bin/sh\n"):
        assert with_lean_start(text) == text
    lean = with_lean_start('#!/bin/sh\nexec "$CENDIS_SCAN" git --pre-push\n')
    assert lean.endswith('"$CENDIS_SCAN" git --pre-push\nexec "$CENDIS_SCAN" git --pre-push\n')


@pytest.mark.parametrize("tokens", [1, 3])
@pytest.mark.parametrize("encoding", ["plain", "base64"])
def test_a_blocked_commit_says_what_to_do_once(tmp_path: Path, tokens: int, encoding: str,
                                              make_token: Callable[[], str]) -> None:
    import base64

    repo = Repo.make(tmp_path)
    repo.commit("one", **{"a.txt": "a\n"})
    assert repo.scan("install-hook").returncode == 0
    for i in range(tokens):
        line = f"T={make_token()}\n"
        if encoding == "base64":
            line = base64.b64encode(line.encode()).decode() + "\n"
        repo.write(f"leak{i}.env", line)
    repo.git("add", "-A")
    proc = _git_commit(repo, "leak")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert out.count("What to do") == 1, out
    assert "commit blocked" in out and "finding" not in proc.stderr


def test_a_blocked_push_says_what_to_do_once(tmp_path: Path,
                                            make_token: Callable[[], str]) -> None:
    remote = Repo.make(tmp_path, "remote.git", bare=True)
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"a.txt": "a\n"})
    repo.git("remote", "add", "origin", str(remote.path))
    repo.git("push", "-q", "origin", "main")
    assert repo.scan("install-hook", "--pre-push").returncode == 0
    repo.commit("leak", **{"b.env": f"B={make_token()}\n"})
    proc = subprocess.run(["git", "push", "-q", "origin", "main"], cwd=repo.path,
                          env={**os.environ, **repo.env, "NO_COLOR": "1"},
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "push blocked" in out
    assert out.count("What to do") == 1, out


def test_a_scan_outside_a_hook_still_says_what_to_do_and_sums_up(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"a.env": f"A={make_token()}\n"})
    proc = repo.scan("git")
    assert proc.returncode == 1
    assert proc.out.count("What to do") == 1
    assert proc.err.startswith("cendis-scan: 1 finding")


@pytest.mark.parametrize("args", [
    ["scan", "{tmp}/missing"],
    ["scan", "{tmp}/missing", "{tmp}/present.txt"],
    ["git", "{tmp}"],
    ["git", "{tmp}", "--staged"],
    ["git", "{tmp}/missing", "--pre-push"],
    ["scan", "{tmp}/present.txt", "--rules", "{tmp}/missing.toml"],
])
def test_an_exit_2_error_is_one_line(cli: Any, tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "present.txt").write_text("nothing\n")
    proc = cli([a.format(tmp=tmp_path) for a in args], cwd=tmp_path,
               env={"GIT_CEILING_DIRECTORIES": str(tmp_path.parent)})
    assert proc.returncode == 2
    assert proc.err.count("\n") == 1 and proc.err.startswith("cendis-scan"), proc.err
    assert "finding" not in proc.err
