"""Tar archives (issue 20): every kind (plain, gzip, bzip2, xz, zstd; ustar, GNU and pax
headers), found by content whatever the name, member by member, nested in zip and the
reverse, links never followed, hostile names only names, and bombs one error line."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from imagetools import tar_bytes, zip_bytes

from scanner.token import secret_sha256 as _sha


def sha(token: str) -> str:
    return _sha(token.encode())


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


COMPRESS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "tar": ("", lambda d: d),
    "tgz": ("gzip+", lambda d: gzip.compress(d, 1)),
    "tbz": ("bzip2+", bz2.compress),
    "txz": ("xz+", lzma.compress),
    "tzst": ("zstd+", _zstd),
}
FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_each_tar_kind_member_by_member(kind: str, fmt: str, scan: Any, tmp_path: Path,
                                        make_token: Callable[[], str]) -> None:
    """Named with a misleading extension: found by content. A long name (past ustar's
    100 characters: the prefix field, GNU's L entry, pax's path) is named whole."""
    if kind == "tzst":
        pytest.importorskip("zstandard")
    t = [make_token() for _ in range(3)]
    deep = "package/" + "d" * 90 + "/" + "e" * 60 + "/.env"
    members = {"package/.env": f"A=1\nTOKEN={t[0]}\n".encode(),
               deep: f"KEY={t[1]}\n".encode(),
               "package/big.bin": bytes(5 << 20) + t[2].encode() + b"\n",
               "package/README": b"clean\n" * 1000}
    prefix, pack = COMPRESS[kind]
    (tmp_path / "upload.dat").write_bytes(pack(tar_bytes(members, fmt=FORMATS[fmt])))
    status, report, _ = scan([str(tmp_path / "upload.dat")])
    assert status == 1
    got = {(f["path"].removeprefix(str(tmp_path) + "/"), f["encoding"], f["line"],
            f["variable"], f["secret_sha256"]) for f in report["findings"]}
    assert got == {
        ("upload.dat!package/.env", f"{prefix}tar", 2, "TOKEN", sha(t[0])),
        (f"upload.dat!{deep}", f"{prefix}tar", 1, "KEY", sha(t[1])),
        ("upload.dat!package/big.bin", f"{prefix}tar", None, None, sha(t[2])),
    }


@pytest.mark.parametrize("outer", ["tgz-in-zip", "zip-in-tgz", "tgz-in-tgz", "tar-in-txz"])
def test_nested(outer: str, scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    token = make_token()
    inner_files = {"conf/.env": f"TOKEN={token}\n".encode()}
    if outer == "tgz-in-zip":
        data = zip_bytes({"lib/pkg.tgz": gzip.compress(tar_bytes(inner_files))})
        want = ("a!lib/pkg.tgz!conf/.env", "zip+gzip+tar")
    elif outer == "zip-in-tgz":
        data = gzip.compress(tar_bytes({"package/x.zip": zip_bytes(inner_files)}))
        want = ("a!package/x.zip!conf/.env", "gzip+tar+zip")
    elif outer == "tgz-in-tgz":
        data = gzip.compress(tar_bytes({"in.tgz": gzip.compress(tar_bytes(inner_files))}))
        want = ("a!in.tgz!conf/.env", "gzip+tar+gzip+tar")
    else:
        data = lzma.compress(tar_bytes({"backup/in.tar": tar_bytes(inner_files)}))
        want = ("a!backup/in.tar!conf/.env", "xz+tar+tar")
    (tmp_path / "a").write_bytes(data)
    status, report, _ = scan([str(tmp_path / "a")])
    [f] = report["findings"]
    assert (f["path"].removeprefix(str(tmp_path) + "/"), f["encoding"]) == want
    assert f["secret_sha256"] == sha(token) and status == 1
    assert f["fingerprint"].startswith(want[0] + ":")


def test_links_devices_and_traversal_are_only_names(scan: Any, tmp_path: Path,
                                                    make_token: Callable[[], str]) -> None:
    """A hard link's bytes are its target's, scanned under the target's name (the link
    is skipped, not reported twice); symlinks and devices are not followed or opened;
    ``../../etc/x`` is reported as a name and nothing is written anywhere."""
    token = make_token()
    outside = tmp_path / "etc"
    data = tar_bytes({"app/.env": f"TOKEN={token}\n".encode(),
                      "../../etc/x": f"X={token}\n".encode()},
                     links={"app/hard": (tarfile.LNKTYPE, "app/.env"),
                            "app/sym": (tarfile.SYMTYPE, "/etc/shadow"),
                            "app/up": (tarfile.SYMTYPE, "../../../../../etc/passwd"),
                            "dev/zero": (tarfile.CHRTYPE, ""),
                            "dev/fifo": (tarfile.FIFOTYPE, "")})
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "l.tar").write_bytes(data)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    status, report, _ = scan([str(tmp_path / "sub" / "l.tar")], cwd=tmp_path / "sub")
    assert status == 1
    assert sorted(f["path"].rpartition("l.tar!")[2] for f in report["findings"]) == [
        "../../etc/x", "app/.env"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before and not outside.exists()


def test_a_million_members_is_one_error_line(cli: Any, tmp_path: Path,
                                               make_token: Callable[[], str]) -> None:
    """A tgz of a million empty members (made in a blink: one gzip member of 2,048
    identical headers, repeated) ends at the bound with one error line, exit 2, and
    the members before the bound are scanned."""
    token = make_token()
    first = tar_bytes({".env": f"TOKEN={token}\n".encode()},
                      fmt=tarfile.USTAR_FORMAT)[:1024]  # a header and a block of data
    block = tar_bytes({"f": b""}, fmt=tarfile.USTAR_FORMAT)[:512]
    piece = gzip.compress(block * 2048, 9)
    (tmp_path / "bomb.tgz").write_bytes(gzip.compress(first) + piece * 489)
    proc = cli(["scan", str(tmp_path / "bomb.tgz"), "--format", "json"])  # a hang: timeout
    assert proc.returncode == 2, proc.err
    errors = [line for line in proc.err.splitlines() if "error" in line]
    assert errors == [f"cendis-scan: error: {tmp_path / 'bomb.tgz'}: tar holds more than "
                      "200000 members; only the first 200000 scanned"]
    [f] = json.loads(proc.stdout)["findings"]
    assert f["path"].endswith("bomb.tgz!.env")


@pytest.mark.parametrize("where", ["outer", "member"])
def test_decompression_bomb_is_one_error_line(where: str, cli: Any, tmp_path: Path,
                                              make_token: Callable[[], str]) -> None:
    """Past --max-decompressed: the outer stream ends the tar (one line for the tar);
    a member's own gzip is one line for that member, and the next member is scanned."""
    token = make_token()
    big = bytes(4 << 20)
    if where == "outer":
        data = gzip.compress(tar_bytes({"a.bin": big, "b/.env": f"T={token}\n".encode()}))
        named = "x.tgz"
    else:
        data = tar_bytes({"a.gz": gzip.compress(big), "b/.env": f"T={token}\n".encode()})
        named = "x.tgz!a.gz"
    (tmp_path / "x.tgz").write_bytes(data)
    proc = cli(["scan", str(tmp_path / "x.tgz"), "--max-decompressed", "2M", "--format",
                "json"])
    assert proc.returncode == 2
    errors = [line for line in proc.err.splitlines() if "error" in line]
    assert errors == [f"cendis-scan: error: {tmp_path / named}: gzip expands beyond 2 MiB; "
                      "not scanned further"]
    found = [f["path"] for f in json.loads(proc.stdout)["findings"]]
    assert found == ([] if where == "outer" else [str(tmp_path / "x.tgz!b/.env")])


