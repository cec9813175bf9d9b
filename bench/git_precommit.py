"""Pre-commit latency (issue target: 2-file staged change on git/git, median <= 150 ms).

Works in a ``git clone --shared`` copy of REPO in a temp dir (the corpus stays clean),
stages one edited file and one new file holding a token, then times
``cendis-scan git . --staged``. ``git diff --cached`` and ``python -c pass`` in the same
sitting show the floor.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import common


def main() -> None:
    parser = common.base_parser(__doc__, runs=10)
    parser.add_argument("repo", type=Path, help="git work tree, e.g. /work/corpora/git")
    args = parser.parse_args()
    cli = common.find_cli(args.cli)

    with tempfile.TemporaryDirectory(prefix="bench-precommit-") as tmp:
        work = common.shared_clone(args.repo, Path(tmp, "repo"))
        edited = next(p for p in ("README.md", "README") if (work / p).exists())
        with open(work / edited, "a") as fh:
            fh.write("\nSee bench/README.md for how the scanner is measured.\n")
        token = common.make_token(random.Random())
        (work / "deploy.env").write_text(f"CENDIS_URL=https://api.example\nCENDIS_TOKEN={token}\n")
        common.git("add", edited, "deploy.env", cwd=work)
        print(f"staged: {common.git('diff', '--cached', '--stat', cwd=work).splitlines()[-1]}")

        runs = common.repeat([*cli, "git", ".", "--staged"], args.runs, cwd=work)
        if runs[-1].rc != 1:
            print("  WARNING: expected exit 1 (the staged token)")
        common.report("cendis-scan git . --staged", [r.wall for r in runs], p=True)
        diff = common.repeat(["git", "diff", "--cached"], args.runs, cwd=work)
        common.report("ref: git diff --cached", [r.wall for r in diff], p=True)
    floor = common.repeat([common.cli_python(cli), "-c", "pass"], args.runs)
    common.report("ref: python -c pass", [r.wall for r in floor], p=True)


if __name__ == "__main__":
    main()
