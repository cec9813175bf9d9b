"""Links inside zips (hostile pass on issue 20, item 19): a zip's symlink member holds
its target as its bytes, a name like a tar link's target, reported at the link."""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from imagetools import tar_bytes, zip_bytes

from scanner.token import secret_sha256 as _sha


def sha(token: str) -> str:
    return _sha(token.encode())


def _zip_with_link(name: str, target: str, *, deflate: bool) -> bytes:
    """A zip holding a.txt and a symlink ``name`` -> ``target`` as ``zip -y`` writes it
    (made on Unix, mode S_IFLNK in external_attr, the target as the member's bytes)."""
    out = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(out, "w", method) as z:
        z.writestr("a.txt", "hello\n")
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        info.external_attr = 0o120777 << 16
        z.writestr(info, target.encode(), compress_type=method)
    return out.getvalue()


@pytest.mark.parametrize("place", ["whole", "in-path", "long-path"])
@pytest.mark.parametrize("kind", ["zip", "zip-stored", "zip-in-tgz"])
def test_a_token_in_a_zip_symlinks_target_is_a_link(place: str, kind: str, scan: Any,
                                                    tmp_path: Path,
                                                    make_token: Callable[[], str]) -> None:
    """A zip's symlink member holds its target as its bytes: that is a name, reported
    at the link as in a tar (``location`` link, no line), not as line 1 of content."""
    token = make_token()
    target = {"whole": token, "in-path": f"/run/secrets/{token}/x",
              "long-path": "d/" * 60 + token}[place]
    data = _zip_with_link("app/ln", target, deflate=kind != "zip-stored")
    if kind == "zip-in-tgz":
        path = tmp_path / "l.tgz"
        path.write_bytes(gzip.compress(tar_bytes({"inner/l.zip": data})))
        shown = f"{path}!inner/l.zip!app/ln"
    else:
        path = tmp_path / "l.zip"
        path.write_bytes(data)
        shown = f"{path}!app/ln"
    status, report, _ = scan([str(path)])
    assert status == 1
    [f] = report["findings"]
    assert (f["path"], f["location"], f["line"], f["secret_sha256"]) == (
        shown, "link", None, sha(token))
    assert f["offset"] == target.index(token)


def test_a_zip_regular_file_holding_a_token_is_still_content(
        scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    """The same bytes in a regular member (no S_IFLNK mode) stay content: line 1."""
    token = make_token()
    (tmp_path / "r.zip").write_bytes(zip_bytes({"app/ln": token.encode()}))
    status, report, _ = scan([str(tmp_path / "r.zip")])
    [f] = report["findings"]
    assert (status, f["location"], f["line"]) == (1, None, 1)
