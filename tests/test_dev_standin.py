"""``dev cendis-api`` hands its generated service credential to the user however its
output is connected (a pipe, a file) or, with ``--credential-file``, in a 0600 file:
a user who redirects the output can still use the stand-in (issue 14, section 6)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import CLI, free_port, http_answers, wait_until

from scanner.token import TokenCheck, check

CREDENTIAL = re.compile(r"service credential \(scope revoke:tokens\): (cendis_pat_\w+)")


@contextmanager
def standin(args: list[str], stdout: int | Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """The stand-in as a real process, its stdout a pipe or a file; yields its URL."""
    port = free_port()
    out = stdout.open("wb") if isinstance(stdout, Path) else stdout
    proc = subprocess.Popen([CLI, "dev", "cendis-api", "--port", str(port), *args],
                            stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_answers(url + "/_calls"), "dev cendis-api", proc=proc)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(10)
        if isinstance(stdout, Path):
            out.close()


def _whoami(url: str, credential: str) -> dict:
    request = urllib.request.Request(url + "/v1/whoami",
                                     headers={"Authorization": f"Bearer {credential}"})
    return json.loads(urllib.request.urlopen(request, timeout=5).read())


def _printed(text: str) -> str:
    found = CREDENTIAL.search(text)
    assert found, text
    return found.group(1)


@pytest.mark.parametrize("seed", ["none", "directory"])
@pytest.mark.parametrize("where", ["pipe", "file"])
def test_the_generated_credential_is_printed_whatever_stdout_is(
        tmp_path: Path, where: str, seed: str, token_registry: set[str]) -> None:
    args = []
    if seed == "directory":
        (tmp_path / "project").mkdir()
        (tmp_path / "project" / "README").write_text("no tokens here\n")
        args = ["--seed", str(tmp_path / "project")]
    target: int | Path = subprocess.PIPE if where == "pipe" else tmp_path / "out.txt"
    with standin(args, target) as (url, proc):
        if where == "pipe":
            assert proc.stdout is not None
            text = "".join(proc.stdout.readline().decode() for _ in range(3))
        else:  # written and flushed before the server answered its first request
            text = (tmp_path / "out.txt").read_text()
        credential = _printed(text)
        token_registry.add(credential)  # made in the subprocess: for the privacy check
        assert check(credential) is TokenCheck.VALID
        assert _whoami(url, credential)["scopes"] == ["revoke:tokens"]
        assert "CENDIS_TOKEN=" in text or where == "pipe"


@pytest.mark.parametrize("existing", [None, 0o644])
def test_credential_file_holds_the_credential_readable_by_its_owner_only(
        tmp_path: Path, existing: int | None, token_registry: set[str]) -> None:
    path = tmp_path / "credential"
    if existing is not None:
        path.write_text("old contents, longer than a token would be" * 3)
        path.chmod(existing)
    out = tmp_path / "out.txt"
    with standin(["--credential-file", str(path)], out) as (url, _):
        credential = path.read_text()
        assert credential.endswith("\n") and credential.count("\n") == 1
        credential = credential.strip()
        token_registry.add(credential)  # made in the subprocess: for the privacy check
        assert _whoami(url, credential)["scopes"] == ["revoke:tokens"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    printed = out.read_text()
    assert credential not in printed and str(path) in printed
    assert "demo token of alice" in printed  # the demo tokens are still shown


def test_credential_file_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([CLI, "dev", "cendis-api", "--port", str(free_port()),
                           "--credential-file", str(tmp_path / "no" / "such" / "dir")],
                          capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--credential-file" in proc.stderr
