"""Sweeps against the hostile findings after issue 14, through the installed CLI on real
log files, real file:// repositories and real SQLite files: a token in a ``name`` or a
``[[logs]]`` glob (shown scrubbed, never in a cache file name), repository URLs hiding
a token behind zero-width characters, quoted-printable or fullwidth forms, ``--report-to``
URLs holding a token or malformed, a logs state file that is a FIFO, a link to a device
or huge, a logs state from a newer version, and FIFOs and devices matched by a glob."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import assert_no_leak, run
from privacy import Needles
from sweeptools import Origin, isolated_git, sha, write_config  # noqa: F401 - the autouse fixture

REPORT_TOKEN = "report-token-for-tests-0123456789"
PREFIX = "cendis_pat_"


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"HOME": str(tmp_path / "home"), "GIT_CONFIG_NOSYSTEM": "1",
           "CENDIS_SCAN_REPORT_TOKEN": REPORT_TOKEN}
    proc = run(["sweep", *args], cwd=tmp_path, env=env, timeout=60)
    assert_no_leak(proc.stdout, proc.stderr)
    assert b"Traceback" not in proc.stderr and b"internal" not in proc.stderr, proc.err
    return proc


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and proc.stdout == b"", proc.err  # type: ignore[attr-defined]
    line: str = proc.err.strip()  # type: ignore[attr-defined]
    assert line and "\n" not in line, line
    return line


def nothing_of(token: str, *outputs: bytes | str) -> None:
    """No output holds the token whole, base64-encoded or percent-encoded, nor a run of
    20 characters of its body (a file name that kept the body after a changed prefix)."""
    needles = Needles([token])
    for out in outputs:
        data = out if isinstance(out, str) else out.decode("utf-8", "surrogateescape")
        assert needles.find(data) is None, needles.find(data)
        assert token[len(PREFIX):][:20] not in data


def cache_names_and_configs(tmp_path: Path) -> str:
    """Every path under the cache, and every mirror's git config."""
    parts = []
    for root, dirs, files in os.walk(tmp_path / "cache"):
        parts += [os.path.join(root, n) for n in (*dirs, *files)]
        if "config" in files and root.endswith(".git"):
            parts.append(Path(root, "config").read_text())
    return "\n".join(parts)


# -- A2: a token in a source's name or glob ----------------------------------------------

NAMES = {
    "plain": "{token}",
    "embedded": "svc-{token}-prod",
    "base64": "{b64}",
    "with-escape": "\\u001b[31m{token}",
}


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.parametrize("variant", sorted(NAMES))
def test_a_token_in_a_repository_name_is_scrubbed_everywhere(
        tmp_path: Path, make_token: Callable[[], str], variant: str, fmt: str) -> None:
    token, inside = make_token(), make_token()
    origin = Origin(tmp_path, "app")
    origin.commit("leak", **{"a.env": f"A={inside}\n"})
    origin.push()
    name = NAMES[variant].format(token=token,
                                 b64=base64.b64encode(token.encode()).decode())
    config = write_config(tmp_path, [origin.url], repo_extra=f'name = "{name}"')

    proc = cli(tmp_path, str(config), "--format", fmt)
    assert proc.returncode == 1, proc.err  # type: ignore[attr-defined]
    nothing_of(token, proc.stdout, proc.stderr)
    if fmt == "json":
        (row,) = json.loads(proc.stdout)["sources"]
        assert row["name"] and "\x1b" not in row["name"]
        assert [f["secret_sha256"] for f in row["findings"]] == [sha(inside)]
    nothing_of(token, cache_names_and_configs(tmp_path))
    mirrors = list((tmp_path / "cache").glob("*.git"))
    assert len(mirrors) == 1 and mirrors[0].name.startswith("repo-")
    assert mirrors[0].with_suffix(".lock").exists()
    nothing_of(token, (tmp_path / "incidents.db").read_bytes().decode("latin-1"))
    # The next sweep finds the same mirror: nothing new, no second mirror.
    proc = cli(tmp_path, str(config), "--format", "json")
    assert proc.returncode == 0 and len(list((tmp_path / "cache").glob("*.git"))) == 1


