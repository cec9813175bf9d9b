"""``git --pre-push``: git's pre-push lines on stdin, or the pre-commit framework's
from/to refs in the environment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from gitrepo import Repo

ZERO = "0" * 40


@pytest.fixture
def pushed(tmp_path: Path) -> tuple[Repo, Repo]:
    """A clone whose main is pushed to a bare remote (so origin/main exists)."""
    remote = Repo.make(tmp_path, "remote.git", bare=True)
    repo = Repo.make(tmp_path)
    repo.commit("start", **{"README.md": "hello\n"})
    repo.git("remote", "add", "origin", str(remote.path))
    repo.git("push", "-q", "-u", "origin", "main")
    return repo, remote


def line(local_ref: str, local: str, remote_ref: str, remote: str) -> str:
    return f"{local_ref} {local} {remote_ref} {remote}\n"


def test_existing_branch_scans_remote_to_local(
        pushed: tuple[Repo, Repo], make_token: Callable[[], str]) -> None:
    repo, _ = pushed
    base = repo.head()
    leak = repo.commit("leak", **{"a.env": f"A={make_token()}\n"})
    tip = repo.commit("later", **{"b.txt": "b\n"})
    stdin = line("refs/heads/main", tip, "refs/heads/main", base)
    proc = repo.scan("git", "--pre-push", input=stdin)
    assert proc.returncode == 1
    assert f"{leak[:12]} a.env:1:3" in proc.out
    assert "push blocked" in proc.err and "git rebase -i" in proc.err
    clean = line("refs/heads/main", tip, "refs/heads/main", leak)
    assert repo.scan("git", "--pre-push", input=clean).returncode == 0


def test_new_branch_scans_commits_on_no_remote(
        pushed: tuple[Repo, Repo], make_token: Callable[[], str]) -> None:
    repo, _ = pushed
    old = make_token()
    repo.commit("token already on the remote", **{"old.env": f"O={old}\n"})
    repo.git("push", "-q", "origin", "main")
    repo.git("checkout", "-q", "-b", "topic")
    leak = repo.commit("leak", **{"new.env": f"N={make_token()}\n"})
    stdin = line("refs/heads/topic", leak, "refs/heads/topic", ZERO)
    status, report, _ = repo.scan_json("git", "--pre-push", input=stdin)
    assert status == 1
    assert [(f["commit"], f["path"]) for f in report["findings"]] == [(leak, "new.env")]


def test_every_line_is_scanned_and_deletions_scan_nothing(
        pushed: tuple[Repo, Repo], make_token: Callable[[], str]) -> None:
    repo, _ = pushed
    base = repo.head()
    repo.git("checkout", "-q", "-b", "clean")
    clean = repo.commit("clean", **{"c.txt": "c\n"})
    repo.git("checkout", "-q", "-b", "leaky", "main")
    leak = repo.commit("leak", **{"l.env": f"L={make_token()}\n"})
    stdin = (line("refs/heads/clean", clean, "refs/heads/clean", ZERO)
             + line("(delete)", ZERO, "refs/heads/gone", base)
             + line("refs/heads/leaky", leak, "refs/heads/leaky", ZERO))
    status, report, _ = repo.scan_json("git", "--pre-push", input=stdin)
    assert status == 1
    assert [f["commit"] for f in report["findings"]] == [leak]
    deletion = line("(delete)", ZERO, "refs/heads/leaky", leak)
    proc = repo.scan("git", "--pre-push", input=deletion)
    assert (proc.returncode, proc.out, proc.err) == (0, "", "")  # a hook is quiet when well
    by_hand = repo.scan("git", "--pre-push", input=b"")  # no refs at all: said
    assert by_hand.returncode == 0 and "no commits to scan" in by_hand.err


def test_remote_tip_unknown_here_falls_back_to_commits_on_no_remote(
        pushed: tuple[Repo, Repo], make_token: Callable[[], str]) -> None:
    repo, _ = pushed
    leak = repo.commit("leak", **{"a.env": f"A={make_token()}\n"})
    stdin = line("refs/heads/main", leak, "refs/heads/main", "1" * 40)
    status, report, _ = repo.scan_json("git", "--pre-push", input=stdin)
    assert status == 1 and report["findings"][0]["commit"] == leak


def test_pre_commit_framework_refs_from_the_environment(
        pushed: tuple[Repo, Repo], make_token: Callable[[], str]) -> None:
    repo, _ = pushed
    base = repo.head()
    leak = repo.commit("leak", **{"a.env": f"A={make_token()}\n"})
    env = {"PRE_COMMIT_FROM_REF": base, "PRE_COMMIT_TO_REF": leak}
    status, report, _ = repo.scan_json("git", "--pre-push", env=env)
    assert status == 1 and report["findings"][0]["commit"] == leak
    env = {"PRE_COMMIT_FROM_REF": leak, "PRE_COMMIT_TO_REF": leak}
    assert repo.scan("git", "--pre-push", env=env).returncode == 0


def test_malformed_pre_push_line_is_a_usage_error(pushed: tuple[Repo, Repo]) -> None:
    repo, _ = pushed
    proc = repo.scan("git", "--pre-push", input="not a pre-push line\n")
    assert proc.returncode == 2
    assert "expected lines of" in proc.err
