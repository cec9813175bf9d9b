"""Real git repositories for the git tests, built with git itself in a temp folder.

Every git (and every ``cendis-scan`` run against a repository) gets the same isolated
environment: HOME in the temp folder, no system config, fixed author and committer,
and a clock that ticks one minute per commit, so commit ids and the order of history
are the same on every run.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from conftest import assert_no_leak, run

START = 1_700_000_000  # 2023-11-14T22:13:20Z


def isolated_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Ada Lovelace",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada Lovelace",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
        "GIT_TERMINAL_PROMPT": "0",
    }


class Repo:
    """A repository and the environment to run git and the scanner in it."""

    def __init__(self, path: Path, env: dict[str, str], *, bare: bool = False,
                 init: bool = True):
        self.path = path
        self.env = env
        self.clock = [START]
        if init:
            path.mkdir(parents=True, exist_ok=True)
            self.git("-c", "init.defaultBranch=main", "init", "-q", *(["--bare"] if bare else []))

    @classmethod
    def make(cls, tmp_path: Path, name: str = "repo", **kw: Any) -> Repo:
        return cls(tmp_path / name, isolated_env(tmp_path / "home"), **kw)

    def _env(self) -> dict[str, str]:
        when = f"@{self.clock[0]} +0000"
        return {**os.environ, **self.env, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}

    def git(self, *args: str, input: bytes | None = None, check: bool = True,
            cwd: Path | None = None) -> str:
        proc = subprocess.run(["git", *args], cwd=cwd or self.path, env=self._env(),
                              input=input, capture_output=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)}: {proc.stderr.decode()}")
        return proc.stdout.decode("utf-8", "replace").strip()

    def write(self, name: str | bytes, content: str | bytes) -> Path:
        path = Path(os.fsdecode(self.path)) / os.fsdecode(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def commit(self, message: str, **files: str | bytes) -> str:
        """Write ``files`` (name=content), stage everything, commit; return the id."""
        for name, content in files.items():
            self.write(name.replace("__", "/"), content)
        self.git("add", "-A")
        self.clock[0] += 60
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def date(self, commit: str) -> str:
        return self.git("show", "-s", "--format=%aI", commit)

    def scan(self, *args: str, input: bytes | str | None = None,
             env: dict[str, str] | None = None, cwd: Path | None = None
             ) -> subprocess.CompletedProcess:
        """The installed CLI in this repository; no output may hold a whole token."""
        proc = run(list(args), cwd=cwd or self.path, input=input,
                   env={**self.env, **(env or {})})
        assert "Traceback" not in proc.err, proc.err
        assert_no_leak(proc.stdout, proc.stderr)
        return proc

    def scan_json(self, *args: str, **kw: Any) -> tuple[int, dict[str, Any], str]:
        import json

        proc = self.scan(*args, "--format", "json", **kw)
        return proc.returncode, json.loads(proc.stdout), proc.err
