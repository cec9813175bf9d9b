"""The argparse side: the hot-path commands' parsers in the one help style, and
:func:`run`, which parses one command and runs it (see :mod:`scanner.cli`).

Each command's module has ``PARSERS`` (name -> a function adding its parser); only the
parser of the command being run is built: a hook pays for one.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from scanner.cli.console import ClosedStdout, debug_wanted, suggest
from scanner.cli.errors import exit_status, on_sigterm
from scanner.cli.logs import setup_logging
from scanner.cli.table import BY_NAME, Command
from scanner.errors import EXIT_ERROR
from scanner.scrub import scrub

if TYPE_CHECKING:
    from _typeshed import SupportsWrite


class HelpStyle(argparse.RawDescriptionHelpFormatter):
    """argparse's help in the layout of the typer commands' (click's), so that every
    command's help reads alike: ``Usage: cendis-scan CMD [OPTIONS] ARG``, then the
    description indented, then ``Arguments:`` and ``Options:`` with UPPERCASE metavars."""

    def _format_usage(self, usage: str | None, actions: Any, groups: Any,
                      prefix: str | None) -> str:
        words = [self._prog]
        if any(a.option_strings for a in actions):
            words.append("[OPTIONS]")
        for action in actions:
            if action.option_strings or action.help == argparse.SUPPRESS:
                continue
            if isinstance(action, argparse._SubParsersAction):
                words.append("COMMAND [ARGS]...")
                continue
            name = action.metavar or action.dest.upper()
            words.append({"?": f"[{name}]", "*": f"[{name}]...", "+": f"{name}..."}
                         .get(str(action.nargs), name))
        if prefix == "":  # argparse naming a sub-command's parent: "cendis-scan rules"
            return " ".join(w for w in words if w != "[OPTIONS]")
        return "Usage: " + " ".join(words) + "\n\n"

    def _format_action(self, action: argparse.Action) -> str:
        if isinstance(action, argparse._SubParsersAction):  # the commands, not COMMAND
            return "".join(self._format_action(a) for a in action._get_subactions())
        return super()._format_action(action)


class Parser(argparse.ArgumentParser):
    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        """argparse swallows a failed write (a full disk, a closed stdout) and exits 0
        after ``--help``; here it is an I/O error, one line and exit 2."""
        if message:
            (file or sys.stderr).write(message)

    def error(self, message: str) -> NoReturn:
        import re

        choice = re.fullmatch(r"argument (\S+): invalid choice: '(.*)' \(choose from (.*)\)",
                              message, flags=re.DOTALL)
        if choice:  # a mistyped sub-command or value: say the closest one
            word, among = choice.group(2), re.findall(r"'([^']*)'", choice.group(3))
            what = "command" if choice.group(1) == "COMMAND" else choice.group(1)
            message = f"unknown {what} {word!r}{suggest(word, among)}"
        sys.stderr.write(f"{self.prog}: error: {scrub(message, 300)} (see --help)\n")
        sys.exit(EXIT_ERROR)


def styled(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Section titles and the help option as the typer commands show them."""
    parser._positionals.title = "Arguments"
    parser._optionals.title = "Options"
    parser.add_argument("-h", "--help", action="help", help="Show this message and exit.")
    return parser


def new_parser(sub: argparse._SubParsersAction, command: Command,
               description: str, epilog: str, examples: tuple[str, ...] = ()
               ) -> argparse.ArgumentParser:
    """A command's parser in the one style every command shares: the summary and the
    first example come from the table, then more examples, then ``epilog`` (modes,
    exit status)."""
    import textwrap

    lines = "\n".join(f"  {e}" for e in (command.example, *examples))
    return styled(sub.add_parser(
        command.name, help=command.summary, add_help=False,
        description=textwrap.fill(description, 80, initial_indent="  ",
                                  subsequent_indent="  "),
        epilog=f"Example{'s' if examples else ''}:\n{lines}\n\n{epilog}",
        formatter_class=HelpStyle))


def build_parser(name: str) -> argparse.ArgumentParser:
    """The parser for one fast command (only that one is built: a hook pays for one)."""
    import importlib

    command = BY_NAME[name]
    root = Parser(prog="cendis-scan", add_help=True)
    sub = root.add_subparsers(dest="command", required=True, parser_class=Parser,
                              metavar="COMMAND")
    importlib.import_module(command.module).PARSERS[name](sub, command)
    return root


def run(argv: list[str]) -> int:
    """Parse and run one fast command; any error is one line and its exit status
    (:func:`scanner.cli.errors.exit_status`)."""
    args = build_parser(argv[0]).parse_args(argv)
    debug = getattr(args, "debug", False) or debug_wanted()
    setup_logging(debug)
    func: Callable[[argparse.Namespace], int] = args.func
    if sys.stdout is None:
        sys.stdout = ClosedStdout()
    with contextlib.suppress(ValueError):  # not the main thread: a caller's thread
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return func(args)
    except (Exception, KeyboardInterrupt) as exc:
        return exit_status(exc, debug)
