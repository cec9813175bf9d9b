"""Throughput on one large log file (issue target: a 1 GB log at >= 1 GB/s).

Generates the log once (reused while its size and seed match), warms the page cache, then
times ``cendis-scan scan FILE --format json`` against grep (and rg, if installed) in the
same sitting, so that the machine's speed can be read off the references.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import common

SEED = 20250303
TOKENS = 3  # at ~10 %, ~50 % and in the last line but one


def generate(path: Path, size: int) -> dict[str, object]:
    """Write ``size`` bytes (give or take a line) of logs with TOKENS confirmed tokens."""
    rng = random.Random(SEED)
    lines = common.LogLines(seed=SEED)
    pool = [lines.block(common.MIB) for _ in range(16)]
    tokens = [common.make_token(rng) for _ in range(TOKENS)]
    marks = [size // 10, size // 2]
    last = common.token_line(tokens[-1], "shutdown")
    tail = last + b"2025-03-03T23:59:59.999Z INFO  [worker] shutdown complete\n"
    written = prefix_lines = placed = 0
    tmp = path.with_suffix(path.suffix + ".part")
    with open(tmp, "wb") as fh:
        while True:
            block = pool[rng.randrange(len(pool))]
            if placed < len(marks) and written >= marks[placed]:
                block = common.token_line(tokens[placed], "deploy") + block
                placed += 1
            room = size - written - len(tail)
            if len(block) >= room:
                block = block[: block.rfind(b"\n", 0, max(room, 1)) + 1] + tail
            fh.write(block)
            written += len(block)
            prefix_lines += block.count(b"cendis_pat_")
            if block.endswith(tail):
                break
    tmp.rename(path)
    meta = {
        "seed": SEED,
        "size_target": size,
        "size": path.stat().st_size,
        "confirmed": TOKENS,
        "token_sha256": [common.token_sha256(t) for t in tokens],
        "grep_count": prefix_lines,  # lines holding the prefix: tokens plus placeholders
    }
    path.with_suffix(path.suffix + ".meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def ensure(path: Path, size: int) -> dict[str, object]:
    meta_path = path.with_suffix(path.suffix + ".meta.json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if (
            meta.get("seed") == SEED
            and meta.get("size_target") == size
            and meta.get("size") == path.stat().st_size
        ):
            return meta
    print(f"generating {path} ({size / common.GB:.2f} GB) ...", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return generate(path, size)


def main() -> None:
    parser = common.base_parser(__doc__)
    parser.add_argument("--size-gb", type=float, default=1.0, help="file size in GB (1)")
    parser.add_argument("--path", type=Path, default=Path("/work/corpora/big.log"))
    parser.add_argument("--generate-only", action="store_true", help="write the corpus, exit")
    args = parser.parse_args()

    size = int(args.size_gb * common.GB)
    meta = ensure(args.path, size)
    nbytes = int(meta["size"])  # type: ignore[arg-type]
    print(f"corpus {args.path}: {nbytes:,} bytes, {meta['confirmed']} confirmed tokens")
    if args.generate_only:
        return
    cli = common.find_cli(args.cli)
    common.warm_cache([args.path])

    runs = common.repeat([*cli, "scan", str(args.path), "--format", "json"], args.runs)
    common.report("cendis-scan scan --format json", [r.wall for r in runs], nbytes)
    summ = common.summary(runs[-1])
    print(f"  summary: {summ}")
    if summ.get("findings") != meta["confirmed"]:
        print(f"  WARNING: expected {meta['confirmed']} findings", file=sys.stderr)

    grep = common.repeat(["grep", "-c", "cendis_pat_", str(args.path)], args.runs)
    common.report("ref: grep -c cendis_pat_", [r.wall for r in grep], nbytes)
    if shutil.which("rg"):
        rg = common.repeat(["rg", "-c", "cendis_pat_", str(args.path)], args.runs)
        common.report("ref: rg -c cendis_pat_", [r.wall for r in rg], nbytes)
    else:
        print("ref: rg not installed")


if __name__ == "__main__":
    main()
