"""The typer side: commands off the hot path (incidents, revoke, serve, sweep, dev...).

Each such command's module has ``register(app)``; only the module of the command being
run is imported, and its typer app is run without click's standalone mode, so a usage
error is one line and exit status 2, the same as on the argparse side.
"""

from __future__ import annotations

import importlib
import sys

import typer

from scanner.cli.table import Command
from scanner.errors import EXIT_ERROR, ScanError
from scanner.scrub import scrub


def build_app(module: str) -> typer.Typer:
    app = typer.Typer(name="cendis-scan", add_completion=False, rich_markup_mode=None,
                      context_settings={"help_option_names": ["-h", "--help"]})

    @app.callback()
    def _group() -> None:
        """cendis-scan (see cendis-scan --help)."""

    importlib.import_module(module).register(app)
    return app


def run_typer(command: Command, args: list[str]) -> int:
    from scanner.cli import debug_wanted
    from scanner.cli.commands import internal_error, setup_logging

    debug = debug_wanted()
    setup_logging(debug)
    app = build_app(command.module)
    try:
        result = app(args=args, prog_name="cendis-scan", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("cendis-scan: interrupted\n")
        return 130
    except ScanError as exc:
        sys.stderr.write(f"cendis-scan: error: {scrub(str(exc), 500)}\n")
        return exc.exit_status
    except Exception as exc:
        # typer raises its own (vendored) click's exceptions: known by their shape.
        message = getattr(exc, "format_message", None)
        if message is None:
            return internal_error(exc, debug)
        if type(exc).__name__ == "NoArgsIsHelpError":
            ctx = getattr(exc, "ctx", None)
            sys.stdout.write(ctx.get_help() + "\n" if ctx else "")
            return 0
        where = f"cendis-scan {command.name}"
        sys.stderr.write(f"{where}: error: {scrub(message(), 300)} (see --help)\n")
        return int(getattr(exc, "exit_code", EXIT_ERROR) or EXIT_ERROR)
    return result if isinstance(result, int) else 0