GLOBS = {
    "prefix": "logs/{token}*.log",
    "folder": "logs/{token}/*.log",
    "base64": "logs/{b64}*.log",
    "no-match": "missing/{token}-*.log",
}


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.parametrize("variant", sorted(GLOBS))
def test_a_token_in_a_logs_glob_is_scrubbed(tmp_path: Path, make_token: Callable[[], str],
                                            variant: str, fmt: str) -> None:
    token = make_token()
    b64 = base64.b64encode(token.encode()).decode().rstrip("=")
    pattern = GLOBS[variant].format(token=token, b64=b64)
    (tmp_path / "logs").mkdir()
    if variant == "folder":
        (tmp_path / "logs" / token).mkdir()
    if variant != "no-match":
        (tmp_path / pattern.replace("*", "app")).write_text("quiet line\n")
    config = write_config(tmp_path, logs=[pattern])

    proc = cli(tmp_path, str(config), "--format", fmt)
    nothing_of(token, proc.stdout, proc.stderr)
    if fmt == "json":
        (row,) = json.loads(proc.stdout)["sources"]
        assert row["name"].endswith(".log") and "…" in row["name"]
    nothing_of(token, cache_names_and_configs(tmp_path))


HIDDEN_URLS = {
    "zwsp-after-prefix": "https://example.com/{prefix}\u200b{body}/app.git",
    "zwsp-in-body": "https://example.com/{prefix}{body1}\u200b{body2}/app.git",
    "zwsp-percent": "https://example.com/{prefix}%E2%80%8B{body}/app.git",
    "bom-in-user": "https://{prefix}\ufeff{body}@example.com/app.git",
    "soft-hyphen": "https://example.com/app.git?k={prefix}\u00ad{body}",
    "quoted-printable": "https://example.com/cendis=5Fpat=5F{body}/app.git",
    "quoted-printable-file": "file:///srv/cendis=5Fpat=5F{body}.git",
    "fullwidth": "https://example.com/{fullwidth}/app.git",
}


@pytest.mark.parametrize("variant", sorted(HIDDEN_URLS))
def test_a_token_hidden_in_a_repository_url_is_refused(
        tmp_path: Path, make_token: Callable[[], str], variant: str) -> None:
    token = make_token()
    body = token[len(PREFIX):]
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in token)
    url = HIDDEN_URLS[variant].format(prefix=PREFIX, body=body, body1=body[:18],
                                      body2=body[18:], fullwidth=fullwidth)
    config = write_config(tmp_path, [url])
    line = one_line(cli(tmp_path, str(config)))
    assert "repo[1].url holds" in line
    nothing_of(token, line)
    assert not (tmp_path / "cache").exists()  # no mirror, no git config written


@pytest.mark.parametrize("char", ["\u200b", "\u200d", "\u2060", "\ufeff", "\u00ad"])
def test_invisible_characters_in_a_repository_url_are_refused(tmp_path: Path,
                                                              char: str) -> None:
    config = write_config(tmp_path, [f"https://example.com/ac{char}me/app.git"])
    line = one_line(cli(tmp_path, str(config)))
    assert "invisible" in line
    assert not (tmp_path / "cache").exists()


# -- A3, C5: --report-to checked before sweeping -----------------------------------------

REPORT_URLS = {
    "query-token": ("http://127.0.0.1:9/v1/findings?k={token}", "holds a token"),
    "path-token": ("http://127.0.0.1:9/{token}/v1/findings", "holds a token"),
    "percent-token": ("http://127.0.0.1:9/%63endis%5Fpat_{body}", "holds a token"),
    "base64-token": ("http://127.0.0.1:9/x/{b64}", "holds a token"),
    "userinfo-token": ("http://u:{token}@127.0.0.1:9/v1/findings", "holds a token"),
    "user-token": ("http://{token}@127.0.0.1:9/v1/findings", "holds a token"),
    "zwsp-token": ("http://127.0.0.1:9/{prefix}\u200b{body}", "holds a token"),
    "userinfo-plain": ("http://u:secret@127.0.0.1:9/v1/findings", "user name or password"),
    "bad-ipv6": ("http://[::1", "not a valid URL"),
    "bad-ipv6-host": ("http://[::1]x:80/", "not a valid URL"),
    "bad-port": ("http://127.0.0.1:99999/", "not a valid URL"),
    "no-host": ("http:///v1/findings", "names no host"),
    "only-scheme": ("http://", "names no host"),
    "ftp": ("ftp://127.0.0.1/v1/findings", "http:// or https://"),
    "file": ("file:///tmp/x", "http:// or https://"),
    "no-scheme": ("127.0.0.1:8080", "http:// or https://"),
    "query": ("http://127.0.0.1:9/?a=b", "query or fragment"),
}


