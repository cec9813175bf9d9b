"""Container images without a Docker engine (issue 20): ``docker save`` tarballs (legacy
and OCI-in-docker layouts), OCI layouts (folder and tarball), each built here with real
sha256 digests; findings named ``image!ref!sha256:<12>!path``, a whiteout-deleted file
still reported with a note, the config's Env scanned, SARIF naming the image."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from imagetools import docker_save, oci_layout, sha, tar_bytes, write_folder, zip_bytes

from scanner.token import secret_sha256 as _sha


def hashed(token: str) -> str:
    return _sha(token.encode())


def _layers(t: list[str]) -> list[dict[str, bytes]]:
    """Three layers: a token in app/.env deleted by layer 2's whiteout; a directory
    made opaque by layer 3 (everything below it from lower layers deleted); a token
    that stays."""
    return [
        {"app/.env": f"A=1\nTOKEN={t[0]}\n".encode(), "etc/conf/k.ini": f"k={t[1]}\n".encode(),
         "usr/bin/tool": b"\x7fELF" + bytes(3000)},
        {"app/.wh..env": b"", "srv/live.yaml": f"token: {t[2]}\n".encode()},
        {"etc/conf/.wh..wh..opq": b"", "etc/conf/new.ini": b"k=1\n"},
    ]


DELETED = "deleted in a later layer"


def _check(report: dict[str, Any], prefix: str, digests: list[str], t: list[str],
           encoding: str) -> None:
    short = [d[:12] for d in digests]
    got = {(f["path"], f["encoding"], f["secret_sha256"], (f["note"] or "")[:len(DELETED)],
            f["location"]) for f in report["findings"]}
    ref = "acme/api:1.4"
    assert got == {
        (f"{prefix}!{ref}!sha256:{short[0]}!app/.env", encoding, hashed(t[0]), DELETED, "image"),
        (f"{prefix}!{ref}!sha256:{short[0]}!etc/conf/k.ini", encoding, hashed(t[1]), DELETED,
         "image"),
        (f"{prefix}!{ref}!sha256:{short[1]}!srv/live.yaml", encoding, hashed(t[2]), "",
         "image"),
        (f"{prefix}!{ref}!config", "tar" if encoding.startswith("tar+") else "plain",
         hashed(t[3]), "", "image"),
    }


@pytest.mark.parametrize("layout", ["legacy", "oci"])
def test_docker_save(layout: str, scan: Any, tmp_path: Path,
                     make_token: Callable[[], str]) -> None:
    """``cendis-scan scan image.tar`` just works; the token in ``ENV`` is found in the
    config (Env and history: one finding per place)."""
    t = [make_token() for _ in range(4)]
    digests = docker_save(tmp_path / "image.tar", "acme/api:1.4", _layers(t),
                          [f"CENDIS_TOKEN={t[3]}"], layout=layout)
    status, report, proc = scan(["image.tar"], cwd=tmp_path)
    assert status == 1, proc.err
    config = [f for f in report["findings"] if f["path"].endswith("!config")]
    assert len(config) == 2  # Env, and the history's "ENV ..." line
    report["findings"] = [f for f in report["findings"] if f not in config[1:]]
    _check(report, "image.tar", digests, t, "tar+tar")


@pytest.mark.parametrize("form", ["folder", "tarball", "stdin"])
def test_oci_layout(form: str, scan: Any, tmp_path: Path,
                    make_token: Callable[[], str]) -> None:
    t = [make_token() for _ in range(4)]
    files, digests = oci_layout("acme/api:1.4", _layers(t), [f"CENDIS_TOKEN={t[3]}"])
    if form == "folder":
        write_folder(tmp_path / "oci", files)
        status, report, _ = scan(["oci"], cwd=tmp_path)
        _check(report, "oci", digests, t, "gzip+tar")
    else:
        (tmp_path / "oci.tar").write_bytes(tar_bytes(files))
        if form == "tarball":
            status, report, _ = scan(["oci.tar"], cwd=tmp_path)
            _check(report, "oci.tar", digests, t, "tar+gzip+tar")
        else:
            status, report, _ = scan(["-"], input=(tmp_path / "oci.tar").read_bytes())
            _check(report, "<stdin>", digests, t, "tar+gzip+tar")
    assert status == 1


def test_zstd_layer(scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    zstandard = pytest.importorskip("zstandard")
    token = make_token()
    layer = zstandard.ZstdCompressor().compress(tar_bytes({"app/.env": f"T={token}\n".encode()}))
    config = b'{"config": {"Env": []}}'
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": f"sha256:{sha(config)}"},
                           "layers": [{"digest": f"sha256:{sha(layer)}"}]}).encode()
    index = json.dumps({"manifests": [{"digest": f"sha256:{sha(manifest)}", "annotations": {
        "org.opencontainers.image.ref.name": "acme/z:2"}}]}).encode()
    files = {f"blobs/sha256/{sha(b)}": b for b in (layer, config, manifest)}
    files.update({"index.json": index, "oci-layout": b'{"imageLayoutVersion": "1.0.0"}'})
    (tmp_path / "z.tar").write_bytes(tar_bytes(files))
    status, report, _ = scan([str(tmp_path / "z.tar")])
    [f] = report["findings"]
    assert f["path"] == f"{tmp_path}/z.tar!acme/z:2!sha256:{sha(layer)[:12]}!app/.env"
    assert f["encoding"] == "tar+zstd+tar" and status == 1


def test_untagged_image_and_a_clean_image(scan: Any, tmp_path: Path,
                                          make_token: Callable[[], str]) -> None:
    """No RepoTags: the image is named by its config digest. A clean image exits 0."""
    token = make_token()
    docker_save(tmp_path / "clean.tar", "acme/clean:1", [{"a.txt": b"x\n"}], [])
    status, report, _ = scan([str(tmp_path / "clean.tar")])
    assert (status, report["findings"]) == (0, [])
    docker_save(tmp_path / "u.tar", "x:1", [{"a/.env": f"T={token}\n".encode()}], [])
    with tarfile.open(tmp_path / "u.tar") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    config_hex = manifest[0]["Config"].rpartition("/")[2]
    manifest[0]["RepoTags"] = None
    with tarfile.open(tmp_path / "u.tar") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    files["manifest.json"] = json.dumps(manifest).encode()
    (tmp_path / "u.tar").write_bytes(tar_bytes(files))
    status, report, _ = scan([str(tmp_path / "u.tar")])
    [f] = report["findings"]
    assert f["path"].startswith(f"{tmp_path}/u.tar!sha256:{config_hex[:12]}!sha256:")


@pytest.mark.parametrize("form", ["folder", "tarball", "stdin", "docker-untagged"])
def test_an_untagged_image_is_named_by_its_config_digest(
        form: str, scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    """No name in the index (nor RepoTags): the image is ``sha256:`` and 12 hex digits
    of its config, the image ID ``docker images`` shows, in every layout (never the
    manifest's digest)."""
    token = make_token()
    files, digests = oci_layout("", [{"a/.env": f"T={token}\n".encode()}], [])
    index = json.loads(files["index.json"])
    manifest = json.loads(files[f"blobs/sha256/{index['manifests'][0]['digest'][7:]}"])
    config = manifest["config"]["digest"][7:]
    if form == "docker-untagged":
        files["manifest.json"] = json.dumps([{
            "Config": f"blobs/sha256/{config}", "RepoTags": None,
            "Layers": [f"blobs/sha256/{d}" for d in digests]}]).encode()
    if form == "folder":
        write_folder(tmp_path / "oci", files)
        status, report, _ = scan([str(tmp_path / "oci")])
        prefix = f"{tmp_path}/oci"
    elif form == "stdin":
        status, report, _ = scan(["-"], input=tar_bytes(files))
        prefix = "<stdin>"
    else:
        (tmp_path / "u.tar").write_bytes(tar_bytes(files))
        status, report, _ = scan([str(tmp_path / "u.tar")])
        prefix = f"{tmp_path}/u.tar"
    [f] = report["findings"]
    assert f["path"] == f"{prefix}!sha256:{config[:12]}!sha256:{digests[0][:12]}!a/.env"
    assert status == 1


def _wrap(tmp_path: Path, files: dict[str, bytes], container: str) -> tuple[Path, str]:
    """The image tarball of ``files`` as a file, or as a member of a zip or a tgz:
    (what to scan, the path the image's findings start with)."""
    image = tar_bytes(files)
    if container == "zip":
        (tmp_path / "w.zip").write_bytes(zip_bytes({"images/api.tar": image}))
        return tmp_path / "w.zip", f"{tmp_path}/w.zip!images/api.tar"
    if container == "tgz":
        (tmp_path / "w.tgz").write_bytes(gzip.compress(tar_bytes({"x/api.tar": image})))
        return tmp_path / "w.tgz", f"{tmp_path}/w.tgz!x/api.tar"
    (tmp_path / "b.tar").write_bytes(image)
    return tmp_path / "b.tar", f"{tmp_path}/b.tar"


# (Not in a tgz: tgz, tar, gzip layer, tar is past scan_input.MAX_NESTING.)
@pytest.mark.parametrize("container", ["tar", "zip"])
@pytest.mark.parametrize("bomb", ["lowest", "top"])
def test_layer_bomb_is_one_error_line(cli: Any, tmp_path: Path, container: str, bomb: str,
                                      make_token: Callable[[], str]) -> None:
    """A layer that decompresses past --max-decompressed: one error line naming the
    layer as findings name it (image and layer, not the blob's path), exit 2; the layers
    before it and the config are still scanned (one budget for the whole input: the
    layers after it are not unpacked)."""
    token = make_token()
    layers = [{"big.bin": bytes(8 << 20)}, {"app/.env": f"T={token}\n".encode()}]
    if bomb == "top":
        layers.reverse()
    files, digests = oci_layout("acme/api:1.4", layers, [])
    path, prefix = _wrap(tmp_path, files, container)
    proc = cli(["scan", str(path), "--max-decompressed", "4M", "--format", "json"])
    assert proc.returncode == 2
    bad, good = digests if bomb == "lowest" else digests[::-1]
    errors = [line for line in proc.err.splitlines() if "error" in line]
    assert errors == [f"cendis-scan: error: {prefix}!acme/api:1.4!sha256:{bad[:12]}: "
                      "gzip expands beyond 4 MiB; not scanned further"]
    assert "blobs/sha256" not in proc.stdout.decode()
    found = [f["path"] for f in json.loads(proc.stdout)["findings"]]
    assert found == ([] if bomb == "lowest" else
                     [f"{prefix}!acme/api:1.4!sha256:{good[:12]}!app/.env"])


@pytest.mark.parametrize("container", ["tar", "zip", "tgz"])
@pytest.mark.parametrize("layout", ["legacy", "oci"])
def test_sarif_image_and_layer_when_the_image_is_a_member(
        cli: Any, tmp_path: Path, container: str, layout: str, no_leak: Any,
        sarif_schema: dict[str, Any], make_token: Callable[[], str]) -> None:
    """``properties.image`` is the image's reference and ``layer`` the layer's digest
    (null for the config) wherever the image tarball is: on disk or a member of a zip
    or tgz (``w.zip!images/api.tar!acme/api:1.4!sha256:…``); the artifact is the file
    on disk."""
    t = [make_token() for _ in range(4)]
    digests = docker_save(tmp_path / "i.tar", "acme/api:1.4", _layers(t),
                          [f"CENDIS_TOKEN={t[3]}"], layout=layout)
    files = {}
    with tarfile.open(tmp_path / "i.tar") as tar:
        for m in tar:
            files[m.name] = tar.extractfile(m).read()  # type: ignore[union-attr]
    (tmp_path / "i.tar").unlink()
    path, prefix = _wrap(tmp_path, files, container)
    proc = cli(["scan", path.name, "--format", "sarif"], cwd=tmp_path)
    no_leak(proc.stdout, proc.stderr)
    doc = json.loads(proc.stdout)
    jsonschema.Draft7Validator(sarif_schema).validate(doc)
    results = doc["runs"][0]["results"]
    assert len(results) == 5  # 3 in layers, the config's Env and history
    short = {sha: f"sha256:{sha[:12]}" for sha in digests}
    for r in results:
        [loc] = r["locations"]
        assert loc["physicalLocation"]["artifactLocation"]["uri"] == path.name
        inside = loc["logicalLocations"][0]["fullyQualifiedName"]
        rel = prefix[len(str(tmp_path)) + 1:]  # b.tar, w.zip!images/api.tar, ...
        assert f"{path.name}!{inside}".startswith(f"{rel}!acme/api:1.4!")
        props = r["properties"]
        assert props["image"] == "acme/api:1.4", props
        if inside.endswith("!config"):
            assert props["layer"] is None
        else:
            assert props["layer"] in short.values()
            assert f"!acme/api:1.4!{props['layer']}!" in f"!{inside}"


@pytest.mark.parametrize("container", ["tar", "zip"])
@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_token_in_a_layer_members_name_is_a_name(
        scan: Any, cli: Any, tmp_path: Path, container: str, where: str,
        make_token: Callable[[], str]) -> None:
    """A token in the name of a file (or folder) inside a layer is reported as a name
    (``location`` path, no line, the offset where it starts in the shown path, "(in the
    name)"), as in a plain tar or zip, renamed after the image like any finding."""
    token = make_token()
    member = f"notes-{token}.txt" if where == "file" else f"srv/d-{token}/a.txt"
    files, digests = oci_layout("acme/api:1.4", [{member: b"clean\n"}], [])
    path, prefix = _wrap(tmp_path, files, container)
    status, report, _ = scan([str(path)])
    assert status == 1
    [f] = report["findings"]
    layer = f"{prefix}!acme/api:1.4!sha256:{digests[0][:12]}!"
    assert f["path"].startswith(layer) and "blobs/" not in f["path"]
    assert (f["location"], f["line"], f["secret_sha256"]) == ("path", None, hashed(token))
    assert f["path"].encode()[f["offset"]:].startswith(token[:15].encode())
    text = cli(["scan", str(path)]).stdout.decode()
    assert "(in the name)" in text and ":offset" not in text


def test_sarif_names_the_image(cli: Any, tmp_path: Path, make_token: Callable[[], str],
                               sarif_schema: dict[str, Any], no_leak: Any) -> None:
    t = [make_token() for _ in range(4)]
    digests = docker_save(tmp_path / "image.tar", "acme/api:1.4", _layers(t),
                          [f"CENDIS_TOKEN={t[3]}"])
    proc = cli(["scan", "image.tar", "--format", "sarif"], cwd=tmp_path)
    no_leak(proc.stdout, proc.stderr)
    doc = json.loads(proc.stdout)
    jsonschema.Draft7Validator(sarif_schema).validate(doc)
    results = doc["runs"][0]["results"]
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in results} == {"image.tar"}
    env = [r for r in results if r["properties"]["layer"] == f"sha256:{digests[0][:12]}"
           and r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"].endswith(
               "!app/.env")]
    [r] = env
    assert r["properties"]["image"] == "acme/api:1.4"
    assert r["properties"]["note"].startswith(DELETED)


