"""``install-hook --global``/``--template`` and ``uninstall-hook``, through the real CLI
and real git, with HOME, XDG_CONFIG_HOME and GIT_CONFIG_GLOBAL in a temp folder (never
the real user's configuration)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import assert_no_leak, run
from gitrepo import Repo, isolated_env


def machine(tmp_path: Path) -> dict[str, str]:
    env = isolated_env(tmp_path / "home")
    env["GIT_CONFIG_GLOBAL"] = str(tmp_path / "home" / ".gitconfig")
    return env


def cli(env: dict[str, str], *args: str, cwd: Path | None = None
        ) -> subprocess.CompletedProcess:
    proc = run(list(args), env=env, cwd=cwd)
    assert "Traceback" not in proc.err, proc.err
    assert_no_leak(proc.stdout, proc.stderr)
    return proc


def global_config(env: dict[str, str], key: str) -> list[str]:
    proc = subprocess.run(["git", "config", "--global", "--get-all", key],
                          env={**os.environ, **env}, capture_output=True, text=True)
    return proc.stdout.split()


def git_commit(repo: Repo, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "commit", "-q", "-m", "change", *extra], cwd=repo.path,
                          env={**os.environ, **repo.env}, capture_output=True, text=True)


def marker_hook(path: Path, marker: Path, status: int = 0, stdin: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    read = f'cat >> "{marker}"\n' if stdin else ""
    path.write_text(f'#!/bin/sh\necho "ran $(basename "$0") $*" >> "{marker}"\n{read}'
                    f"exit {status}\n")
    path.chmod(0o755)


def test_global_blocks_a_token_and_passes_a_clean_commit(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    env = machine(tmp_path)
    proc = cli(env, "install-hook", "--global")
    assert proc.returncode == 0, proc.err
    hooks = tmp_path / "home" / ".config" / "cendis-scan" / "hooks"
    assert global_config(env, "core.hooksPath") == [str(hooks)]
    assert "set git config --global core.hooksPath" in proc.err
    repo = Repo(tmp_path / "fresh", env)  # a new clone: nothing installed in it
    repo.write("app.py", "print('hi')\n")
    repo.git("add", "-A")
    assert git_commit(repo).returncode == 0
    token = make_token()
    repo.write("deploy.env", f"CENDIS_TOKEN={token}\n")
    repo.git("add", "deploy.env")
    blocked = git_commit(repo)
    assert blocked.returncode != 0
    assert "commit blocked" in blocked.stderr and token not in blocked.stdout + blocked.stderr
    assert repo.git("rev-list", "--count", "HEAD") == "1"


def test_global_is_idempotent_and_says_so(tmp_path: Path) -> None:
    env = machine(tmp_path)
    assert cli(env, "install-hook", "--global").returncode == 0
    again = cli(env, "install-hook", "--global")
    assert again.returncode == 0 and "nothing to change" in again.err
    assert cli(env, "uninstall-hook", "--global").returncode == 0
    again = cli(env, "uninstall-hook", "--global")
    assert again.returncode == 0 and "nothing to change" in again.err


@pytest.mark.parametrize("status", [0, 1])
def test_the_repositorys_own_pre_commit_still_runs_and_can_block(
        tmp_path: Path, status: int) -> None:
    env = machine(tmp_path)
    repo = Repo(tmp_path / "repo", env)
    marker = tmp_path / "marker"
    marker_hook(repo.path / ".git" / "hooks" / "pre-commit", marker, status)
    marker_hook(repo.path / ".git" / "hooks" / "commit-msg", marker)
    assert cli(env, "install-hook", "--global").returncode == 0
    repo.write("a.txt", "a\n")
    repo.git("add", "-A")
    proc = git_commit(repo)
    assert (proc.returncode == 0) == (status == 0)
    ran = marker.read_text()
    assert "ran pre-commit" in ran
    assert ("ran commit-msg .git/COMMIT_EDITMSG" in ran) == (status == 0)  # args kept


def test_pre_push_gets_stdin_and_args_chained(tmp_path: Path,
                                              make_token: Callable[[], str]) -> None:
    env = machine(tmp_path)
    remote = Repo(tmp_path / "remote.git", env, bare=True)
    repo = Repo(tmp_path / "repo", env)
    repo.commit("one", **{"a.txt": "a\n"})
    repo.git("remote", "add", "origin", str(remote.path))
    marker = tmp_path / "marker"
    marker_hook(repo.path / ".git" / "hooks" / "pre-push", marker, stdin=True)
    assert cli(env, "install-hook", "--global").returncode == 0
    head = repo.head()
    repo.git("push", "-q", "origin", "main")
    ran = marker.read_text()
    assert f"ran pre-push origin {remote.path}" in ran
    assert f"refs/heads/main {head} refs/heads/main" in ran  # the refs, on stdin
    repo.write("b.env", f"B={make_token()}\n")
    repo.git("add", "-A")
    repo.git("commit", "-q", "--no-verify", "-m", "leak")  # past pre-commit, on to the push
    proc = subprocess.run(["git", "push", "-q", "origin", "main"], cwd=repo.path,
                          env={**os.environ, **env}, capture_output=True, text=True)
    assert proc.returncode != 0 and "push blocked" in proc.stderr
    assert remote.git("rev-parse", "main") == head


def test_the_pre_commit_frameworks_hook_still_runs(tmp_path: Path) -> None:
    env = machine(tmp_path)
    env["PRE_COMMIT_HOME"] = str(tmp_path / "pre-commit-home")
    repo = Repo(tmp_path / "repo", env)
    marker = tmp_path / "marker"
    repo.write(".pre-commit-config.yaml",
               "repos:\n- repo: local\n  hooks:\n  - id: mark\n    name: mark\n"
               f"    entry: sh -c 'echo framework >> {marker}'\n    language: system\n"
               "    pass_filenames: false\n")
    install = subprocess.run([sys.executable, "-m", "pre_commit", "install"], cwd=repo.path,
                             env={**os.environ, **env}, capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    assert cli(env, "install-hook", "--global").returncode == 0
    repo.git("add", "-A")
    proc = git_commit(repo)
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text() == "framework\n"


def test_a_repository_core_hooks_path_wins_and_doctor_says_so(tmp_path: Path) -> None:
    """husky: the repository's own core.hooksPath (.husky/_) overrides the global one,
    as git's config precedence says; its hooks run, and doctor reports the gap."""
    env = machine(tmp_path)
    repo = Repo(tmp_path / "repo", env)
    marker = tmp_path / "marker"
    marker_hook(repo.path / ".husky" / "_" / "pre-commit", marker)
    repo.git("config", "core.hooksPath", ".husky/_")
    assert cli(env, "install-hook", "--global").returncode == 0
    repo.write("a.txt", "a\n")
    repo.git("add", "-A")
    assert git_commit(repo).returncode == 0
    assert "ran pre-commit" in marker.read_text()
    doctor = cli(env, "doctor", cwd=repo.path)
    assert doctor.returncode == 1
    assert "overrides the global hooks" in doctor.out and ".husky/pre-commit" in doctor.out
    (repo.path / ".husky" / "pre-commit").write_text("cendis-scan git --staged\n")
    (repo.path / ".husky" / "_" / "pre-commit").write_text('#!/bin/sh\n. "$(dirname "$0")/h"\n')
    assert "fail  hooks.repository" not in cli(env, "doctor", cwd=repo.path).out


