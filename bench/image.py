"""Throughput on a ~1 GB container image (issue 20: a `docker save` tarball at >= 1 GB/s).

There is no Docker engine here, so the image is built from real files: layers are tars of
trees of this machine (/usr/share, then /usr/lib until the size is reached, and a small
app layer with planted generated tokens, one of them deleted by a whiteout), the config
has a token in its Env. ``docker save`` writes uncompressed layers; ``--gzip`` builds the
OCI-layout variant with gzip layers instead (what a registry holds), which costs
decompression. Times ``cendis-scan scan IMAGE --format json`` (median of --runs, same
sitting) against ``cat IMAGE > /dev/null``. ``--image PATH`` times a tarball you have.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import common

SEED = 20250320


def _tree_layer(out: Path, root: str, budget: int) -> int:
    """A tar of the files under ``root`` (sorted walk) up to ``budget`` bytes."""
    total = 0
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                try:
                    if os.path.islink(path) or not os.path.isfile(path):
                        continue
                    size = os.path.getsize(path)
                    if total + size > budget:
                        return total
                    tar.add(path, arcname=path.lstrip("/"), recursive=False)
                except OSError:
                    continue
                total += size
    return total


def _sha_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def _app_layer(tokens: list[str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in (("app/.env", f"A=1\nCENDIS_TOKEN={tokens[0]}\n"),
                           ("app/config/prod.yaml", f"cendis:\n  token: {tokens[1]}\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data.encode()))
    return out.getvalue()


def _whiteout_layer() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("app/.wh..env"))
    return out.getvalue()


def planted() -> list[str]:
    """The tokens :func:`build` plants (seeded: the same for an image built earlier)."""
    rng = random.Random(SEED)
    return [common.make_token(rng) for _ in range(3)]


def build(path: Path, size: int, gz: bool) -> int:
    """Write the image tarball; return the number of planted tokens."""
    tokens = planted()
    work = Path(tempfile.mkdtemp(prefix="bench-image-", dir=path.parent))
    try:
        layers = []
        left = size - (1 << 20)
        for i, root in enumerate(("/usr/share", "/usr/lib")):
            if left <= 0:
                break
            layer = work / f"l{i}.tar"
            left -= _tree_layer(layer, root, left)
            layers.append(layer)
        for i, data in enumerate((_app_layer(tokens), _whiteout_layer())):
            (work / f"a{i}.tar").write_bytes(data)
            layers.append(work / f"a{i}.tar")
        diff_ids = [_sha_file(p) for p in layers]
        if gz:
            for p in layers:
                subprocess.run(["gzip", "-1", "-f", str(p)], check=True)
            layers = [p.with_suffix(".tar.gz") for p in layers]
        blobs = [_sha_file(p) for p in layers]
        config = json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/bin", f"CENDIS_TOKEN={tokens[2]}"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
        }).encode()
        config_sha = hashlib.sha256(config).hexdigest()
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gz else "")
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"digest": f"sha256:{config_sha}", "size": len(config)},
            "layers": [{"mediaType": media, "digest": f"sha256:{b}",
                        "size": p.stat().st_size} for b, p in zip(blobs, layers, strict=True)],
        }).encode()
        manifest_sha = hashlib.sha256(manifest).hexdigest()
        small = {
            f"blobs/sha256/{config_sha}": config,
            f"blobs/sha256/{manifest_sha}": manifest,
            "index.json": json.dumps({"schemaVersion": 2, "manifests": [{
                "digest": f"sha256:{manifest_sha}", "annotations": {
                    "org.opencontainers.image.ref.name": "bench/app:1.0"}}]}).encode(),
            "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
            "manifest.json": json.dumps([{"Config": f"blobs/sha256/{config_sha}",
                                          "RepoTags": ["bench/app:1.0"],
                                          "Layers": [f"blobs/sha256/{b}" for b in blobs]}
                                         ]).encode(),
        }
        part = path.with_suffix(".part")
        with tarfile.open(part, "w") as tar:
            for blob, layer in zip(blobs, layers, strict=True):
                tar.add(layer, arcname=f"blobs/sha256/{blob}")
            for name, data in small.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        part.replace(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 4  # .env, prod.yaml, and the config's Env; .env is also noted as deleted


def main() -> None:
    parser = common.base_parser(__doc__, runs=3)
    parser.add_argument("--image", type=Path, help="an image tarball to time (not built)")
    parser.add_argument("--size", type=float, default=1.0, help="GB to build (1.0)")
    parser.add_argument("--gzip", action="store_true", help="gzip layers (OCI layout)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where the built image is kept (and reused)")
    parser.add_argument("--jobs", default="0", help="cendis-scan --jobs (0: one per core)")
    args = parser.parse_args()
    cli = common.find_cli(args.cli)
    path = args.image
    if path is None:
        name = f"cendis-bench-image-{args.size:g}GB{'-gz' if args.gzip else ''}.tar"
        path = args.dir / name
        if not path.exists():
            print(f"building {path} ...", flush=True)
            build(path, int(args.size * common.GB), args.gzip)
    size = path.stat().st_size
    print(f"image: {path} ({size / common.GB:.2f} GB)")
    common.warm_cache([path])
    cat = common.repeat(["sh", "-c", f'cat "{path}" > /dev/null'], args.runs)
    scan = common.repeat([*cli, "scan", str(path), "--format", "json", "--jobs", args.jobs],
                         args.runs, rss=True)
    common.report("cat > /dev/null", [r.wall for r in cat], size)
    common.report("cendis-scan scan", [r.wall for r in scan], size)
    common.report_rss("cendis-scan scan", [r.peak_rss_kb for r in scan])
    found = common.summary(scan[-1]).get("findings")
    errors = [ln for ln in scan[-1].stderr.decode("utf-8", "replace").splitlines()
              if ": error: " in ln]
    print(f"findings: {found}; errors: {len(errors)}; exit status {scan[-1].rc}")
    if args.image is None:
        # Exit 2 is not a failure here: /usr/share holds .tar.gz files nested past the
        # tar-depth limit (each one error line). What counts is every planted token.
        try:
            seen = {f.get("secret_sha256") for f in json.loads(scan[-1].stdout)["findings"]}
        except (ValueError, KeyError, TypeError):
            seen = set()
        missing = [t for t in planted() if common.token_sha256(t) not in seen]
        if missing:
            sys.exit(f"bench: {len(missing)} of the planted tokens were not found")

if __name__ == "__main__":
    main()