@pytest.mark.parametrize("variant", sorted(REPORT_URLS))
def test_a_bad_report_to_url_is_one_line_before_sweeping(
        tmp_path: Path, make_token: Callable[[], str], variant: str) -> None:
    token = make_token()
    template, words = REPORT_URLS[variant]
    url = template.format(token=token, prefix=PREFIX, body=token[len(PREFIX):],
                          b64=base64.b64encode(token.encode()).decode().rstrip("="))
    (tmp_path / "a.log").write_text(f"auth {make_token()}\n")
    config = write_config(tmp_path, logs=["a.log"])
    line = one_line(cli(tmp_path, str(config), "--report-to", url))  # a hang: cli's timeout
    assert "bad --report-to URL" in line and words in line, line
    assert "internal" not in line and "Name or service" not in line
    nothing_of(token, line)
    assert "secret" not in line
    assert not (tmp_path / "cache").exists()  # refused before any sweep


# -- B2, D8: a logs state that is no regular file, too large, or from a newer version ----

def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _zero_link(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _urandom_link(path: Path) -> None:
    path.symlink_to("/dev/urandom")


def _fifo_link(path: Path) -> None:
    os.mkfifo(path.with_name("elsewhere.fifo"))
    path.symlink_to(path.with_name("elsewhere.fifo"))


def _sparse(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(1 << 30)  # 1 GiB of holes


def _large(path: Path) -> None:
    path.write_bytes(b'{"files": {}, "reported": [], "pad": "' + b"x" * (65 << 20) + b'"}')


def _folder(path: Path) -> None:
    path.mkdir()


def _good_link(path: Path) -> None:
    """A link to a valid state: still not the file the sweep writes."""
    target = path.with_name("elsewhere.json")
    os.replace(path.with_name("saved.json"), target)
    path.symlink_to(target)


STATE_KINDS: dict[str, tuple[Callable[[Path], None], Callable[[int], bool], str]] = {
    "fifo": (_fifo, stat.S_ISFIFO, "FIFO"),
    "link-to-dev-zero": (_zero_link, stat.S_ISLNK, "link"),
    "link-to-dev-urandom": (_urandom_link, stat.S_ISLNK, "link"),
    "link-to-fifo": (_fifo_link, stat.S_ISLNK, "link"),
    "link-to-a-good-state": (_good_link, stat.S_ISLNK, "link"),
    "sparse-1-gib": (_sparse, stat.S_ISREG, "larger than 64 MiB"),
    "over-64-mib": (_large, stat.S_ISREG, "larger than 64 MiB"),
    "folder": (_folder, stat.S_ISDIR, "folder"),
}


def two_sweeps(tmp_path: Path, make_token: Callable[[], str]
               ) -> tuple[Path, Path, str]:
    """A first sweep (its state saved), then a second token appended to the log."""
    first, second = make_token(), make_token()
    log = tmp_path / "app.log"
    log.write_text(f"one {first}\n")
    config = write_config(tmp_path, logs=["app.log"])
    assert cli(tmp_path, str(config)).returncode == 1
    (state,) = sorted((tmp_path / "cache").glob("logs:*.json"))
    with open(log, "a") as f:
        f.write(f"two {second}\n")
    return config, state, second


@pytest.mark.parametrize("variant", sorted(STATE_KINDS))
def test_a_logs_state_that_is_no_regular_file_is_set_aside_unread(
        tmp_path: Path, make_token: Callable[[], str], variant: str) -> None:
    make, is_kind, words = STATE_KINDS[variant]
    config, state, second = two_sweeps(tmp_path, make_token)
    os.replace(state, state.with_name("saved.json"))
    make(state)

    proc = cli(tmp_path, str(config), "--format", "json")  # blocking on it: cli's timeout
    assert proc.returncode == 1, proc.err  # type: ignore[attr-defined]
    (row,) = json.loads(proc.stdout)["sources"]
    assert not row["errors"]
    assert sha(second) in {f["secret_sha256"] for f in row["findings"]}
    warnings = proc.err.strip().splitlines()  # type: ignore[attr-defined]
    assert len(warnings) == 1 and "set aside" in warnings[0] and words in warnings[0], \
        warnings
    aside = state.with_name(state.name + ".corrupt-1")
    assert is_kind(os.lstat(aside).st_mode)  # renamed as it was, not copied or read
    assert stat.S_ISREG(os.lstat(state).st_mode)
    json.loads(state.read_text())  # a good state again
    proc = cli(tmp_path, str(config), "--format", "json")
    assert (proc.returncode, proc.err) == (0, "")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("version", "words"), [
    (3, "newer cendis-scan (version 3"), (10**12, "newer cendis-scan"),
    ("2", "version is not a number"), (True, "version is not a number"),
    (0, "version is not a number"), (None, "version is not a number")])
def test_a_logs_state_of_another_version_is_set_aside(
        tmp_path: Path, make_token: Callable[[], str], version: object, words: str) -> None:
    config, state, second = two_sweeps(tmp_path, make_token)
    data = json.loads(state.read_text())
    data["version"] = version
    saved = json.dumps(data)
    state.write_text(saved)

    proc = cli(tmp_path, str(config), "--format", "json")
    assert proc.returncode == 1, proc.err  # type: ignore[attr-defined]
    warnings = proc.err.strip().splitlines()  # type: ignore[attr-defined]
    assert len(warnings) == 1 and "set aside" in warnings[0] and words in warnings[0], \
        warnings
    # Read from the start again: the first token is not new (reported), the second is.
    (row,) = json.loads(proc.stdout)["sources"]
    assert sha(second) in {f["secret_sha256"] for f in row["findings"]}
    assert state.with_name(state.name + ".corrupt-1").read_text() == saved
    assert json.loads(state.read_text())["version"] == 2


# -- D7: FIFOs and devices matched by a glob ---------------------------------------------

SPECIALS: dict[str, Callable[[Path], None]] = {
    "fifo": lambda p: os.mkfifo(p),
    "link-to-dev-zero": lambda p: p.symlink_to("/dev/zero"),
    "link-to-dev-urandom": lambda p: p.symlink_to("/dev/urandom"),
    "link-to-dev-null": lambda p: p.symlink_to("/dev/null"),
    "broken-link": lambda p: p.symlink_to(p.with_name("gone")),
}


@pytest.mark.parametrize("token_name", [False, True])
@pytest.mark.parametrize("variant", sorted(SPECIALS))
def test_a_glob_that_matches_no_regular_file_skips_it_and_says_so(
        tmp_path: Path, make_token: Callable[[], str], variant: str, token_name: bool) -> None:
    token, named = make_token(), make_token()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text(f"auth {token}\n")
    special = logs / (f"x-{named}.log" if token_name else "special.log")
    SPECIALS[variant](special)
    if variant == "fifo":  # and a second one in the same sweep
        (logs / "other.log").symlink_to("/dev/zero")
    config = write_config(tmp_path, logs=["logs/*.log"])

    proc = cli(tmp_path, str(config), "--format", "json")  # blocking on it: cli's timeout
    assert proc.returncode == 1, proc.err  # type: ignore[attr-defined]
    (row,) = json.loads(proc.stdout)["sources"]
    assert [f["secret_sha256"] for f in row["findings"]] == [sha(token)]
    assert row["files"] == 1 and not row["errors"]
    warnings = proc.err.strip().splitlines()  # type: ignore[attr-defined]
    expected = 2 if variant == "fifo" else 1
    assert len(warnings) == expected, warnings
    assert all("skipped" in w and "not a regular file" in w for w in warnings)
    assert any(special.name[:6] in w for w in warnings)
    nothing_of(named, proc.stdout, proc.stderr)