def test_gzip_docker_save_is_scanned_as_a_stream(scan: Any, tmp_path: Path,
                                                 make_token: Callable[[], str]) -> None:
    """``docker save img | gzip``: read as a stream, named after the image too."""
    token = make_token()
    digests = docker_save(tmp_path / "i.tar", "acme/api:1.4",
                          [{"app/.env": f"T={token}\n".encode()}], [])
    (tmp_path / "i.tar.gz").write_bytes(gzip.compress((tmp_path / "i.tar").read_bytes()))
    (tmp_path / "i.tar").unlink()
    status, report, _ = scan(["i.tar.gz"], cwd=tmp_path)
    [f] = report["findings"]
    assert f["path"] == f"i.tar.gz!acme/api:1.4!sha256:{digests[0][:12]}!app/.env"
    assert f["encoding"] == "gzip+tar+tar"


def _large_layer(t: list[str], damaged: bool) -> dict[str, bytes]:
    """A layer past tars.WHOLE (mapped and searched in place, not streamed): 12 MiB of
    clean text in 40 members (the in-place search goes over several regions), tokens in
    plain members at its start, middle and end and in a binary one, gzipped members
    (one with a token, clean ones, and a damaged one), and a member past WHOLE with a
    token at its end."""
    filler = b"".join(b"line %d of a clean configuration file\n" % i for i in range(8000))
    members: dict[str, bytes] = {}
    for i in range(40):
        members[f"usr/share/doc/f{i:02}.txt"] = filler
        if i % 10 == 3:
            members[f"usr/share/man/m{i:02}.gz"] = gzip.compress(filler[:200_000])
    members["usr/share/doc/f00.txt"] = f"T={t[0]}\n".encode() + filler
    members["usr/share/doc/f20.txt"] = filler + f"T={t[1]}\n".encode()
    members["usr/share/doc/f39.txt"] = filler[:1000] + f"X={t[2]}\n".encode()
    members["usr/lib/x.so"] = b"\x7fELF" + bytes(5000) + f"k={t[3]}".encode() + bytes(100)
    members["usr/share/man/tok.gz"] = gzip.compress(filler[:50_000] + f"T={t[4]}\n".encode())
    if damaged:
        members["usr/share/man/bad.gz"] = gzip.compress(filler[:50_000])[:-20]
    members["var/big.log"] = filler * 14 + f"T={t[5]}\n".encode()  # ~4.5 MB
    return members


