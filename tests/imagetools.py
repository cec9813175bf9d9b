"""Builders for the archives and container images the tests scan: tars and zips with
the standard library's tarfile and zipfile, a ``docker save`` tarball (legacy and OCI-in-docker
layouts) and an OCI image layout (folder or tarball), with real sha256 digests.
No Docker engine is needed: an image is a tar of tars and JSON."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

Members = dict[str, bytes]


def tar_bytes(members: Members, *, fmt: int = tarfile.PAX_FORMAT,
              links: dict[str, tuple[bytes, str]] | None = None) -> bytes:
    """A tar of ``members`` (name -> bytes); ``links``: name -> (type, target) for
    symlinks, hard links, devices."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            tar.addfile(info)
    return out.getvalue()


def zip_bytes(members: Members, *, deflate: bool = True) -> bytes:
    """A zip of ``members`` (name -> bytes), deflated or stored."""
    out = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(out, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def docker_save(path: Path, ref: str, layers: list[Members], env: list[str], *,
                layout: str = "oci") -> list[str]:
    """A ``docker save`` tarball of one image; returns the layers' digests (hex).
    ``layout``: ``legacy`` (``<id>/layer.tar``, ``<config>.json``) or ``oci`` (the
    Docker 25+ layout: blobs/sha256/, index.json and manifest.json)."""
    tars = [tar_bytes(m) for m in layers]
    diff_ids = [sha(t) for t in tars]
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/bin", *env], "Cmd": ["/app/run"]},
        "history": [{"created_by": f"/bin/sh -c #(nop)  ENV {e}"} for e in env],
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
    }).encode()
    files: Members = {}
    if layout == "legacy":
        names = []
        for i, t in enumerate(tars):
            folder = sha(f"v1-{i}".encode())
            files[f"{folder}/layer.tar"] = t
            files[f"{folder}/VERSION"] = b"1.0"
            names.append(f"{folder}/layer.tar")
        config_name = f"{sha(config)}.json"
        files[config_name] = config
    else:
        names = [f"blobs/sha256/{d}" for d in diff_ids]
        files.update(dict(zip(names, tars, strict=True)))
        config_name = f"blobs/sha256/{sha(config)}"
        files[config_name] = config
        manifest = _oci_manifest(config, tars)
        files[f"blobs/sha256/{sha(manifest)}"] = manifest
        files["index.json"] = _index(manifest, ref)
        files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    files["manifest.json"] = json.dumps(
        [{"Config": config_name, "RepoTags": [ref], "Layers": names}]).encode()
    path.write_bytes(tar_bytes(files))
    return diff_ids


def _oci_manifest(config: bytes, blobs: list[bytes], gz: bool = False) -> bytes:
    media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gz else "")
    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{sha(config)}", "size": len(config)},
        "layers": [{"mediaType": media, "digest": f"sha256:{sha(b)}", "size": len(b)}
                   for b in blobs],
    }).encode()


def _index(manifest: bytes, ref: str) -> bytes:
    return json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": f"sha256:{sha(manifest)}", "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": ref}}]}).encode()


def oci_layout(ref: str, layers: list[Members], env: list[str]) -> tuple[Members, list[str]]:
    """The files of an OCI image layout with gzip layers; returns (files, layer
    digests)."""
    blobs = [gzip.compress(tar_bytes(m), 1) for m in layers]
    config = json.dumps({"config": {"Env": env}, "rootfs": {"type": "layers"}}).encode()
    manifest = _oci_manifest(config, blobs, gz=True)
    files = {f"blobs/sha256/{sha(b)}": b for b in [*blobs, config, manifest]}
    files["index.json"] = _index(manifest, ref)
    files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    return files, [sha(b) for b in blobs]


def write_folder(root: Path, files: Members) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
