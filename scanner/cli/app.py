"""The typer side: commands off the hot path (incidents, revoke, serve, sweep, dev...).

Each such command's module has ``register(app)``; only the module of the command being
run is imported, and its typer app is run without click's standalone mode, so a usage
error is one line and exit status 2, the same as on the argparse side.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
import typer.main
from typer.core import TyperArgument, TyperOption

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


#: Metavars by an option's last word, as the argparse side and incidents.py name them.
_METAVARS = {"db": "PATH", "config": "FILE", "token": "CREDENTIAL", "wait": "SECONDS"}


def one_style(command: Any) -> None:
    """Every typer option and argument in the argparse side's style: an UPPERCASE
    metavar (``--port PORT``, not typer's ``--port <int range>``), an argument without
    its Python type beside it (``CONFIG``, not ``CONFIG <str>``) and without braces in
    the usage line (``CONFIG``, not ``{CONFIG}``). Applied to the whole command tree, so
    a new command gets it too (tests/test_help.py checks every command's help)."""
    for param in command.params:
        if isinstance(param, TyperArgument):
            name = param.metavar or (param.name or "ARG").upper()
            param.metavar = name
            shown = name if param.required else f"[{name}]"
            shown += "..." if param.nargs != 1 else ""
            # Instance attributes shadow typer's methods for this one parameter.
            setattr(param, "display_type_rich", lambda ctx: None)  # noqa: B010
            setattr(param, "_usage_display_name", lambda shown=shown: shown)  # noqa: B010
        elif (isinstance(param, TyperOption) and param.metavar is None
              and not param.is_flag and not param.count):
            last = (param.name or "value").rsplit("_", 1)[-1]
            param.metavar = _METAVARS.get(last, last.upper())
    for sub in getattr(command, "commands", {}).values():
        one_style(sub)


def _suggested(exc: Exception, text: str) -> str:
    """click's "No such command 'lst'." in the words of the top level and the argparse
    side, with the closest command named (``unknown command 'lst'; did you mean 'list'?``)."""
    import re

    match = re.match(r"No such command '(.*?)'\.", text, flags=re.DOTALL)
    group = getattr(getattr(exc, "ctx", None), "command", None)
    names = getattr(group, "commands", None)
    if not match or not isinstance(names, dict):
        return text
    from scanner.cli.commands import suggest

    word = match.group(1)
    return f"unknown command {word!r}{suggest(word, names)}"


def run_typer(command: Command, args: list[str]) -> int:
    from scanner.cli import debug_wanted
    from scanner.cli.commands import internal_error, setup_logging

    debug = debug_wanted()
    setup_logging(debug)
    app = build_app(command.module)
    try:
        group = typer.main.get_command(app)
        one_style(group)
        result = group.main(args=args, prog_name="cendis-scan", standalone_mode=False)
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
        text = _suggested(exc, message())
        sys.stderr.write(f"{where}: error: {scrub(text, 300)} (see --help)\n")
        return int(getattr(exc, "exit_code", EXIT_ERROR) or EXIT_ERROR)
    return result if isinstance(result, int) else 0