@pytest.mark.parametrize("damaged", [False, True])
@pytest.mark.parametrize("layout", ["legacy", "oci"])
def test_a_large_layer_searched_in_place_reads_as_the_stream_does(
        layout: str, damaged: bool, scan: Any, tmp_path: Path,
        make_token: Callable[[], str]) -> None:
    """A large uncompressed layer is searched in place in the mapped tarball (plain
    members in regions, small gzipped ones inflated in one call); the same image read
    through stdin is streamed. Both find the same tokens, with the same names, lines,
    columns and encodings, and the same one error for a damaged member."""
    t = [make_token() for _ in range(6)]
    layer_members = _large_layer(t, damaged)
    digests = docker_save(tmp_path / "image.tar", "acme/api:1.4",
                          [layer_members, {"app/.env": f"T={t[0]}\n".encode()}],
                          [], layout=layout)
    status, mapped, proc = scan(["image.tar"], cwd=tmp_path)
    status2, streamed, proc2 = scan(["-"], input=(tmp_path / "image.tar").read_bytes())
    assert status == status2 == (2 if damaged else 1), proc.err  # an error: exit 2
    for p in (proc, proc2):  # the damaged member, and nothing else, is one error line
        assert p.err.count("bad.gz: not valid gzip") == (1 if damaged else 0), p.err

    def seen(report: dict[str, Any], prefix: str) -> set[tuple[Any, ...]]:
        return {(f["path"].removeprefix(prefix), f["line"], f["column"], f["encoding"],
                 f["secret_sha256"]) for f in report["findings"]}

    got = seen(mapped, "image.tar")
    assert got == seen(streamed, "<stdin>")
    layer = f"!acme/api:1.4!sha256:{digests[0][:12]}!"

    def line_of(name: str, token: str) -> int | None:
        data = layer_members[name]
        if name.endswith(".gz"):
            data = gzip.decompress(data)
        if name.endswith(".so"):
            return None  # binary: no lines
        return data[: data.index(token.encode())].count(b"\n") + 1

    where = {"usr/share/doc/f00.txt": 0, "usr/share/doc/f20.txt": 1,
             "usr/share/doc/f39.txt": 2, "usr/lib/x.so": 3, "usr/share/man/tok.gz": 4,
             "var/big.log": 5}
    assert {(p.removeprefix(layer), line, enc, h) for p, line, _, enc, h in got
            if p.startswith(layer)} == {
        (name, line_of(name, t[i]), "tar+tar+gzip" if name.endswith(".gz") else "tar+tar",
         hashed(t[i])) for name, i in where.items()}


