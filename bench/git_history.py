"""Whole-history scan (issue target: ``git REPO --all`` on git/git in <= 25 s, <= 200 MB).

Times ``cendis-scan git REPO --all --format json`` with peak RSS of the scanner's largest
process (``/usr/bin/time -f %M``), then one extra run sampling the summed RSS of the whole
process tree (the scanner and any git it runs beside it). References in the same sitting:
listing every object, and decompressing every object (a floor for blob-based scanning).

git/git holds no Cendis token, so a scan of it never needs to map blobs back to commits.
Unless ``--no-plant``, the same is timed again in a ``git clone --shared`` copy with two
planted tokens on top (one in a file, one in a commit message): that run includes the
walk of the whole history that finds where each token came in.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import common


def main() -> None:
    parser = common.base_parser(__doc__, runs=3)
    parser.add_argument("repo", type=Path, help="git repository, e.g. /work/corpora/git")
    parser.add_argument("--no-tree-rss", action="store_true", help="skip the sampled run")
    parser.add_argument("--no-refs", action="store_true", help="skip the git references")
    parser.add_argument("--no-plant", action="store_true",
                        help="skip the run on a copy with planted tokens")
    args = parser.parse_args()
    cli = common.find_cli(args.cli)
    measure(cli, args.repo, args, "cendis-scan git --all")
    if not args.no_plant:
        with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
            work = plant(args.repo, Path(tmp, "repo"))
            measure(cli, work, args, "git --all, 2 planted tokens")

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


def measure(cli: list[str], repo: Path, args: argparse.Namespace, label: str) -> None:
    commits = common.git("rev-list", "--all", "--count", cwd=repo)
    print(f"repo {repo}: {commits} commits reachable from --all")
    cmd = [*cli, "git", str(repo), "--all", "--format", "json"]
    runs = common.repeat(cmd, args.runs, warmup=0, rss=True)
    common.report(label, [r.wall for r in runs])
    common.report_rss(f"{label} (max proc)", [r.peak_rss_kb for r in runs])
    print(f"  summary: {common.summary(runs[-1])}")
    if not args.no_tree_rss:
        wall, peak, anon = common.run_tree_sampled(cmd)
        print(
            f"  sampled run: {wall:.2f} s, tree RSS peak {peak / 1024:.1f} MiB "
            f"(anonymous {anon / 1024:.1f} MiB)"
        )


def plant(repo: Path, dest: Path) -> Path:
    """A shared clone with a token added in a file and another in a commit message."""
    work = common.shared_clone(repo, dest)
    rng = random.Random()
    (work / "deploy.env").write_text(f"CENDIS_TOKEN={common.make_token(rng)}\n")
    common.git("add", "deploy.env", cwd=work)
    common.git("-c", "user.name=Bench", "-c", "user.email=bench@example.com", "commit", "-q",
               "-m", "bench: a token in a file", cwd=work)
    common.git("-c", "user.name=Bench", "-c", "user.email=bench@example.com", "commit", "-q",
               "--allow-empty", "-m", f"bench: {common.make_token(rng)} in a message", cwd=work)
    return work


if __name__ == "__main__":
    main()
