"""Latency on one small file (issue target: <= 0.12 s), i.e. mostly start-up cost.

``python -c pass`` and ``python -c 'import scanner.cli'`` under the scanner's own
interpreter, and ``cendis-scan version``, timed in the same sitting, show how much of the
figure is the interpreter floor, import time and CLI start-up.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import common


def main() -> None:
    parser = common.base_parser(__doc__, runs=20)
    args = parser.parse_args()
    cli = common.find_cli(args.cli)
    python = common.cli_python(cli)

    with tempfile.TemporaryDirectory(prefix="bench-small-") as tmp:
        env = Path(tmp, ".env")
        token = common.make_token(random.Random())
        env.write_text(f"DATABASE_URL=postgres://app@db/app\nCENDIS_TOKEN={token}\nDEBUG=0\n")
        runs = common.repeat([*cli, "scan", str(env)], args.runs)
        if runs[-1].rc != 1:
            print("  WARNING: expected exit 1 (one finding)")
        common.report("cendis-scan scan .env", [r.wall for r in runs], p=True)

    floor = common.repeat([python, "-c", "pass"], args.runs)
    common.report("ref: python -c pass", [r.wall for r in floor], p=True)
    version = common.repeat([*cli, "version"], args.runs)
    common.report("ref: cendis-scan version", [r.wall for r in version], p=True)
    imp = [python, "-c", "import scanner.cli"]
    if common.run(imp, ok=range(256)).rc == 0:
        walls = [r.wall for r in common.repeat(imp, args.runs)]
        common.report("ref: python -c 'import scanner.cli'", walls, p=True)


if __name__ == "__main__":
    main()