#: An image's JSON is written by whoever made the image: every field of every type.
#: (name, manifest.json items given the config's member name, the config's bytes or None
#: for a well-formed one)
_BAD_DOCKER: list[tuple[str, Callable[[str, str], Any], bytes | None]] = [
    ("repotags-int", lambda c, la: [{"Config": c, "RepoTags": 5, "Layers": [la]}], None),
    ("repotags-str", lambda c, la: [{"Config": c, "RepoTags": "abc", "Layers": [la]}], None),
    ("config-not-str", lambda c, la: [{"Config": 5, "RepoTags": [None, 3], "Layers": [la]}],
     None),
    ("config-a-list", lambda c, la: [{"Config": c, "Layers": [la]}], b"[1, 2]"),
    ("rootfs-null", lambda c, la: [{"Config": c, "Layers": [la]}], b'{"rootfs": null}'),
    ("rootfs-str", lambda c, la: [{"Config": c, "Layers": [la]}], b'{"rootfs": "x"}'),
    ("diff-ids-int", lambda c, la: [{"Config": c, "Layers": [la]}],
     b'{"rootfs": {"diff_ids": 7}}'),
    ("layers-mixed", lambda c, la: [{"Config": c, "Layers": [1, None, {}, la]}], None),
    ("manifest-a-dict", lambda c, la: {"Config": 1, "Layers": 2}, None),
]