@pytest.mark.parametrize("previous", [None, "/opt/company-hooks", "~/my hooks"])
def test_uninstall_restores_the_previous_global_hooks_path(
        tmp_path: Path, previous: str | None) -> None:
    env = machine(tmp_path)
    config = Path(env["GIT_CONFIG_GLOBAL"])
    config.write_text("[user]\n\tname = Ada\n")
    if previous:
        subprocess.run(["git", "config", "--global", "core.hooksPath", previous],
                       env={**os.environ, **env}, check=True)
    before = config.read_text()
    proc = cli(env, "install-hook", "--global")
    assert proc.returncode == 0
    if previous:
        assert f"was {previous}" in proc.err
        shim = (tmp_path / "home/.config/cendis-scan/hooks/pre-commit").read_text()
        assert os.path.expanduser(previous).replace(  # ~ expanded for the shim
            "~", str(tmp_path / "home")) in shim or previous.startswith("~")
    undo = cli(env, "uninstall-hook", "--global")
    assert undo.returncode == 0
    assert global_config(env, "core.hooksPath") == (previous.split() if previous else [])
    assert config.read_text() == before
    assert not (tmp_path / "home/.config/cendis-scan/hooks").exists()


def test_the_previous_global_hooks_still_run(tmp_path: Path) -> None:
    env = machine(tmp_path)
    company = tmp_path / "company-hooks"
    marker = tmp_path / "marker"
    marker_hook(company / "pre-commit", marker)
    subprocess.run(["git", "config", "--global", "core.hooksPath", str(company)],
                   env={**os.environ, **env}, check=True)
    assert cli(env, "install-hook", "--global").returncode == 0
    repo = Repo(tmp_path / "repo", env)
    repo.write("a.txt", "a\n")
    repo.git("add", "-A")
    assert git_commit(repo).returncode == 0
    assert "ran pre-commit" in marker.read_text()