@pytest.mark.parametrize("damage", ["truncated", "bad-header", "bad-xz"])
def test_damaged_tar_is_one_error_and_keeps_what_was_read(damage: str, cli: Any,
                                                          tmp_path: Path,
                                                          make_token: Callable[[], str]
                                                          ) -> None:
    token = make_token()
    data = tar_bytes({"a/.env": f"T={token}\n".encode(), "b.bin": bytes(3 << 20)})
    if damage == "truncated":
        data = data[:2000]
    elif damage == "bad-header":
        data = data[:1024] + b"\x01" * 512 + data[1536:]
    else:
        data = lzma.compress(data)[:-200]
    (tmp_path / "d.tar").write_bytes(data)
    proc = cli(["scan", str(tmp_path / "d.tar"), "--format", "json"])
    assert proc.returncode == 2 and "Traceback" not in proc.err
    assert len([line for line in proc.err.splitlines() if "error" in line]) == 1
    assert [f["path"] for f in json.loads(proc.stdout)["findings"]] == [
        str(tmp_path / "d.tar!a/.env")]


FORMATS_OUT = ["text", "json", "sarif", "gitlab"]


@pytest.mark.parametrize("fmt", FORMATS_OUT)
def test_hostile_member_names_are_escaped_and_redacted(fmt: str, cli: Any, no_leak: Any,
                                                       tmp_path: Path,
                                                       make_token: Callable[[], str]) -> None:
    """CR/LF, terminal escapes and a token in member names: the token in the name is
    reported (as a name) and redacted everywhere, control characters escaped; no
    output line is forged."""
    t = [make_token() for _ in range(3)]
    members = {"evil\r\nFAKE: line/.env": f"A={t[0]}\n".encode(),
               "\x1b[31mred\x1b[0m/x.txt": f"{t[1]}\n".encode(),
               f"notes-{t[2]}.txt": b"clean\n"}
    (tmp_path / "h.tgz").write_bytes(gzip.compress(tar_bytes(members)))
    proc = cli(["scan", str(tmp_path / "h.tgz"), "--format", fmt])
    assert proc.returncode == 1, proc.err
    no_leak(proc.stdout, proc.stderr)
    assert b"\x1b" not in proc.stdout + proc.stderr
    assert b"\r" not in proc.stdout and b"\nFAKE" not in proc.stdout
    text = proc.stdout.decode()
    for token in t:
        assert token[:15] in text or token[:15].encode().hex() in text
    if fmt == "json":
        report = json.loads(proc.stdout)
        assert {f["location"] for f in report["findings"]} == {None, "path"}
        assert len(report["findings"]) == 3


