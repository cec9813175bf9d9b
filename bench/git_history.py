"""Whole-history scan (issue target: ``git REPO --all`` on git/git in <= 25 s, <= 200 MB).

Times ``cendis-scan git REPO --all --format json`` with peak RSS of the scanner's largest
process (``/usr/bin/time -f %M``), then one extra run sampling the summed RSS of the whole
process tree (the scanner and any git it runs beside it). References in the same sitting:
listing every object, and decompressing every object (a floor for blob-based scanning).
"""

from __future__ import annotations

from pathlib import Path

import common


def main() -> None:
    parser = common.base_parser(__doc__, runs=3)
    parser.add_argument("repo", type=Path, help="git repository, e.g. /work/corpora/git")
    parser.add_argument("--no-tree-rss", action="store_true", help="skip the sampled run")
    parser.add_argument("--no-refs", action="store_true", help="skip the git references")
    args = parser.parse_args()
    cli = common.find_cli(args.cli)
    commits = common.git("rev-list", "--all", "--count", cwd=args.repo)
    print(f"repo {args.repo}: {commits} commits reachable from --all")

    cmd = [*cli, "git", str(args.repo), "--all", "--format", "json"]
    runs = common.repeat(cmd, args.runs, warmup=0, rss=True)
    common.report("cendis-scan git --all", [r.wall for r in runs])
    common.report_rss("cendis-scan git --all (max proc)", [r.peak_rss_kb for r in runs])
    print(f"  summary: {common.summary(runs[-1])}")
    if not args.no_tree_rss:
        wall, peak, anon = common.run_tree_sampled(cmd)
        print(
            f"  sampled run: {wall:.2f} s, tree RSS peak {peak / 1024:.1f} MiB "
            f"(anonymous {anon / 1024:.1f} MiB)"
        )

    if args.no_refs:
        return
    refs = {
        "ref: git rev-list --all --objects": ["rev-list", "--all", "--objects"],
        "ref: git cat-file --batch-all-objects": [
            "cat-file",
            "--batch-all-objects",
            "--batch",
            "--unordered",
        ],
    }
    for label, git_args in refs.items():
        ref = common.repeat(
            ["git", "-C", str(args.repo), *git_args], 1, warmup=0, rss=True, capture=False
        )
        common.report(label, [r.wall for r in ref])
        common.report_rss(label, [r.peak_rss_kb for r in ref])


if __name__ == "__main__":
    main()
