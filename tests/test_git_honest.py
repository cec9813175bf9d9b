"""Git scans that are complete and honest (issue 7, class 5): objects git cannot read
are errors, tags are scanned, a rename is not a new leak, the output does not depend on
the hash seed, an ignore entry holds from staging to push, hooks refuse what cannot
work. Real repositories, the installed CLI."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from gitrepo import Repo

ZERO = "0" * 40


def push_line(repo: Repo, ref: str, remote: str = ZERO) -> str:
    return f"{ref} {repo.git('rev-parse', ref)} {ref} {remote}\n"


def loose(repo: Repo, oid: str) -> Path:
    return repo.path / ".git" / "objects" / oid[:2] / oid[2:]


def damage(repo: Repo, oid: str, how: str) -> None:
    path = loose(repo, oid)
    path.chmod(0o644)
    if how == "delete":
        path.unlink()
    else:
        path.write_bytes(b"this is not zlib data\n")


# ------------------------------------------------------------- missing or corrupt objects


@pytest.fixture
def damaged_history(tmp_path: Path, make_token: Callable[[], str]) -> tuple[Repo, str, str]:
    """Two commits; the second adds a clean file whose blob is then damaged, and a
    token elsewhere that must still be reported."""
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"README.md": "hello\n"})
    repo.commit("two", **{"notes.txt": "nothing to see\n", "a.env": f"A={make_token()}\n"})
    return repo, repo.git("rev-parse", "HEAD:notes.txt"), repo.head()


@pytest.mark.parametrize("how", ["delete", "garble"])
@pytest.mark.parametrize("mode", ["--all", "--range", "--pre-push"])
def test_an_object_git_cannot_read_is_an_error_with_its_id(
        damaged_history: tuple[Repo, str, str], how: str, mode: str) -> None:
    repo, blob, tip = damaged_history
    damage(repo, blob, how)
    args = {"--all": ["--all"], "--range": ["--range", "HEAD~1..HEAD"],
            "--pre-push": ["--pre-push"]}[mode]
    stdin = push_line(repo, "refs/heads/main") if mode == "--pre-push" else None
    status, report, err = repo.scan_json("git", *args, input=stdin)
    assert status == 2, err
    assert f"error: object {blob}: missing or corrupt" in err
    assert err.count(blob) == 1, err  # once, however many steps noticed it
    assert [f["path"] for f in report["findings"]] == ["a.env"]  # the rest still counts
    assert report["findings"][0]["commit"] == tip


@pytest.mark.parametrize("how", ["delete", "garble"])
def test_a_staged_blob_git_cannot_read_is_an_error(tmp_path: Path, how: str) -> None:
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"README.md": "hello\n"})
    repo.write("new.txt", "staged\n")
    repo.git("add", "new.txt")
    blob = repo.git("rev-parse", ":new.txt")
    damage(repo, blob, how)
    proc = repo.scan("git", "--staged")
    assert proc.returncode == 2 and f"object {blob}: missing or corrupt" in proc.err


@pytest.mark.parametrize("what", ["old-blob", "tree", "after-gc"])
def test_missing_objects_of_a_clean_history_are_named(tmp_path: Path, what: str) -> None:
    """No token anywhere, so no walk maps blobs to commits: the check of what is
    reachable still names a missing blob of an older commit, a missing subtree, or a
    blob committed after ``git gc`` packed the rest (a packed history with loose
    objects on top is walked; only one closed pack with nothing beside it is not)."""
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"old.txt": "first\n", "dir__inner.txt": "x\n"})
    if what == "after-gc":
        repo.git("gc", "-q")
        repo.commit("later", **{"new.txt": "later\n"})
        oid = repo.git("rev-parse", "HEAD:new.txt")
    else:
        oid = repo.git("rev-parse", "HEAD:old.txt" if what == "old-blob" else "HEAD:dir")
    repo.commit("two", **{"old.txt": "second\n"})
    damage(repo, oid, "delete")
    proc = repo.scan("git")
    assert proc.returncode == 2
    assert oid in proc.err and "the scan is incomplete" in proc.err
    assert proc.err.count("\n") == 1  # the error alone: no summary after it


def test_one_closed_pack_is_not_walked_again(tmp_path: Path) -> None:
    """After ``git gc`` (one pack, nothing loose) a clean history scans clean, and a
    garbled loose object added later is still named."""
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"a.txt": "a\n"})
    repo.git("gc", "-q")
    assert repo.scan("git").returncode == 0
    repo.commit("two", **{"b.txt": "b\n"})
    oid = repo.git("rev-parse", "HEAD:b.txt")
    damage(repo, oid, "garble")
    proc = repo.scan("git")
    assert proc.returncode == 2 and oid in proc.err


# ------------------------------------------------------------------------------- tags


@pytest.fixture
def tagged(tmp_path: Path, make_token: Callable[[], str]) -> tuple[Repo, dict[str, str]]:
    """Tokens only in tags: an annotated tag's message, a tag of a tag, a blob tagged
    (annotated and lightweight), a tree tagged. No commit holds any of them."""
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"README.md": "hello\n"})
    tokens = {k: make_token() for k in ("message", "inner", "blob", "light", "tree")}
    repo.git("tag", "-a", "v1.0", "-m", f"release\n\ndeploy with {tokens['message']}\n")
    repo.git("tag", "-a", "inner", "-m", f"inner {tokens['inner']}")
    repo.git("tag", "-a", "outer", "inner", "-m", "a tag of a tag")
    repo.git("tag", "-d", "inner")
    blob = repo.git("hash-object", "-w", "--stdin", input=f"K={tokens['blob']}\n".encode())
    repo.git("tag", "-a", "blobtag", blob, "-m", "just a blob")
    light = repo.git("hash-object", "-w", "--stdin", input=f"K={tokens['light']}\n".encode())
    repo.git("tag", "lightblob", light)
    index = {**os.environ, **repo.env, "GIT_INDEX_FILE": str(tmp_path / "other-index")}
    tree_blob = repo.git("hash-object", "-w", "--stdin", input=f"T={tokens['tree']}\n".encode())
    import subprocess

    subprocess.run(["git", "update-index", "--add", "--cacheinfo",
                    f"100644,{tree_blob},conf/secret.env"], cwd=repo.path, env=index, check=True)
    tree = subprocess.run(["git", "write-tree"], cwd=repo.path, env=index, check=True,
                          capture_output=True, text=True).stdout.strip()
    repo.git("tag", "-a", "treetag", tree, "-m", "a tree")
    return repo, tokens


def test_all_scans_tag_messages_and_tagged_blobs_and_trees(
        tagged: tuple[Repo, dict[str, str]]) -> None:
    repo, tokens = tagged
    status, report, err = repo.scan_json("git", "--all")
    assert status == 1, err
    found = {f["redacted"]: f for f in report["findings"]}
    by = {k: found[f"{t[:15]}…{t[-2:]}"] for k, t in tokens.items()}
    assert by["message"]["location"] == "tag-message"
    assert by["message"]["commit"] == repo.git("rev-parse", "v1.0")  # the tag object
    assert by["message"]["note"].startswith("tag v1.0")
    assert by["message"]["author_email"] == "ada@example.com" and by["message"]["date"]
    assert by["message"]["line"] == 3
    assert by["inner"]["location"] == "tag-message" and by["inner"]["note"] == "tag inner"
    assert by["blob"]["path"] == "blobtag" and by["light"]["path"] == "lightblob"
    assert by["light"]["commit"] is None
    assert by["tree"]["path"] == "treetag:conf/secret.env"
    assert len(report["findings"]) == 5


def test_a_range_ending_at_a_tag_scans_its_message(tagged: tuple[Repo, dict[str, str]]) -> None:
    repo, tokens = tagged
    status, report, _ = repo.scan_json("git", "--range", "HEAD..v1.0")
    assert status == 1 and [f["location"] for f in report["findings"]] == ["tag-message"]
    status, report, _ = repo.scan_json("git", "--range", "v1.0..HEAD")  # the old side
    assert status == 0 and report["findings"] == []


@pytest.mark.parametrize("ref", ["v1.0", "outer", "blobtag", "lightblob", "treetag"])
def test_pushing_a_tag_that_holds_a_token_is_blocked(
        tagged: tuple[Repo, dict[str, str]], ref: str) -> None:
    repo, _ = tagged
    proc = repo.scan("git", "--pre-push", input=push_line(repo, f"refs/tags/{ref}"))
    assert proc.returncode == 1, proc.err
    assert "push blocked" in proc.err


def test_a_token_a_commit_already_had_is_not_new_in_the_tag(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    """The commit introduced it; a tag message repeating it is an occurrence."""
    repo = Repo.make(tmp_path)
    token = make_token()
    leak = repo.commit("leak", **{"a.env": f"A={token}\n"})
    repo.git("tag", "-a", "v2", "-m", f"we shipped {token}")
    status, report, _ = repo.scan_json("git", "--all")
    assert status == 1 and len(report["findings"]) == 1
    assert report["findings"][0]["commit"] == leak and report["findings"][0]["occurrences"] == 2


# -------------------------------------------------------------- renames are not new leaks


@pytest.fixture
def holder(tmp_path: Path, make_token: Callable[[], str]) -> tuple[Repo, str, str]:
    """A pushed history where config/app.env already holds a token."""
    remote = Repo.make(tmp_path, "remote.git", bare=True)
    repo = Repo.make(tmp_path)
    token = make_token()
    first = repo.commit("leak", **{"config__app.env": f"A={token}\n", "b.txt": "b\n"})
    repo.git("remote", "add", "origin", str(remote.path))
    repo.git("push", "-q", "-u", "origin", "main")
    return repo, token, first


@pytest.mark.parametrize("change", ["mv", "copy", "copy-and-edit-source", "mv-and-edit"])
def test_moving_a_token_already_there_is_not_new_in_any_mode(
        holder: tuple[Repo, str, str], change: str) -> None:
    repo, token, first = holder
    if change == "mv":
        repo.git("mv", "config", "settings")
    elif change == "copy":
        repo.write("backup/app.env", (repo.path / "config/app.env").read_text())
    elif change == "copy-and-edit-source":
        repo.write("settings.env", (repo.path / "config/app.env").read_text() + "C=3\n")
        repo.write("config/app.env", f"# old\nA={token}\n")
    else:
        repo.git("mv", "config/app.env", "app.env")
        repo.write("app.env", f"# moved\nA={token}\nB=2\n")
    repo.git("add", "-A")
    assert repo.scan("git", "--staged").returncode == 0
    base = repo.head()
    repo.commit(change)
    assert repo.scan("git", "--range", f"{base}..HEAD").returncode == 0
    line = push_line(repo, "refs/heads/main", base)
    assert repo.scan("git", "--pre-push", input=line).returncode == 0
    status, report, _ = repo.scan_json("git", "--all")
    assert status == 1 and len(report["findings"]) == 1
    assert report["findings"][0]["commit"] == first
    # Every place that wrote it: the first commit, the copy (and the edited source).
    assert report["findings"][0]["occurrences"] == (3 if change == "copy-and-edit-source" else 2)


def test_a_new_token_beside_a_renamed_one_is_still_new(
        holder: tuple[Repo, str, str], make_token: Callable[[], str]) -> None:
    repo, _, _ = holder
    repo.git("mv", "config/app.env", "app.env")
    fresh = make_token()
    (repo.path / "app.env").write_text((repo.path / "app.env").read_text() + f"B={fresh}\n")
    repo.git("add", "-A")
    status, report, _ = repo.scan_json("git", "--staged")
    assert status == 1
    assert [f["redacted"] for f in report["findings"]] == [f"{fresh[:15]}…{fresh[-2:]}"]


def test_a_token_removed_then_added_back_is_new_again_in_a_range(
        holder: tuple[Repo, str, str]) -> None:
    """The parent no longer has it: adding it back is a new leak."""
    repo, token, _ = holder
    base = repo.commit("remove", **{"config__app.env": "A=from-env\n"})
    back = repo.commit("put back", **{"other.env": f"A={token}\n"})
    status, report, _ = repo.scan_json("git", "--range", f"{base}..HEAD")
    assert status == 1 and report["findings"][0]["commit"] == back


# ------------------------------------------------------------------------ determinism


def test_output_does_not_depend_on_the_hash_seed(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    repo.commit("one", **{"README.md": "hello\n"})
    tokens = [make_token() for _ in range(4)]
    body = "".join(f"K{i}={t}\n" for i, t in enumerate(tokens))
    repo.write("many.env", body)
    repo.git("add", "-A")
    runs: dict[str, set[str]] = {}
    modes = (["--staged"], ["--all"], ["--range", "HEAD~1..HEAD"])
    for args in modes:
        if args == ["--all"]:
            repo.commit(f"many\n\n{tokens[1]} and {tokens[0]}")
        for seed in ("0", "1", "2"):
            _, report, _ = repo.scan_json("git", *args, env={"PYTHONHASHSEED": seed})
            order = [(f["path"], f["line"], f["redacted"]) for f in report["findings"]]
            runs.setdefault(" ".join(args), set()).add(json.dumps(order))
    for mode, seen in runs.items():
        assert len(seen) == 1, mode
    lines = [line for _, line, _ in json.loads(next(iter(runs["--staged"])))]
    assert lines == [1, 2, 3, 4]


# ----------------------------------------------------------- ignore entries and hooks


def test_an_ignore_entry_for_a_staged_finding_holds_through_commit_and_push(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    remote = Repo.make(tmp_path, "remote.git", bare=True)
    repo = Repo.make(tmp_path)
    base = repo.commit("one", **{"README.md": "hello\n"})
    repo.git("remote", "add", "origin", str(remote.path))
    repo.git("push", "-q", "-u", "origin", "main")
    repo.write("tests/fixture.env", f"A={make_token()}\n")
    repo.git("add", "-A")
    status, report, _ = repo.scan_json("git", "--staged")
    assert status == 1
    entry = report["findings"][0]["fingerprint"]
    assert entry.startswith("tests/fixture.env:")  # no commit yet
    repo.write(".cendis-scan-ignore", f"# a test fixture\n{entry}\n")
    repo.git("add", "-A")
    assert repo.scan("git", "--staged").returncode == 0
    repo.commit("fixture")
    assert repo.scan("git", "--pre-push", input=push_line(repo, "refs/heads/main", base)
                     ).returncode == 0
    status, report, _ = repo.scan_json("git", "--all")
    assert status == 0 and report["findings"] == []


def test_an_ignore_entry_matches_path_rule_and_hash_not_the_hash_alone(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    repo.commit("leak", **{"a.env": f"A={make_token()}\n"})
    _, report, _ = repo.scan_json("git", "--all")
    base = report["findings"][0]["fingerprint"].split(":", 1)[1]
    assert base.startswith("a.env:")
    repo.write(".cendis-scan-ignore", "b.env:" + base.split(":", 1)[1] + "\n")
    assert repo.scan("git", "--all").returncode == 1
    repo.write(".cendis-scan-ignore", base + "\n")
    assert repo.scan("git", "--all").returncode == 0


def test_a_commit_specific_ignore_entry_still_works(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    repo.commit("leak", **{"a.env": f"A={make_token()}\n"})
    _, report, _ = repo.scan_json("git", "--all")
    repo.write(".cendis-scan-ignore", report["findings"][0]["fingerprint"] + "\n")
    status, report, _ = repo.scan_json("git", "--all")
    assert status == 0 and report["findings"] == []


def test_install_hook_refuses_a_bare_repository(tmp_path: Path) -> None:
    bare = Repo.make(tmp_path, "bare.git", bare=True)
    for args in ([], ["--pre-push"]):
        proc = bare.scan("install-hook", *args)
        assert proc.returncode == 2
        assert "bare repository" in proc.err and proc.err.count("\n") == 1
    assert not any((bare.path / "hooks").glob("pre-*[!e]")), "no hook written"
    assert not (bare.path / "hooks" / "pre-commit").exists()
    assert not (bare.path / "hooks" / "pre-push").exists()


def test_pre_push_without_refs_says_nothing_was_scanned(tmp_path: Path,
                                                        make_token: Callable[[], str]) -> None:
    repo = Repo.make(tmp_path)
    repo.commit("leak", **{"a.env": f"A={make_token()}\n"})
    # As the pre-commit framework runs it with no --from-ref/--to-ref: stdin not read.
    proc = repo.scan("git", "--pre-push", env={"PRE_COMMIT": "1"}, input="ignored\n")
    assert proc.returncode == 2
    assert "nothing was scanned" in proc.err and "--from-ref" in proc.err
    # git's own hook with no lines (a push of deletions only): says so, exit 0.
    proc = repo.scan("git", "--pre-push", input="")
    assert proc.returncode == 0 and "nothing was scanned" in proc.err
