"""The layer decoder's cost on clean inputs (issue 20): this checkout against another
(``--before``, e.g. a worktree of main) in one sitting, alternating runs, median of
``-n``: the clean 1 GB log and the git/git work tree, default window and ``all``.

    python bench/layers.py --before /work/main --log /work/corpora/big.clean.log
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common

HERE = Path(__file__).resolve().parents[1]


def once(checkout: Path, target: str, *extra: str) -> float:
    code = ("import sys; from scanner.cli import main; "
            f"sys.argv = ['cendis-scan', 'scan', {target!r}, '--format', 'json', *{extra!r}]; "
            "main()")
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = common.base_parser(__doc__, runs=3)
    parser.add_argument("--before", type=Path, required=True, help="the checkout to compare")
    parser.add_argument("--log", default="/work/corpora/big.clean.log")
    parser.add_argument("--tree", default="/work/corpora/git")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    cases = [("clean 1 GB log", args.log, ()), ("git/git tree", args.tree, ()),
             ("clean 1 GB log, --decode-window all", args.log, ("--decode-window", "all"))]
    for label, target, extra in cases:
        times: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.runs):
            if not extra:
                times["before"].append(once(args.before, target))
            times["after"].append(once(HERE, target, *extra))
        before = statistics.median(times["before"]) if times["before"] else None
        after = statistics.median(times["after"])
        shown = f"{before:.2f} s" if before is not None else "–"
        print(f"{label:40} before {shown:>8}  after {after:.2f} s")


if __name__ == "__main__":
    main()
