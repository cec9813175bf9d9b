"""The typer side: commands off the hot path (incidents, revoke, serve, sweep, dev...).

Each such command's module has ``register(app)``, which adds its module-level command
functions; only the module of the command being run is imported, and its typer app is
run without click's standalone mode, so a usage error is one line and exit status 2,
the same as on the argparse side. Every command's callback runs inside the one error
wrapper (:func:`scanner.cli.errors.exit_status`): a command raises, never prints an
error itself.
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
from collections.abc import Callable
from typing import Any

import typer
import typer.main
from typer.core import TyperArgument, TyperOption

from scanner.cli.console import debug_wanted, suggest
from scanner.cli.errors import EXIT_INTERRUPTED, exit_status
from scanner.cli.logs import setup_logging
from scanner.cli.table import Command
from scanner.errors import EXIT_ERROR
from scanner.scrub import scrub


def _group() -> None:
    """cendis-scan (see cendis-scan --help)."""


def build_app(module: str) -> typer.Typer:
    app = typer.Typer(name="cendis-scan", add_completion=False, rich_markup_mode=None,
                      context_settings={"help_option_names": ["-h", "--help"]})
    app.callback()(_group)
    importlib.import_module(module).register(app)
    return app


#: Metavars by an option's last word, as the argparse side and incidents.py name them.
_METAVARS = {"db": "PATH", "config": "FILE", "token": "CREDENTIAL", "wait": "SECONDS"}


def one_style(command: Any) -> None:
    """Every typer option and argument in the argparse side's style: an UPPERCASE
    metavar (``--port PORT``, not typer's ``--port <int range>``), an argument without
    its Python type beside it (``CONFIG``, not ``CONFIG <str>``) and without braces in
    the usage line (``CONFIG``, not ``{CONFIG}``), and a default said once, in the help
    text (``(default: 8080)``), never again as typer's ``[default: 8080]``. Applied to
    the whole command tree, so a new command gets it too (tests/test_help.py checks
    every command's help)."""
    for param in command.params:
        if isinstance(param, TyperArgument):
            name = param.metavar or (param.name or "ARG").upper()
            param.metavar = name
            shown = name if param.required else f"[{name}]"
            shown += "..." if param.nargs != 1 else ""
            # Instance attributes shadow typer's methods for this one parameter.
            setattr(param, "display_type_rich", lambda ctx: None)  # noqa: B010
            setattr(param, "_usage_display_name", lambda shown=shown: shown)  # noqa: B010
        elif isinstance(param, TyperOption):
            if param.metavar is None and not param.is_flag and not param.count:
                last = (param.name or "value").rsplit("_", 1)[-1]
                param.metavar = _METAVARS.get(last, last.upper())
            _default_once(param)
    for sub in getattr(command, "commands", {}).values():
        one_style(sub)


def _default_once(option: Any) -> None:
    """The default in the help text, as the argparse side says it, and only there."""
    default, text = option.default, option.help or ""
    if (option.show_default and default not in (None, False, ()) and not option.is_flag
            and "default" not in text.lower()):
        value = getattr(default, "value", default)  # an enum: its value
        option.help = f"{text.rstrip()} (default: {value})".lstrip()
    option.show_default = False


def guard(command: Any) -> None:
    """Run every command's callback inside the one error wrapper: a library error is
    one line and its exit status, raised as ``typer.Exit`` before click sees it (click
    would turn Ctrl-C into a bare ``Aborted!``)."""
    callback = getattr(command, "callback", None)
    if callback is not None and not getattr(callback, "guarded", False):
        command.callback = _guarded(callback)
    for sub in getattr(command, "commands", {}).values():
        guard(sub)


def _guarded(callback: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except (Exception, KeyboardInterrupt) as exc:
            if hasattr(exc, "format_message"):  # click's own: a usage error
                raise
            raise typer.Exit(exit_status(exc, debug_wanted())) from None

    run.guarded = True  # type: ignore[attr-defined]
    return run


def _reworded(exc: BaseException, text: str) -> str:
    """click's "No such command 'lst'." and "Invalid value for '--format': ... 'jsno' is
    not one of ..." in the words of the top level and the argparse side, with the
    closest name said (``unknown command 'lst'; did you mean 'list'?``)."""
    choice = re.match(r"Invalid value for '(--[\w-]+)': .*?'(.*)' is not one of (.*)\.$",
                      text, flags=re.DOTALL)
    if choice:
        word, among = choice.group(2), re.findall(r"'([^']*)'", choice.group(3))
        return f"unknown {choice.group(1)} {word!r}{suggest(word, among)}"
    match = re.match(r"No such command '(.*?)'\.", text, flags=re.DOTALL)
    group = getattr(getattr(exc, "ctx", None), "command", None)
    names = getattr(group, "commands", None)
    if not match or not isinstance(names, dict):
        return text
    word = match.group(1)
    return f"unknown command {word!r}{suggest(word, names)}"


def run_typer(command: Command, args: list[str]) -> int:
    debug = debug_wanted()
    setup_logging(debug)
    try:
        group = typer.main.get_command(build_app(command.module))
        one_style(group)
        guard(group)
        result = group.main(args=args, prog_name="cendis-scan", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        sys.stderr.write("cendis-scan: interrupted\n")
        return EXIT_INTERRUPTED
    except (Exception, KeyboardInterrupt) as exc:
        # typer raises its own (vendored) click's exceptions: known by their shape.
        message = getattr(exc, "format_message", None)
        if message is None:
            return exit_status(exc, debug)
        if type(exc).__name__ == "NoArgsIsHelpError":
            ctx = getattr(exc, "ctx", None)
            sys.stdout.write(ctx.get_help() + "\n" if ctx else "")
            return 0
        text = _reworded(exc, message())
        sys.stderr.write(f"cendis-scan {command.name}: error: {scrub(text, 300)} "
                         "(see --help)\n")
        return int(getattr(exc, "exit_code", EXIT_ERROR) or EXIT_ERROR)
    return result if isinstance(result, int) else 0
