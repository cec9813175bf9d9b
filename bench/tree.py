"""Whole-command time on a source tree (issue target: ~5,000 files in <= 0.5 s).

The figure is end to end (interpreter start, walk, ignore rules, reads, report), since that
is what a developer waits for. ripgrep (or grep -r) in the same sitting is the reference.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import common


def main() -> None:
    parser = common.base_parser(__doc__)
    parser.add_argument("tree", type=Path, help="source tree, e.g. /work/corpora/git")
    args = parser.parse_args()

    files = common.tree_files(args.tree)
    nbytes = sum(f.stat().st_size for f in files)
    print(f"tree {args.tree}: {len(files):,} files, {nbytes / 1e6:.1f} MB (excluding .git)")
    cli = common.find_cli(args.cli)
    common.warm_cache(files)

    runs = common.repeat([*cli, "scan", str(args.tree), "--format", "json"], args.runs)
    common.report("cendis-scan scan TREE --format json", [r.wall for r in runs], nbytes)
    print(f"  summary: {common.summary(runs[-1])}")

    if shutil.which("rg"):
        ref = ["rg", "-c", "cendis_pat_", str(args.tree)]
    else:
        ref = ["grep", "-rc", "--exclude-dir=.git", "cendis_pat_", str(args.tree)]
    refs = common.repeat(ref, args.runs)
    common.report(f"ref: {ref[0]} {ref[1]} cendis_pat_", [r.wall for r in refs], nbytes)


if __name__ == "__main__":
    main()
