"""Incremental scan (issue target: ``--since-commit`` over 10 new commits in < 0.5 s).

In a ``git clone --shared`` copy of REPO (the corpus stays clean), adds 10 small commits,
one of them with a token, and times ``cendis-scan git . --since-commit <sha before them>``.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import common

COMMITS = 10


def main() -> None:
    parser = common.base_parser(__doc__)
    parser.add_argument("repo", type=Path, help="git work tree, e.g. /work/corpora/git")
    args = parser.parse_args()
    cli = common.find_cli(args.cli)

    with tempfile.TemporaryDirectory(prefix="bench-since-") as tmp:
        work = common.shared_clone(args.repo, Path(tmp, "repo"))
        base = common.git("rev-parse", "HEAD", cwd=work)
        rng = random.Random()
        leak = rng.randrange(COMMITS)
        for i in range(COMMITS):
            notes = work / "bench-notes" / f"note-{i}.txt"
            notes.parent.mkdir(exist_ok=True)
            text = f"note {i}\n" + "".join(f"line {j} of note {i}\n" for j in range(40))
            if i == leak:
                text += f"CENDIS_TOKEN={common.make_token(rng)}\n"
            notes.write_text(text)
            common.git("add", str(notes), cwd=work)
            common.git("commit", "-q", "-m", f"bench: note {i}", cwd=work)
        print(f"{COMMITS} commits on top of {base[:12]}, token in commit {leak + 1}")

        cmd = [*cli, "git", ".", "--since-commit", base, "--format", "json"]
        runs = common.repeat(cmd, args.runs, cwd=work)
        summ = common.summary(runs[-1])
        print(f"  summary: {summ}")
        if summ.get("findings") != 1:
            print("  WARNING: expected 1 finding")
        common.report("cendis-scan git --since-commit", [r.wall for r in runs])
        log = common.repeat(["git", "log", "-p", f"{base}..HEAD"], args.runs, cwd=work)
        common.report("ref: git log -p BASE..HEAD", [r.wall for r in log])


if __name__ == "__main__":
    main()
