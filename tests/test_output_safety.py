"""Issue 7, class 1: no whole token ever leaves the tool, and names are content.

Tokens are planted where a hostile or careless user puts them: file and directory
names (plain and base64), git identities, ref names, commit messages, command-line
arguments, pre-push lines and stdin. Every command and format runs as the installed
CLI, and every byte it writes (stdout, stderr, report files) is searched for each
planted token and its base64 at all three alignments.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import run
from gitrepo import Repo

from scanner.scrub import scrub


def forms(token: str) -> list[bytes]:
    """The token and the part of its base64 (standard and URL-safe, three alignments)
    that depends on the token alone: none may appear in any output."""
    out = [token.encode()]
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + token.encode())
        core = enc[(0, 2, 3)[k] : (k + len(token)) * 8 // 6]
        out += [core, core.replace(b"+", b"-").replace(b"/", b"_")]
    return out


def assert_clean(tokens: list[str], *outputs: bytes, what: str = "") -> None:
    for data in outputs:
        for token in tokens:
            for form in forms(token):
                assert form not in data, f"{what}: a planted token (or its base64) leaked"


def test_every_command_and_format_leaks_no_planted_token(
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    name_t, dir_t, b64_t, ident_t, ref_t, msg_t, arg_t, body_t = (
        make_token() for _ in range(8))
    planted = [name_t, dir_t, b64_t, ident_t, ref_t, msg_t, arg_t, body_t]
    repo = Repo.make(tmp_path)
    repo.env = {**repo.env, "GIT_AUTHOR_EMAIL": f"{ident_t}@example.com",
                "GIT_COMMITTER_NAME": f"Bot {ident_t}"}
    b64_name = base64.urlsafe_b64encode(b"k" + b64_t.encode()).decode()
    repo.write(f"{name_t}.txt", f"K={body_t}\n")
    repo.write(f"d-{dir_t}/inner.cfg", "nothing here\n")
    repo.write(b64_name, "plain\n")
    repo.git("add", "-A")
    outputs: list[tuple[str, subprocess.CompletedProcess]] = []

    def go(label: str, args: list[str], *, input: bytes | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess:
        proc = run(args, cwd=cwd or repo.path, input=input, env=repo.env)
        assert "Traceback" not in proc.err, (label, proc.err)
        outputs.append((label, proc))
        return proc

    for fmt in ("text", "json", "sarif"):
        assert go(f"staged {fmt}", ["git", "--staged", "--format", fmt]).returncode == 1
    repo.commit(f"add things {msg_t}")
    repo.git("branch", f"leak-{ref_t}")
    report = tmp_path / "report.sarif"
    for fmt in ("text", "json", "sarif"):
        assert go(f"scan {fmt}", ["scan", ".", "--format", fmt]).returncode == 1
        assert go(f"git --all {fmt}", ["git", "--all", "--format", fmt]).returncode == 1
    go("scan -o", ["scan", ".", "--format", "sarif", "-o", str(report)])
    head = repo.head()
    zero = "0" * 40
    cases: list[tuple[str, list[str], bytes | None]] = [
        ("scan missing", ["scan", f"missing-{arg_t}"], None),
        ("scan stdin", ["scan", "-"], f"x={arg_t}\n".encode()),
        ("scan bad option", ["scan", f"--{arg_t}"], None),
        ("scan bad size", ["scan", "--max-decompressed", arg_t, "."], None),
        ("scan bad baseline", ["scan", "--baseline", f"b-{arg_t}.json", "."], None),
        ("git range", ["git", "--range", f"{arg_t}..HEAD"], None),
        ("git range form", ["git", "--range", arg_t], None),
        ("git since", ["git", "--since-commit", arg_t], None),
        ("git range ok", ["git", "--range", f"{head}~1..{head}", "--format", "json"], None),
        ("pre-push garbage", ["git", "--pre-push"], f"refs/heads/{arg_t} x y\n".encode()),
        ("pre-push new branch", ["git", "--pre-push"],
         f"refs/heads/leak-{ref_t} {head} refs/heads/leak-{ref_t} {zero}\n".encode()),
        ("git repo arg", ["git", f"/nowhere/{arg_t}"], None),
        ("redact", ["redact"], f"a {arg_t} b {body_t}\n".encode()),
        ("check-token arg", ["check-token", arg_t], None),
        ("check-token stdin", ["check-token"], arg_t.encode()),
        ("rules check", ["rules", "check", f"r-{arg_t}.toml"], None),
        ("rules list extra", ["rules", "list", f"r-{arg_t}.toml"], None),
        ("install-hook", ["install-hook", f"/nowhere/{arg_t}"], None),
        ("version", ["version", arg_t], None),
        ("unknown command", [arg_t], None),
        ("unknown option", [f"--{arg_t}"], None),
    ]
    for label, args, data in cases:
        proc = go(label, args, input=data)
        assert proc.returncode in (0, 1, 2), label
    for label, proc in outputs:
        assert_clean(planted, proc.stdout, proc.stderr, what=label)
    assert_clean(planted, report.read_bytes(), what="report file")
    # And what they said is about the planted tokens, not silence.
    scanned = dict(outputs)["scan json"]
    found = {f["redacted"] for f in json.loads(scanned.stdout)["findings"]}
    assert {scrub(t) for t in (name_t, dir_t, b64_t, body_t)} <= found


def test_names_are_content(scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    """A token in a file, directory, special-file or symlink name is a finding at that
    name (``location: "path"``), once, and the name is redacted in every path."""
    file_t, dir_t, empty_t, link_t, fifo_t, b64_t = (make_token() for _ in range(6))
    root = tmp_path / "tree"
    (root / f"conf-{dir_t}" / "sub").mkdir(parents=True)
    (root / f"conf-{dir_t}" / "sub" / "a.txt").write_text("a\n")
    (root / f"conf-{dir_t}" / "b.txt").write_text("b\n")
    (root / empty_t).mkdir()
    (root / f"{file_t}.env").write_text("nothing\n")
    (root / f"l-{link_t}").symlink_to(f"{file_t}.env")
    os.mkfifo(root / f"p-{fifo_t}")
    (root / base64.b64encode(b"ab" + b64_t.encode()).decode().rstrip("=")).write_text("x\n")
    status, report, proc = scan([str(root)])
    assert status == 1
    by_secret = {f["redacted"]: f for f in report["findings"]}
    for token in (file_t, dir_t, empty_t, link_t, fifo_t, b64_t):
        f = by_secret[scrub(token)]
        assert f["location"] == "path" and f["line"] is None
        assert scrub(token) in f["path"] or "[base64 of" in f["path"]
    assert len(report["findings"]) == 6  # the directory once, not once per file below
    assert by_secret[scrub(b64_t)]["encoding"] == "base64"
    assert_clean([file_t, dir_t, empty_t, link_t, fifo_t, b64_t], proc.stdout, proc.stderr)
    # A file given by its own name: the name is scanned too.
    status, report, proc = scan([str(root / f"{file_t}.env")])
    assert status == 1 and report["findings"][0]["location"] == "path"


def test_git_identities_and_paths_are_content(tmp_path: Path,
                                              make_token: Callable[[], str]) -> None:
    email_t, path_t, name_t = make_token(), make_token(), make_token()
    repo = Repo.make(tmp_path)
    repo.commit("clean start", **{"README": "hi\n"})
    repo.env = {**repo.env, "GIT_AUTHOR_EMAIL": f"{email_t}@example.com",
                "GIT_COMMITTER_EMAIL": f"{email_t}@example.com"}
    repo.write(f"keys/{path_t}.txt", "no content token\n")
    repo.git("add", "-A")
    status, staged, _ = repo.scan_json("git", "--staged")
    where = {(f["location"], f["redacted"]) for f in staged["findings"]}
    assert status == 1
    assert ("path", scrub(path_t)) in where
    assert {loc for loc, r in where if r == scrub(email_t)} & {"author", "committer"}
    repo.commit("add keys")
    repo.env = {**repo.env, "GIT_AUTHOR_NAME": f"Eve {name_t}"}
    repo.git("mv", f"keys/{path_t}.txt", f"keys/{path_t}.old")  # a rename adds nothing
    repo.commit("rename")
    _, history, _ = repo.scan_json("git", "--range", "HEAD~2..HEAD")
    found = {f["redacted"]: f for f in history["findings"]}
    assert found[scrub(path_t)]["location"] == "path"
    assert found[scrub(path_t)]["occurrences"] == 2
    assert found[scrub(email_t)]["location"] in ("author", "committer")
    assert found[scrub(name_t)]["location"] == "author"
    _, everything, _ = repo.scan_json("git", "--all")
    assert {scrub(email_t), scrub(name_t)} <= {f["redacted"] for f in everything["findings"]}
    status, last, _ = repo.scan_json("git", "--range", "HEAD~1..HEAD")
    assert status == 1 and scrub(path_t) not in {f["redacted"] for f in last["findings"]}
    for f in history["findings"]:
        assert f["author_email"] is None or email_t not in f["author_email"]


def test_paths_that_are_not_text_are_escaped_the_same_in_every_format(
        cli: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    root = tmp_path / "w"
    root.mkdir()
    names = {b"caf\xe9.env": "caf\\xe9.env", b"two\nlines.env": "two\\x0alines.env",
             b"red\x1b[31m.env": "red\\x1b[31m.env", b"tab\there.env": "tab\\x09here.env"}
    for raw in names:
        with open(os.path.join(os.fsencode(root), raw), "wb") as f:
            f.write(f"T={make_token()}\n".encode())
    reports = {fmt: cli(["scan", "w", "--format", fmt], cwd=tmp_path)
               for fmt in ("text", "json", "sarif")}
    for fmt, proc in reports.items():
        assert proc.returncode == 1 and "Traceback" not in proc.err, (fmt, proc.err)
        proc.stdout.decode("utf-8")  # valid UTF-8, whatever the names
    paths = sorted(f["path"] for f in json.loads(reports["json"].stdout)["findings"])
    assert paths == sorted(f"w/{shown}" for shown in names.values())
    text = reports["text"].stdout
    assert b"\x1b" not in text and b"two\nlines" not in text and b"\t" not in text
    assert text.count(b"fingerprint: ") == 4
    uris = sorted(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                  for r in json.loads(reports["sarif"].stdout)["runs"][0]["results"])
    assert uris == sorted(["w/caf%E9.env", "w/red%1B%5B31m.env", "w/tab%09here.env",
                           "w/two%0Alines.env"])
    # The JSON report is a baseline; the text fingerprints fit one line each of the
    # ignore file.
    (tmp_path / "base.json").write_bytes(reports["json"].stdout)
    assert cli(["scan", "w", "--baseline", "base.json"], cwd=tmp_path).returncode == 0
    lines = [ln.split(b"fingerprint: ", 1)[1] for ln in text.splitlines()
             if b"fingerprint: " in ln]
    (root / ".cendis-scan-ignore").write_bytes(b"\n".join(lines) + b"\n")
    proc = cli(["scan", "w"], cwd=tmp_path)
    assert proc.returncode == 0, proc.err


def test_ignore_entries_match_on_path_rule_and_hash(tmp_path: Path,
                                                    make_token: Callable[[], str]) -> None:
    """An entry written for a staged finding still silences the token once committed;
    an entry that names a commit silences that commit's finding only."""
    one, two = make_token(), make_token()
    repo = Repo.make(tmp_path)
    repo.write("app/settings.env", f"A={one}\n")
    repo.git("add", "-A")
    _, staged, _ = repo.scan_json("git", "--staged")
    [entry] = [f["fingerprint"] for f in staged["findings"]]
    repo.write(".cendis-scan-ignore", f"# a test fixture\n{entry}\n")
    repo.git("add", "-A")
    assert repo.scan("git", "--staged").returncode == 0
    first = repo.commit("fixture")
    assert repo.scan("git", "--all").returncode == 0
    assert repo.scan("git", "--range", f"{first}~0").returncode == 2  # not A..B
    assert repo.scan("scan", "app").returncode == 0
    repo.commit("second", **{"other.env": f"B={two}\n"})
    _, history, _ = repo.scan_json("git", "--all")
    [f] = history["findings"]
    assert f["fingerprint"].startswith(repo.head() + ":")
    with open(repo.path / ".cendis-scan-ignore", "a") as ignore:
        ignore.write(f["fingerprint"] + "\n")
    assert repo.scan("git", "--all").returncode == 0
    # The commit-specific entry does not silence the same token written elsewhere.
    repo.commit("copy", **{"third.env": f"C={two}\n"})
    assert repo.scan("git", "--range", "HEAD~1..HEAD").returncode == 1


def test_scrub_redacts_base64_tokens_and_is_idempotent(make_token: Callable[[], str]) -> None:
    token = make_token()
    for pad in (b"", b"a", b"ab"):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            text = f"user {enc(pad + token.encode()).decode()}@example.com\n\x1b[2J"
            once = scrub(text)
            assert scrub(once) == once
            assert_clean([token], once.encode())
            assert "\x1b" not in once and "\n" not in once
            assert f"[base64 of {scrub(token)}]" in once
