"""``cendis-scan``: a thin dispatcher in front of the library.

Commands are found in :mod:`scanner.cli.table`. Those on the hot path (``scan``,
``git``, ``redact``, ``check-token``...) run in every pre-commit hook and CI step, so
they are parsed with argparse and never import typer: Python plus typer alone costs
more than the 0.12 s a one-file scan may take (PERF-NOTES.md). The rest are typer
commands, and only the module of the command being run is imported.

Every failure the user can fix is one line on stderr and exit status 2; a bug is one
``internal error`` line too, with the traceback behind ``--debug`` or
``CENDIS_SCAN_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys

__all__ = ["ClosedStdout", "debug_wanted", "dispatch", "drop_stdout", "main"]


def __getattr__(name: str) -> object:
    """``ClosedStdout``, ``debug_wanted`` and ``drop_stdout`` were defined here before
    the CLI's shared pieces had a module of their own (:mod:`scanner.cli.console`, which
    the other CLI modules import without a cycle back to this package); imported on
    first use, so a clean hook run does not load it."""
    if name in ("ClosedStdout", "debug_wanted", "drop_stdout"):
        from scanner.cli import console

        return getattr(console, name)
    raise AttributeError(f"module 'scanner.cli' has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    while args and args[0] == "--debug":
        os.environ["CENDIS_SCAN_DEBUG"] = "1"
        args.pop(0)
    if sys.stdout is None:
        from scanner.cli.console import ClosedStdout

        sys.stdout = ClosedStdout()
    try:
        status = dispatch(args)
    except SystemExit as exc:  # argparse's --help and usage errors
        status = exc.code if isinstance(exc.code, int) else 2
    except BrokenPipeError:
        status = 2
    except OSError as exc:  # --help or --version into a closed or full stdout
        from scanner.cli.console import drop_stdout

        drop_stdout()
        sys.stderr.write(f"cendis-scan: error: cannot write the output: "
                         f"{exc.strerror or exc}\n")
        status = 2
    sys.exit(_flushed(status))


def _flushed(status: int) -> int:
    """What is still buffered goes out now, so a full disk or a closed pipe is one line
    and exit 2, not a traceback (or a silent 0) at interpreter exit."""
    try:
        sys.stdout.flush()
        return status
    except (OSError, ValueError) as exc:
        from scanner.cli.console import ClosedStdout, drop_stdout

        drop_stdout()
        if isinstance(exc, BrokenPipeError):
            return 2
        if not isinstance(sys.stdout, ClosedStdout) or status == 0:
            sys.stderr.write(f"cendis-scan: error: cannot write the output: "
                             f"{getattr(exc, 'strerror', None) or exc}\n")
        return 2


def dispatch(args: list[str]) -> int:
    if args[:1] == ["git"]:  # the pre-commit hook: a clean change needs no more imports
        from scanner.cli.fast_staged import try_clean

        status = try_clean(args)
        if status is not None:
            return status
    if sys.flags.no_site and "site" not in sys.modules:
        import site  # the installed hook's lean start (scanner.hooks.lean_exec)

        site.main()  # everything else needs the environment's packages
    from scanner import __version__
    from scanner.cli.table import BY_NAME, top_help

    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(top_help(__version__))
        return 0
    if args[0] in ("--version", "-V"):
        sys.stdout.write(f"cendis-scan {__version__}\n")
        return 0
    command = BY_NAME.get(args[0])
    if command is None:
        from scanner.cli.console import suggest
        from scanner.scrub import scrub

        kind = "option" if args[0].startswith("-") else "command"
        names = ("--help", "--version", "--debug") if kind == "option" else BY_NAME
        sys.stderr.write(f"cendis-scan: error: unknown {kind} {scrub(args[0], 40)!r}"
                         f"{suggest(args[0], names)} (see cendis-scan --help)\n")
        return 2
    if command.fast:
        from scanner.cli.parsing import run

        return run(args)
    from scanner.cli.app import run_typer

    return run_typer(command, args)
