"""A repository owned by another user (a bind mount in the Docker image): git refuses it
("dubious ownership"), and so does the scanner, in one line that says how to trust it.
The scanner does not lift git's check by itself (it guards against running another
user's repository config); the Dockerfile's system-wide ``safe.directory``, run here
as written, and git's own environment settings do lift it."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CLI, ROOT, assert_no_leak, keep_output
from gitrepo import Repo

pytestmark = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="giving a repository to another user needs root")

NOBODY = 65534
MODES = [["git"], ["git", "--staged"], ["git", "--since-commit", "HEAD~1"]]


def _owned_by_nobody(tmp_path: Path, make_token: Callable[[], str]) -> Repo:
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"a.txt": "a\n"})
    repo.commit("two", **{"deploy.env": f"T={make_token()}\n"})
    repo.write("staged.env", f"S={make_token()}\n")
    repo.git("add", "staged.env")
    for root, dirs, files in os.walk(tmp_path / "repo"):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), NOBODY, NOBODY)
    os.lchown(tmp_path / "repo", NOBODY, NOBODY)
    return repo


def _scan(repo: Repo, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in {**os.environ, **repo.env, **env}.items() if v is not None}
    proc = subprocess.run([CLI, *args, str(repo.path)], capture_output=True, text=True,
                          env=full, stdin=subprocess.DEVNULL, timeout=120)
    keep_output((proc.stdout + proc.stderr).encode(), "cli")
    assert "Traceback" not in proc.stderr
    assert_no_leak(proc.stdout, proc.stderr)
    return proc


@pytest.mark.parametrize("mode", MODES, ids=" ".join)
def test_another_users_repository_is_one_line_that_says_how_to_trust_it(
        tmp_path: Path, make_token: Callable[[], str], mode: list[str]) -> None:
    repo = _owned_by_nobody(tmp_path, make_token)
    proc = _scan(repo, mode, {})
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert "dubious ownership" in line and "safe.directory" in line
    # Trusting another folder is not trusting this one.
    other = _scan(repo, mode, {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory",
                               "GIT_CONFIG_VALUE_0": str(tmp_path / "elsewhere")})
    assert other.returncode == 2


def _dockerfile_command() -> list[str]:
    """The Dockerfile's ``git config --system ... safe.directory`` command, as written."""
    text = (ROOT / "Dockerfile").read_text()
    found = re.search(r"^RUN (git config --system --add safe\.directory .+)$", text,
                      flags=re.MULTILINE)
    assert found, "the Dockerfile no longer trusts mounted repositories"
    return shlex.split(found.group(1))


@pytest.mark.parametrize("mode", MODES, ids=" ".join)
@pytest.mark.parametrize("how", ["dockerfile", "environment", "path"])
def test_a_trusted_repository_of_another_user_is_scanned(
        tmp_path: Path, make_token: Callable[[], str], mode: list[str], how: str) -> None:
    repo = _owned_by_nobody(tmp_path, make_token)
    if how == "dockerfile":  # the image's system config, made by the Dockerfile's command
        system = tmp_path / "gitconfig"
        env = {"GIT_CONFIG_SYSTEM": str(system)}
        subprocess.run(_dockerfile_command(), check=True, env={**os.environ, **env})
        env["GIT_CONFIG_NOSYSTEM"] = None  # type: ignore[assignment]
    else:
        value = "*" if how == "environment" else str(repo.path)
        env = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory",
               "GIT_CONFIG_VALUE_0": value}
    proc = _scan(repo, mode, env)
    assert proc.returncode == 1, proc.stderr
    expected = "staged.env" if "--staged" in mode else "deploy.env"
    assert expected in proc.stdout
