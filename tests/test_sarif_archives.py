"""SARIF locations inside archives (hostile pass on issue 20): a member's name is the
archive's to choose (``../../etc/passwd``), so it is never URI path segments a
normaliser could collapse onto another file; the artifact is the archive on disk and
the path inside it a logical location."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin

import jsonschema
import pytest
from imagetools import tar_bytes, zip_bytes

HOSTILE = ["../../etc/passwd", "./../x/../../y.env", "a/./b/../../../c.env", "..",
           "../", "%2e%2e/%2e%2e/z.env", "/abs/../../root.env", "d/.env"]


@pytest.mark.parametrize("member", HOSTILE)
@pytest.mark.parametrize("archive", ["tar", "tgz", "zip", "zip-in-tar"])
def test_a_member_name_never_resolves_to_another_file(
        member: str, archive: str, cli: Any, tmp_path: Path, no_leak: Any,
        sarif_schema: dict[str, Any], make_token: Callable[[], str]) -> None:
    """Whatever the member is called, the artifact URI resolves (RFC 3986, against
    the scan root) to the archive itself, and the logical location is the member."""
    token = make_token()
    name = member.rstrip("/") + ("/t.env" if member.endswith("/") or member == ".."
                                 else "")
    members = {name: f"A=1\nT={token}\n".encode()}
    (tmp_path / "arc").mkdir()
    data = zip_bytes(members) if archive.startswith("zip") else tar_bytes(members)
    inside = name if archive.startswith("zip") else name.removeprefix("./")  # (tarfile's)
    if archive == "tgz":
        data = gzip.compress(data)
    if archive == "zip-in-tar":
        data = tar_bytes({"in/n.zip": data})
        inside = f"in/n.zip!{name}"
    shown = f"arc/n.{archive.rpartition('-')[2]}"
    (tmp_path / shown).write_bytes(data)
    proc = cli(["scan", "arc", "--format", "sarif"], cwd=tmp_path)
    assert proc.returncode == 1, proc.err
    no_leak(proc.stdout, proc.stderr)
    doc = json.loads(proc.stdout)
    jsonschema.Draft7Validator(sarif_schema).validate(doc)
    [result] = doc["runs"][0]["results"]
    [loc] = result["locations"]
    uri = loc["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == shown
    assert unquote(urljoin("file:///src/", uri)) == f"file:///src/{shown}"
    assert loc["logicalLocations"] == [{"fullyQualifiedName": inside, "kind": "resource"}]
    assert loc["physicalLocation"]["region"] == {"startLine": 2, "startColumn": 3}


@pytest.mark.parametrize("archive", ["tar", "zip"])
@pytest.mark.parametrize("where", ["name", "folder"])
def test_a_token_in_a_hostile_member_name_names_the_archive(
        archive: str, where: str, cli: Any, tmp_path: Path, no_leak: Any,
        sarif_schema: dict[str, Any], make_token: Callable[[], str]) -> None:
    """A token in a member's name (or folder) beside ``..`` segments: the result names
    the archive (no region: the name is the place), the member as a logical location."""
    token = make_token()
    name = f"../../{token}.env" if where == "name" else f"../{token}/../../x.env"
    members = {name: b"clean\n"}
    data = zip_bytes(members) if archive == "zip" else tar_bytes(members)
    (tmp_path / f"n.{archive}").write_bytes(data)
    proc = cli(["scan", f"n.{archive}", "--format", "sarif"], cwd=tmp_path)
    assert proc.returncode == 1, proc.err
    no_leak(proc.stdout, proc.stderr)
    doc = json.loads(proc.stdout)
    jsonschema.Draft7Validator(sarif_schema).validate(doc)
    [result] = doc["runs"][0]["results"]
    [loc] = result["locations"]
    assert loc["physicalLocation"] == {"artifactLocation": {"uri": f"n.{archive}",
                                                            "uriBaseId": "%SRCROOT%"}}
    [logical] = loc["logicalLocations"]
    assert logical["fullyQualifiedName"].startswith("../")
    assert result["properties"]["location"] == "path"
