"""Container images without a Docker engine: a ``docker save`` tarball (the legacy
layout, ``<id>/layer.tar``, and the newer one with OCI blobs in ``blobs/sha256/``) and
an OCI image layout (a folder or a tarball: ``oci-layout``, ``index.json``, blobs).

An image is read as the tar (or folder) it is: every layer is a member that is a tar
(plain, gzip or zstd), scanned member by member like any tar, and the config blob is a
JSON member scanned like any file (``ENV CENDIS_TOKEN=…`` lands in its ``Env`` and
``history``). What this module adds, once the members are scanned, is the names: a
finding in ``image.tar!blobs/sha256/<hex>!app/.env`` becomes
``image.tar!acme/api:1.4!sha256:<12 hex>!app/.env`` (the reference from ``RepoTags``
or the ``org.opencontainers.image.ref.name`` annotation, the layer's digest cut to 12
hex digits as ``docker images`` shows it, then the path), the config's
``image.tar!acme/api:1.4!config``. A file that a later layer of the same image deletes
(a whiteout) is still in the image's layers, so it is still reported, with a note
saying so.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scanner.sources.origin import Origin

#: Hex digits of a digest shown in a name.
SHORT = 12
#: Index and manifest JSON files read from an OCI folder at most this large.
JSON_MAX = 1 << 20
#: A sha256 digest's hex: anything else in a digest (``../../dev/zero``) would make a
#: blob's name a path out of the image, so it names no blob.
_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(slots=True)
class Image:
    ref: str  # acme/api:1.4, or sha256:<12> when the image has no name
    config: str | None  # the config's member name
    layers: list[tuple[str, str]]  # (member name, digest hex), lowest layer first


def _json(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting: no manifest
        return None


def _hex(digest: Any) -> str | None:
    """The hex of a ``sha256:<64 hex>`` digest, else None (the file is made by whoever
    made the image: any type, any text)."""
    if isinstance(digest, str) and digest.startswith("sha256:") \
            and _DIGEST.fullmatch(digest[7:]):
        return digest[7:]
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _docker(kept: Mapping[str, bytes]) -> list[Image]:
    """``manifest.json`` of ``docker save``: Config, RepoTags and Layers per image."""
    manifest = _json(kept.get("manifest.json"))
    if not isinstance(manifest, list):
        return []
    images = []
    for item in manifest:
        if not isinstance(item, dict) or not isinstance(item.get("Layers"), list):
            continue
        config = item.get("Config") if isinstance(item.get("Config"), str) else None
        tags = [t for t in _list(item.get("RepoTags")) if isinstance(t, str) and t]
        config_hex = (config or "").rpartition("/")[2].removesuffix(".json")
        diff_ids = _list(_dict(_dict(_json(kept.get(config or ""))).get("rootfs"))
                         .get("diff_ids"))
        layers = []
        for i, member in enumerate(item["Layers"]):
            if not isinstance(member, str):
                continue
            digest = member.rpartition("/")[2] if member.startswith("blobs/") else None
            if digest is None and i < len(diff_ids):
                digest = _hex(diff_ids[i])
            layers.append((member, digest or member.partition("/")[0]))
        ref = tags[0] if tags else f"sha256:{config_hex[:SHORT] or 'unknown'}"
        images.append(Image(ref, config, layers))
    return images


def _oci(kept: Mapping[str, bytes]) -> list[Image]:
    """``index.json`` -> manifests (through nested indexes, as a multi-platform image
    has) -> config and layers, all blobs in ``blobs/sha256/``."""
    index = _json(kept.get("index.json"))
    images: list[Image] = []

    def walk(doc: Any, ref: str | None, depth: int) -> None:
        if not isinstance(doc, dict) or depth > 3:
            return
        for desc in _list(doc.get("manifests")):
            if not isinstance(desc, dict) or (digest := _hex(desc.get("digest"))) is None:
                continue
            notes = _dict(desc.get("annotations"))
            named = [n for n in (notes.get("io.containerd.image.name"),
                                 notes.get("org.opencontainers.image.ref.name"))
                     if isinstance(n, str) and n]
            name = named[0] if named else ref
            blob = _json(kept.get(f"blobs/sha256/{digest}"))
            if isinstance(blob, dict) and "manifests" in blob:
                walk(blob, name, depth + 1)
                continue
            if not isinstance(blob, dict) or not isinstance(blob.get("layers"), list):
                continue
            config = _hex(_dict(blob.get("config")).get("digest"))
            layers = [(f"blobs/sha256/{h}", h) for d in blob["layers"]
                      if isinstance(d, dict) and (h := _hex(d.get("digest")))]
            # Untagged: named by the config's digest, the image ID ``docker images``
            # shows (as for the legacy layout), not the manifest's.
            images.append(Image(str(name or f"sha256:{(config or digest)[:SHORT]}"),
                                None if config is None else f"blobs/sha256/{config}", layers))

    walk(index, None, 0)
    return images


def read_images(kept: Mapping[str, bytes]) -> list[Image]:
    """The images a tarball or folder holds (``docker save`` first: its RepoTags are
    the names people use), or none."""
    return _docker(kept) or _oci(kept)


@dataclass(frozen=True, slots=True)
class _Named:
    """What a member of an image is shown as: ``ref!sha256:<12>`` (a layer, at
    ``position`` from the lowest) or ``ref!config`` (position -1)."""

    shown: str
    position: int
    image: tuple[str, str | None]  # (reference, layer or None): Finding.image


def _rename(path: str, prefix: str, sep: str, names: dict[str, _Named]
            ) -> tuple[str, str, _Named] | None:
    """(new path, path inside the member, what the member is named) for a path inside a
    known member, else None."""
    if not path.startswith(prefix + sep):
        return None
    rest = path[len(prefix) + len(sep):]
    member, bang, inner = rest.partition("!")
    named = names.get(member)
    if named is None:
        return None
    return f"{prefix}!{named.shown}{bang}{inner}", inner, named


def apply(outcome: Any, since: int, origin: Origin, images: list[Image], sep: str = "!",
          errors_since: int = 0) -> None:
    """Rename the findings ``outcome`` gained since index ``since`` inside ``origin``
    (the tarball, or the folder with ``sep`` ``/``) after their image and layer, and
    note those a later layer deletes; and the errors gained since ``errors_since`` (a
    layer that is a bomb is named like its findings, not by its blob's path)."""
    from scanner.scrub import scrub

    if not images:
        return
    names: dict[str, _Named] = {}
    owner: dict[str, tuple[Image, int]] = {}
    for image in images:
        ref = scrub(image.ref)
        if image.config and image.config not in names:
            names[image.config] = _Named(f"{image.ref}!config", -1, (ref, None))
        for i, (member, digest) in enumerate(image.layers):
            if member not in names:
                layer = f"sha256:{digest[:SHORT]}"
                names[member] = _Named(f"{image.ref}!{layer}", i, (ref, layer))
                owner[member] = (image, i)
    raw_prefix = origin.path or "-"
    prefix, fp_prefix = scrub(raw_prefix), scrub(origin.fingerprint_path or raw_prefix)
    out = outcome.findings[:since]
    for f in outcome.findings[since:]:
        moved = _rename(f.path or "", prefix, sep, names)
        if moved is None:
            out.append(f)
            continue
        path, inner, named = moved
        member = (f.path or "")[len(prefix) + len(sep):].partition("!")[0]
        fp = _rename(f.fingerprint_path or "", fp_prefix, sep, names)
        note = f.note
        if named.position >= 0:
            deleted_by = _deleted_by(outcome.whiteouts, raw_prefix + sep, owner[member],
                                     inner.partition("!")[0])
            if deleted_by is not None:
                note = (f"deleted in a later layer (sha256:{deleted_by[:SHORT]}), but still "
                        "in the image: anyone who pulls it can read the earlier layer")
        # A token in a member's name stays a name (``location`` path, its offset moved
        # with the name's new beginning), a link's target a link; content is "image".
        location, offset = f.location, f.offset
        if location == "path":
            offset += len(path.encode()) - len((f.path or "").encode())
        elif location != "link":
            location = "image"
        out.append(replace(f, path=path, fingerprint_path=None if fp is None else fp[0],
                           location=location, offset=offset, note=note,
                           image=named.image))
    outcome.findings = out
    for i in range(errors_since, len(outcome.errors)):
        error = outcome.errors[i]
        moved = _rename(error.path or "", prefix, sep, names)
        if moved is not None and error.message.startswith(error.path or ""):
            outcome.errors[i] = replace(error, path=moved[0], message=moved[0]
                                        + error.message[len(error.path or ""):])


def _deleted_by(whiteouts: dict[str, list[str]], lead: str, at: tuple[Image, int],
                path: str) -> str | None:
    """The digest of the first layer above ``at`` whose whiteouts delete ``path``."""
    image, position = at
    path = path.lstrip("/")
    for member, digest in image.layers[position + 1 :]:
        for gone in whiteouts.get(lead + member, ()):
            if gone == "/" or (path.startswith(gone) if gone.endswith("/")
                               else path == gone or path.startswith(gone + "/")):
                return digest
    return None


def name_images(outcome: Any, since: int, origin: Origin, kept: Mapping[str, bytes],
                errors_since: int = 0) -> None:
    """After a tar is scanned: if it is an image, its findings and errors renamed (see
    :func:`apply`)."""
    apply(outcome, since, origin, read_images(kept), errors_since=errors_since)


class _Folder(Mapping[str, bytes]):
    """An OCI layout folder's small JSON files, read when asked for."""

    def __init__(self, root: str):
        self.root = root

    def __getitem__(self, name: str) -> bytes:
        """A regular file of the folder, at most JSON_MAX bytes; never a FIFO or a
        device (opened without blocking, never read: ``/dev/zero`` has size 0 and no
        end), never through a link (a blob is the folder's own file)."""
        path = os.path.join(self.root, *name.split("/"))
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags)
        except OSError:
            raise KeyError(name) from None
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                chunks, size = [], 0
                while size <= JSON_MAX and (chunk := os.read(fd, JSON_MAX + 1 - size)):
                    chunks.append(chunk)
                    size += len(chunk)
                if size <= JSON_MAX:
                    return b"".join(chunks)
        except OSError:
            pass
        finally:
            os.close(fd)
        raise KeyError(name)

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


def name_folders(outcome: Any, origins: list[Origin],
                 shown: Callable[[str], str] | None = None) -> None:
    """OCI layout folders met by a directory scan (an ``oci-layout`` file beside an
    ``index.json``): their blobs' findings renamed after the images."""
    for origin in origins:
        if origin.fs_path is None or os.path.basename(origin.fs_path) != "oci-layout":
            continue
        root = os.path.dirname(origin.fs_path)
        folder = _Folder(root)
        images = read_images(folder)
        if not images:
            continue
        display = (origin.path or "").rpartition("/")[0] or "."
        fp = (origin.fingerprint_path or "").rpartition("/")[0] or "."
        apply(outcome, 0, replace(origin, path=display, fingerprint_path=fp), images,
              sep="/")
