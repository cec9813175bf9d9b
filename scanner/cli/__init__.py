"""``cendis-scan``: a thin dispatcher in front of the library.

Commands on the hot path (``scan``, ``git``, ``redact``, ``check-token``, ``rules``) run
in every pre-commit hook and CI step, so they are parsed with argparse and never import
typer: Python plus typer alone costs more than the 0.12 s a one-file scan may take
(PERF-NOTES.md). Everything else, and the top-level help, goes to the typer app.
"""

from __future__ import annotations

import sys

FAST = ("scan", "git", "redact", "check-token", "rules", "install-hook")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in FAST:
        from scanner.cli.commands import run

        sys.exit(run(args))
    from scanner.cli.app import app, unknown

    problem = unknown(args)
    if problem:  # one line, like every other usage error (click's is four)
        sys.stderr.write(f"cendis-scan: error: {problem} (see cendis-scan --help)\n")
        sys.exit(2)
    app(args=args, prog_name="cendis-scan")