def test_tar_from_stdin(cli: Any, no_leak: Any, make_token: Callable[[], str]) -> None:
    token = make_token()
    proc = cli(["scan", "-", "--format", "json"],
               input=lzma.compress(tar_bytes({"x/.env": f"A=1\nTOKEN={token}\n".encode()})))
    [f] = json.loads(proc.stdout)["findings"]
    assert (f["path"], f["line"], f["encoding"]) == ("<stdin>!x/.env", 2, "xz+tar")
    no_leak(proc.stdout, proc.stderr)


def test_zstd_without_the_module_is_one_error_line(cli: Any, tmp_path: Path,
                                                   make_token: Callable[[], str]) -> None:
    """Without the optional zstandard module, a .tar.zst is one error line naming it
    (how to get it), exit 2; other files are still scanned."""
    pytest.importorskip("zstandard")
    token = make_token()
    (tmp_path / "a.tar.zst").write_bytes(_zstd(tar_bytes({".env": b"A=1\n"})))
    (tmp_path / "b.env").write_text(f"T={token}\n")
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "zstandard.py").write_text("raise ImportError('hidden for the test')\n")
    env = {"PYTHONPATH": str(hide) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = cli(["scan", str(tmp_path / "a.tar.zst"), str(tmp_path / "b.env"), "--format",
                "json"], env=env)
    assert proc.returncode == 2
    errors = [line for line in proc.err.splitlines() if "error" in line]
    assert errors == [f"cendis-scan: error: {tmp_path / 'a.tar.zst'}: zstd-compressed: not "
                      "scanned (install the optional zstandard module: pip install "
                      "'cendis-scan[zstd]')"]
    assert [Path(f["path"]).name for f in json.loads(proc.stdout)["findings"]] == ["b.env"]


@pytest.mark.parametrize("archive", ["tar", "tgz", "zip"])
@pytest.mark.parametrize("where", ["folder-of-a-member", "folder-member", "deep-folder",
                                   "member", "absolute-folder"])
def test_a_token_in_a_members_folder_is_reported_once(
        archive: str, where: str, scan: Any, tmp_path: Path,
        make_token: Callable[[], str]) -> None:
    """Names are content in archives too, folders included: a tar or zip need not list
    a folder as a member of its own (``dir/<token>/a`` alone), and a folder member ends
    in ``/``; either way the token is one finding at the folder (not again per file
    below it), never shown whole."""
    token = make_token()
    name = {"folder-of-a-member": f"dir/{token}/a.txt", "folder-member": f"d-{token}/",
            "deep-folder": f"a/b/{token}/c/d/e.txt", "member": f"notes-{token}.txt",
            "absolute-folder": f"/srv/{token}/x"}[where]
    members = {name: b"" if name.endswith("/") else b"clean\n",
               name.rstrip("/") + "/two.txt" if name.endswith("/") else "other.txt": b"1\n"}
    if archive == "zip":
        data = zip_bytes(members, deflate=False)
    else:
        data = tar_bytes(members)
        data = gzip.compress(data) if archive == "tgz" else data
    (tmp_path / f"a.{archive}").write_bytes(data)
    status, report, proc = scan([f"a.{archive}"], cwd=tmp_path)
    assert status == 1, proc.err
    [f] = report["findings"]
    assert (f["secret_sha256"], f["location"]) == (_sha(token.encode()), "path")
    shown = name.rstrip("/").rpartition(token)[0] + token[:15]
    assert f["path"].startswith(f"a.{archive}!{shown}")


def test_a_token_in_an_archives_name_is_not_reported_again_per_member(
        scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    """``lib/<token>.tgz`` inside a zip: one finding for that name, not one more for
    every member (or folder) at the top of the inner tar."""
    token = make_token()
    inner = gzip.compress(tar_bytes({"x/a.txt": b"1\n", "top.txt": b"2\n"}))
    (tmp_path / "o.zip").write_bytes(zip_bytes({f"lib/{token}.tgz": inner}, deflate=False))
    status, report, proc = scan(["o.zip"], cwd=tmp_path)
    assert status == 1, proc.err
    assert [(f["location"], f["path"].count("!")) for f in report["findings"]] == [("path", 1)]


@pytest.mark.parametrize("magic", ["gzip", "zlib-1", "zlib-6", "zlib-9"])
@pytest.mark.parametrize("member", ["plain", "gzipped"])
def test_compression_magics_in_binary_members(magic: str, member: str, scan: Any,
                                              tmp_path: Path,
                                              make_token: Callable[[], str]) -> None:
    """A tar of many binary members, most with a gzip or zlib magic number that opens
    nothing (as in any binary data), some with a real stream holding a token: the
    magic alone costs no full scan, the real streams are still found (the tar is
    mapped: its members are searched in place, the probe decides)."""
    import random
    import zlib

    rng = random.Random(20)
    level = {"gzip": 6, "zlib-1": 1, "zlib-6": 6, "zlib-9": 9}[magic]

    def stream(data: bytes) -> bytes:
        if magic == "gzip":
            return gzip.compress(data, level)
        return zlib.compress(data, level)

    head = stream(b"")[:3 if magic == "gzip" else 2]
    tokens = [make_token() for _ in range(3)]
    members: dict[str, bytes] = {}
    for i in range(40):
        noise = bytes(rng.randrange(256) for _ in range(3000))
        members[f"bin/noise{i}.so"] = b"\x7fELF\0" + noise[:1000] + head + noise[1000:]
    for i, token in enumerate(tokens):
        inner = stream(f"secret = {token}\n".encode() + bytes(200))
        members[f"bin/real{i}.so"] = b"\x7fELF\0" + bytes(500) + inner + bytes(500)
    if member == "gzipped":
        members = {name + ".gz": gzip.compress(data) for name, data in members.items()}
    (tmp_path / "layer.tar").write_bytes(tar_bytes(members))
    status, report, _ = scan([str(tmp_path / "layer.tar")])
    assert status == 1
    got = {(f["path"].rpartition("!")[2], f["secret_sha256"]) for f in report["findings"]}
    ext = ".gz" if member == "gzipped" else ""
    assert got == {(f"bin/real{i}.so{ext}", sha(t)) for i, t in enumerate(tokens)}
    assert all(f["encoding"].endswith("zlib" if magic != "gzip" else "gzip")
               for f in report["findings"])


def _claiming(size: int, fmt: int, data: bytes) -> bytes:
    """A tar whose one member's header claims ``size`` bytes, followed by ``data``."""
    info = tarfile.TarInfo("huge.bin")
    info.size = size
    return info.tobuf(format=fmt) + data


@pytest.mark.parametrize("claim", [8_000_000_000, 5 << 20, 20_000], ids=["8GB", "5MB", "20KB"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("kind", ["tar", "tgz", "txz"])
def test_a_header_claiming_more_than_the_file_holds_is_one_truncated_error(
        claim: int, fmt: str, kind: str, cli: Any, tmp_path: Path,
        make_token: Callable[[], str]) -> None:
    """A member's header says 8 GB (or any size past what follows) in a 10 KB file: one
    error line saying the tar is truncated, exit 2, and what the file does hold (a
    token in the member's first bytes) is still scanned."""
    token = make_token()
    data = f"T={token}\n".encode() + b"A" * 10_000
    _, compress = COMPRESS[kind]
    path = tmp_path / f"x.{kind}"
    path.write_bytes(compress(_claiming(claim, FORMATS[fmt], data)))
    proc = cli(["scan", str(path), "--format", "json"])
    assert proc.returncode == 2 and "Traceback" not in proc.err, proc.err
    errors = [line for line in proc.err.splitlines() if "error" in line]
    assert len(errors) == 1 and "tar is truncated" in errors[0], proc.err
    assert [f["secret_sha256"] for f in json.loads(proc.stdout)["findings"]] == [sha(token)]


LINK_KINDS = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("link", sorted(LINK_KINDS))
@pytest.mark.parametrize("place", ["whole", "in-path", "long-path"])
@pytest.mark.parametrize("kind", ["tar", "tgz"])
def test_a_token_in_a_link_target_is_reported(fmt: str, link: str, place: str, kind: str,
                                              scan: Any, tmp_path: Path,
                                              make_token: Callable[[], str]) -> None:
    """A link's target is a name written into the tar (``ln -s <token> x``): reported
    once, at the link member, ``location`` ``link``, never shown whole (``scan``
    checks); the target's own name (past 100 bytes: GNU's K entry, pax's linkpath)."""
    if fmt == "ustar" and place == "long-path":
        pytest.skip("ustar has no long link names")
    token = make_token()
    target = {"whole": token, "in-path": f"/run/secrets/{token}/x",
              "long-path": "d/" * 60 + token}[place]
    data = tar_bytes({"a.txt": b"hello\n"}, fmt=FORMATS[fmt],
                     links={"app/ln": (LINK_KINDS[link], target)})
    path = tmp_path / f"l.{kind}"
    path.write_bytes(COMPRESS[kind][1](data))
    status, report, _ = scan([str(path)])
    assert status == 1
    [f] = report["findings"]
    assert (f["path"], f["location"], f["secret_sha256"]) == (
        f"{path}!app/ln", "link", sha(token))


def _gzip_members(token: Callable[[], str]) -> tuple[dict[str, bytes], list[str]]:
    """Small gzip members of every shape the whole-member inflater meets: whole, two
    members, zero-padded, damaged (CRC, a flipped byte), cut short, a bomb past the
    bound, zlib rather than gzip; the names where a token must be found."""
    import zlib

    t = [token() for _ in range(6)]
    good = gzip.compress(f"A=1\nTOKEN={t[0]}\n".encode() * 50)
    crc = bytearray(gzip.compress(f"K={t[1]}\n".encode()))
    crc[-8] ^= 0xFF
    flipped = bytearray(gzip.compress(b"clean line\n" * 2000 + f"K={t[2]}\n".encode()))
    flipped[len(flipped) // 2] ^= 0x55
    members = {
        "good.gz": good,
        "two.gz": gzip.compress(b"first\n") + gzip.compress(f"T={t[3]}\n".encode()),
        "padded.gz": gzip.compress(f"T={t[4]}\n".encode()) + bytes(512),
        "crc.gz": bytes(crc),
        "flipped.gz": bytes(flipped),
        "cut.gz": good[: len(good) // 2],
        "bomb.gz": gzip.compress(bytes(3 << 20)),
        "deflate.z": zlib.compress(f"T={t[5]}\n".encode()),
        "after.env": f"T={t[0]}\n".encode(),
    }
    # cut.gz: its readable first half is scanned (and it is an error line too)
    return members, ["good.gz", "two.gz", "padded.gz", "cut.gz", "deflate.z", "after.env"]


@pytest.mark.parametrize("form", ["tar", "tgz"])
def test_small_gzip_members_same_with_and_without_isal(form: str, cli: Any, no_leak: Any,
                                                       tmp_path: Path,
                                                       make_token: Callable[[], str]
                                                       ) -> None:
    """Whole small gzip members inflate with python-isal when it is installed, zlib
    when not (inputs.gunzip_whole): findings, errors (a damaged or cut member, a bomb
    past --max-decompressed is one line) and exit status are the same either way."""
    pytest.importorskip("isal")
    members, expected = _gzip_members(make_token)
    data = tar_bytes(members)
    (tmp_path / "m.tar").write_bytes(gzip.compress(data) if form == "tgz" else data)
    hide = tmp_path / "hide" / "isal"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("raise ModuleNotFoundError('hidden for the test')\n")
    runs = {}
    for name, env in (("isal", {}), ("zlib", {"PYTHONPATH": str(hide.parent) + os.pathsep
                                              + os.environ.get("PYTHONPATH", "")})):
        proc = cli(["scan", str(tmp_path / "m.tar"), "--max-decompressed", "2M",
                    "--format", "json"], env=env)
        no_leak(proc.stdout, proc.stderr)
        report = json.loads(proc.stdout)
        report["summary"].pop("seconds", None)  # (how long it took)
        runs[name] = (proc.returncode, report, proc.err)
    assert runs["isal"] == runs["zlib"]
    status, report, err = runs["isal"]
    assert status == 2
    assert sorted({f["path"].rpartition("!")[2] for f in report["findings"]}) == sorted(
        expected)
    errors = [line for line in err.splitlines() if "error" in line]
    assert f"cendis-scan: error: {tmp_path / 'm.tar!bomb.gz'}: gzip expands beyond 2 MiB; " \
        "not scanned further" in errors
    assert {line.split(": ")[2].rpartition("!")[2] for line in errors} == {
        "bomb.gz", "crc.gz", "flipped.gz", "cut.gz"}
