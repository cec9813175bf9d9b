"""Helpers for the sweep tests: real bare repositories served as file:// URLs, a config
file written the way an operator would, and the sweep run in-process (the library the
CLI calls) with a real SQLite incident store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from gitrepo import Repo

from scanner.rules import load as load_rules
from scanner.sweep.config import SweepConfig, load
from scanner.sweep.run import SweepReport, run_sweep
from scanner.sweep.sinks import LocalSink
from scanner.token import secret_sha256


class Origin:
    """A developer's work tree and the bare repository it pushes to (the "server")."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        self.bare = Repo.make(tmp_path, f"server/{name}.git", bare=True)
        self.work = Repo.make(tmp_path, f"work/{name}")
        self.work.git("remote", "add", "origin", str(self.bare.path))
        self.url = self.bare.path.as_uri()

    def commit(self, message: str, **files: str) -> str:
        return self.work.commit(message, **files)

    def push(self, *refs: str, force: bool = False) -> None:
        self.work.git("push", "-q", *(["--force"] if force else []), "origin",
                      *(refs or ("main",)))


def write_config(tmp_path: Path, repos: Sequence[str] = (), logs: Sequence[str] = (),
                 settings: str = "", repo_extra: str = "") -> Path:
    lines = ["[settings]", 'database = "incidents.db"', 'cache = "cache"', settings]
    for url in repos:
        lines += ["[[repo]]", f'url = "{url}"', repo_extra]
    for pattern in logs:
        lines += ["[[logs]]", f'paths = ["{pattern}"]']
    path = tmp_path / "sweep.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def sweep(config: Path | SweepConfig, **kw: object) -> SweepReport:
    """One sweep with a local store (no revocation unless a credential is given)."""
    conf = load(config) if isinstance(config, Path) else config
    api_url = kw.pop("api_url", None)
    credential = kw.pop("credential", None)
    sink = LocalSink(conf.database or "incidents.db", api_url=api_url,  # type: ignore[arg-type]
                     credential=credential)  # type: ignore[arg-type]
    try:
        return run_sweep(conf, sink, load_rules(), **kw)  # type: ignore[arg-type]
    finally:
        sink.close()


def by_name(report: SweepReport) -> dict[str, object]:
    return {s.name: s for s in report.sources}


def hashes(report: SweepReport, name: str | None = None) -> set[str]:
    return {f.secret_sha256 for s in report.sources if name in (None, s.name)
            for f in s.findings}


@pytest.fixture(autouse=True)
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Imported by each sweep test module: git sees no user or system configuration,
    and relative paths in configs resolve in the test's own folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.chdir(tmp_path)


def sha(token: str) -> str:
    return secret_sha256(token.encode())