@pytest.mark.parametrize("name,manifest,config", _BAD_DOCKER, ids=[b[0] for b in _BAD_DOCKER])
def test_docker_save_with_malformed_json_is_still_scanned(
        name: str, manifest: Callable[[str, str], Any], config: bytes | None, scan: Any,
        tmp_path: Path, make_token: Callable[[], str]) -> None:
    """Wrong types in manifest.json or the config (a list for an object, an int for a
    list, null) are not an internal error: every layer is still scanned and found."""
    token = make_token()
    layer = tar_bytes({"app/.env": f"T={token}\n".encode()})
    config = config if config is not None else json.dumps(
        {"rootfs": {"diff_ids": [f"sha256:{sha(layer)}"]}}).encode()
    files = {f"blobs/sha256/{sha(config)}": config, f"blobs/sha256/{sha(layer)}": layer}
    files["manifest.json"] = json.dumps(
        manifest(f"blobs/sha256/{sha(config)}", f"blobs/sha256/{sha(layer)}")).encode()
    (tmp_path / "image.tar").write_bytes(tar_bytes(files))
    status, report, proc = scan(["image.tar"], cwd=tmp_path)
    assert status == 1, proc.err
    assert "internal error" not in proc.err
    assert not report.get("errors")
    assert [f["secret_sha256"] for f in report["findings"]] == [hashed(token)]
    assert report["findings"][0]["path"].endswith("!app/.env")