@pytest.mark.parametrize("existing", [False, True])
def test_template_gives_new_repositories_the_hooks(
        tmp_path: Path, existing: bool, make_token: Callable[[], str]) -> None:
    env = machine(tmp_path)
    marker = tmp_path / "marker"
    template = tmp_path / "their-template"
    if existing:
        marker_hook(template / "hooks" / "pre-commit", marker)
        subprocess.run(["git", "config", "--global", "init.templateDir", str(template)],
                       env={**os.environ, **env}, check=True)
    proc = cli(env, "install-hook", "--template")
    assert proc.returncode == 0, proc.err
    assert "nothing to change" in cli(env, "install-hook", "--template").err
    repo = Repo(tmp_path / "new", env)
    assert "git --staged" in (repo.path / ".git" / "hooks" / "pre-commit").read_text()
    repo.write("leak.env", f"T={make_token()}\n")
    repo.git("add", "-A")
    assert git_commit(repo).returncode != 0
    repo.write("leak.env", "T=\n")
    repo.git("add", "-A")
    assert git_commit(repo).returncode == 0
    assert marker.exists() == existing
    assert cli(env, "uninstall-hook", "--template").returncode == 0
    if existing:
        assert global_config(env, "init.templateDir") == [str(template)]
        assert "echo" in (template / "hooks" / "pre-commit").read_text()
        assert not (template / "hooks" / "pre-commit.before-cendis-scan").exists()
    else:
        assert global_config(env, "init.templateDir") == []
    assert "nothing to change" in cli(env, "uninstall-hook", "--template").err


def test_per_repository_install_and_uninstall_still_work(tmp_path: Path) -> None:
    env = machine(tmp_path)
    repo = Repo(tmp_path / "repo", env)
    hook = repo.path / ".git" / "hooks" / "pre-commit"
    assert cli(env, "install-hook", cwd=repo.path).returncode == 0
    assert hook.exists()
    proc = cli(env, "uninstall-hook", cwd=repo.path)
    assert proc.returncode == 0 and "removed" in proc.err and not hook.exists()
    assert "nothing to change" in cli(env, "uninstall-hook", cwd=repo.path).err
    hook.write_text("#!/bin/sh\nexit 0\n")  # someone else's: never removed
    assert "nothing to change" in cli(env, "uninstall-hook", cwd=repo.path).err
    assert hook.exists()
    # With the global hooks on, a per-repository install never overwrites them.
    assert cli(env, "install-hook", "--global").returncode == 0
    hook.unlink()
    assert cli(env, "install-hook", cwd=repo.path).returncode == 0
    assert hook.exists()
    shim = tmp_path / "home/.config/cendis-scan/hooks/pre-commit"
    assert "machine hook" in shim.read_text()


@pytest.mark.parametrize("args", [["--global", "--template"], ["--global", "somewhere"],
                                  ["--template", "--pre-push"]])
def test_usage_errors(tmp_path: Path, args: list[str]) -> None:
    env = machine(tmp_path)
    for command in ("install-hook", "uninstall-hook"):
        proc = cli(env, command, *args)
        assert proc.returncode == 2 and proc.err.count("\n") == 1, proc.err