_BAD_OCI: list[tuple[str, Callable[[str], Any], Callable[[str, str], Any] | None]] = [
    ("manifests-int", lambda m: {"manifests": 5}, None),
    ("index-a-list", lambda m: [1], None),
    ("config-str", lambda m: {"manifests": [{"digest": f"sha256:{m}"}]},
     lambda c, la: {"config": "x", "layers": [{"digest": f"sha256:{la}"}]}),
    ("digests-not-str", lambda m: {"manifests": [{"digest": f"sha256:{m}"}]},
     lambda c, la: {"config": {"digest": 5}, "layers": [{"digest": 7}, 3, None]}),
    ("ref-name-a-list", lambda m: {"manifests": [{"digest": f"sha256:{m}", "annotations": {
        "org.opencontainers.image.ref.name": [1, 2]}}]}, None),
    ("annotations-str", lambda m: {"manifests": [{"digest": f"sha256:{m}",
                                                  "annotations": "x"}]}, None),
]


@pytest.mark.parametrize("form", ["folder", "tarball"])
@pytest.mark.parametrize("name,index,manifest", _BAD_OCI, ids=[b[0] for b in _BAD_OCI])
def test_oci_layout_with_malformed_json_is_still_scanned(
        name: str, index: Callable[[str], Any], manifest: Callable[[str, str], Any] | None,
        form: str, scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    token = make_token()
    layer = tar_bytes({"app/.env": f"T={token}\n".encode()})
    config = b'{"rootfs": {"diff_ids": []}}'
    man = json.dumps(manifest(sha(config), sha(layer)) if manifest else {
        "schemaVersion": 2, "config": {"digest": f"sha256:{sha(config)}"},
        "layers": [{"digest": f"sha256:{sha(layer)}"}]}).encode()
    files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
             "index.json": json.dumps(index(sha(man))).encode(),
             f"blobs/sha256/{sha(man)}": man, f"blobs/sha256/{sha(config)}": config,
             f"blobs/sha256/{sha(layer)}": layer}
    if form == "folder":
        write_folder(tmp_path / "oci", files)
    else:
        (tmp_path / "oci").write_bytes(tar_bytes(files))
    status, report, proc = scan(["oci"], cwd=tmp_path)
    assert status == 1, proc.err
    assert "internal error" not in proc.err
    assert [f["secret_sha256"] for f in report["findings"]] == [hashed(token)]


@pytest.mark.parametrize("blob", ["traversal-to-dev-zero", "fifo", "link-to-dev-zero",
                                  "link-out-of-the-folder", "too-large"])
def test_oci_folder_reads_only_its_own_small_regular_files(
        blob: str, scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    """index.json is the image maker's: a digest that is a path (``../../dev/zero``), or
    a blob that is a FIFO, a link (to a device, or out of the folder) or huge, is never
    opened for reading past its bound: the scan ends (no hang, no memory blow-up), the
    folder's files are scanned, and nothing outside it is read as a manifest."""
    token = make_token()
    root = tmp_path / "oci"
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_bytes(b'{"imageLayoutVersion": "1.0.0"}')
    (root / "app.env").write_text(f"T={token}\n")
    digest = "a" * 64
    target = root / "blobs" / "sha256" / digest
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"layers": [{"digest": "sha256:" + "b" * 64}]}))
    if blob == "traversal-to-dev-zero":
        digest = "../../../../../../../../../../dev/zero"
    elif blob == "fifo":
        os.mkfifo(target)
    elif blob == "link-to-dev-zero":
        target.symlink_to("/dev/zero")
    elif blob == "link-out-of-the-folder":
        target.symlink_to(outside)
    else:
        target.write_bytes(b"{" + b" " * (2 << 20) + b"}")
    (root / "index.json").write_text(json.dumps({"manifests": [{
        "digest": f"sha256:{digest}",
        "annotations": {"org.opencontainers.image.ref.name": "acme/x:1"}}]}))
    status, report, proc = scan(["oci"], cwd=tmp_path, timeout=60)
    assert "internal error" not in proc.err
    assert [f["secret_sha256"] for f in report["findings"]] == [hashed(token)]
    assert status in (1, 2)


@pytest.mark.parametrize("layout", ["legacy", "oci"])
def test_a_large_image_split_across_workers_reads_as_one_reader(
        layout: str, scan: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    """A layer large enough to be split across worker processes (parts of its members
    scanned by each, merged back in order) gives the very report one process gives:
    tokens early, in the middle and late in the layer, in a gzipped member, a nested
    tar, a member's and a folder's name, a binary member, a file a later layer's
    whiteout deletes, and the config."""
    import random

    rng = random.Random(7)
    t = [make_token() for _ in range(9)]
    big: dict[str, bytes] = {"app/.env": f"TOKEN={t[0]}\n".encode()}
    for i in range(3000):
        big[f"usr/share/doc/p{i}/README"] = f"package {i}\n".encode() * rng.randrange(1, 40)
        if i % 3 == 0:
            big[f"usr/share/man/man1/p{i}.1.gz"] = gzip.compress(b".TH P 1\n" * 50, 1)
        if i % 500 == 0:  # filler: the layer passes the size from which it is split
            big[f"usr/lib/blob{i}.so"] = b"\x7fELF" + rng.randbytes(12 << 20)
        if i % 20 == 0:  # a zlib magic that opens nothing, as binaries have
            big[f"usr/lib/p{i}.so"] = b"\x7fELF\0" + rng.randbytes(9000) + b"x\x9c" \
                + rng.randbytes(9000)
        if i == 1500:
            big["srv/middle.yaml"] = f"token: {t[1]}\n".encode()
            big["usr/share/man/man1/secret.1.gz"] = gzip.compress(f"K={t[2]}\n".encode())
            big["srv/inner.tar"] = tar_bytes({"conf/k.ini": f"k={t[3]}\n".encode()})
            big[f"srv/notes-{t[4]}.txt"] = b"clean\n"
            big[f"srv/dir-{t[5]}/a"] = b"clean\n"
            big["usr/lib/tool.bin"] = b"\x7fELF\0" + f"{t[6]}".encode() + bytes(100)
    big["zz/late.env"] = f"LATE={t[7]}\n".encode()
    layers = [big, {"app/.wh..env": b"", "srv/live.yaml": b"clean\n"}]
    docker_save(tmp_path / "image.tar", "acme/big:2", layers, [f"CENDIS_TOKEN={t[8]}"],
                layout=layout)
    from scanner.engine.tars import SPLIT_MIN

    assert (tmp_path / "image.tar").stat().st_size > SPLIT_MIN + (8 << 20)
    reports = []
    for jobs in ("1", "2"):
        status, report, proc = scan(["image.tar", "--jobs", jobs], cwd=tmp_path)
        assert status == 1, proc.err
        report["summary"].pop("seconds")
        reports.append(report)
    assert reports[0] == reports[1]
    found = {f["secret_sha256"] for f in reports[1]["findings"]}
    assert found == {hashed(x) for x in t}
    deleted = [f for f in reports[1]["findings"] if (f["note"] or "").startswith(DELETED)]
    assert [f["path"].rpartition("!")[2] for f in deleted] == ["app/.env"]
    assert all("acme/big:2!" in f["path"] for f in reports[1]["findings"])
