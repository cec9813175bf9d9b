"""The hot-path commands, parsed with argparse (see :mod:`scanner.cli`).

Each command function takes parsed arguments and returns an exit status; library
errors become one line on stderr and status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from scanner.cli import ClosedStdout, debug_wanted, drop_stdout
from scanner.cli.record import add_record_options
from scanner.cli.table import BY_NAME, Command
from scanner.errors import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, ScanError, UsageError
from scanner.scrub import scrub

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

    from scanner.result import ScanOptions, ScanResult
    from scanner.rules import Rule

EXIT_STATUS = """Exit status:
  0    nothing found
  1    findings (at or above --min-confidence)
  2    usage, configuration or I/O error; also when any input could not be read
  130  interrupted (Ctrl-C); 143: terminated (SIGTERM); no report is written
"""
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C, so that everything that stops
    cleanly on Ctrl-C (worker pools, temporary report files) does so on SIGTERM too."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated


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


def suggest(word: str, choices: Iterable[str]) -> str:
    """``; did you mean 'scan'?`` for a mistyped name, else nothing."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Parser(argparse.ArgumentParser):
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


def add_common_options(p: argparse.ArgumentParser, *, jobs: bool = True) -> None:
    """Options every scanning command takes (defined once: ``scan`` and ``git``)."""
    p.add_argument("--rules", metavar="FILE", action="append", default=[],
                   help="add rules from a TOML file (repeatable)")
    if jobs:
        p.add_argument("--jobs", "-j", type=int, default=0, metavar="N",
                       help="worker processes (default: one per core)")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback behind an internal error")


def add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("text", "json", "sarif", "gitlab"), default="text",
                   metavar="FORMAT",
                   help="report format: text (default), json, sarif or gitlab (GitLab's "
                        "secret detection report)")
    p.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
    p.add_argument("--min-confidence", choices=("confirmed", "possible"), default="possible",
                   metavar="LEVEL",
                   help="report only findings at least this sure: confirmed, or possible "
                        "(default)")
    p.add_argument("--baseline", metavar="REPORT.json",
                   help="skip findings already in this earlier JSON report")
    p.add_argument("--no-color", action="store_true", help="plain text even on a terminal")


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


def _scan_parser(sub: argparse._SubParsersAction, command: Command) -> None:
    scan = new_parser(
        sub, command,
        "Scan files and directories (recursively, dotfiles and git-ignored files included, "
        "never .git/) or stdin for Cendis tokens.", EXIT_STATUS,
        ("cendis-scan scan --format sarif -o leaks.sarif src/ .env",
         "kubectl logs pod | cendis-scan scan -"))
    scan.add_argument("paths", nargs="*", metavar="PATH",
                      help="files or directories; '-' for stdin (default: '.', or stdin "
                           "when it is a pipe)")
    scan.add_argument("--exclude", metavar="GLOB", action="append", default=[],
                      help="skip paths matching this gitignore-style pattern (repeatable)")
    scan.add_argument("--respect-gitignore", action="store_true",
                      help="skip files that .gitignore files ignore (default: scan them: "
                           ".env files are usually git-ignored)")
    scan.add_argument("--max-decompressed", type=byte_size, default=None, metavar="SIZE",
                      help="a gzip input that inflates past SIZE (bytes, or with K, M or G: "
                           "64M) is an error, not scanned further (default: 1G)")
    add_common_options(scan)
    add_report_options(scan)
    add_record_options(scan)
    scan.set_defaults(func=cmd_scan)


def _redact_parser(sub: argparse._SubParsersAction, command: Command) -> None:
    redact = new_parser(
        sub, command,
        "Copy stdin to stdout, line by line, replacing every token (confirmed or possible) "
        "by its redacted form; everything else is copied byte for byte. The number of "
        "redactions goes to stderr.", "Exit status: 0, or 2 on an I/O error")
    add_common_options(redact, jobs=False)
    redact.set_defaults(func=cmd_redact)


def _check_parser(sub: argparse._SubParsersAction, command: Command) -> None:
    check = new_parser(
        sub, command,
        "Read one token from stdin (never from the command line, which lands in shell "
        "history) and say whether it is a well-formed v1 token, truncated, mistyped "
        "(checksum) or a placeholder. The token is never printed.",
        "Exit status: 0 well-formed, 1 not, 2 no input",
        ("cendis-scan check-token   (asks for it without echo)",))
    check.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    check.set_defaults(func=cmd_check_token)


def _rules_parser(sub: argparse._SubParsersAction, command: Command) -> None:
    import textwrap

    rules = new_parser(
        sub, command,
        "List the rules in force, or validate rule files and run their true and false "
        "samples.", "Exit status: 0 valid, 2 invalid", ("cendis-scan rules list",))
    actions = rules.add_subparsers(dest="action", required=True, metavar="COMMAND",
                                   parser_class=_Parser, title="Commands")
    for name, summary, example, status, nargs in (
            ("list", "List the rules in force: the built-in ones and those of each FILE "
                     "(id, prefix, description; tab-separated).",
             "cendis-scan rules list my-rules.toml", "Exit status: 0, 2 a FILE is invalid",
             "*"),
            ("check", "Validate rule files and run each rule's true and false samples.",
             "cendis-scan rules check my-rules.toml",
             "Exit status: 0 valid, 2 invalid (each problem on stderr)", "+")):
        action = styled(actions.add_parser(
            name, help=summary, add_help=False, formatter_class=HelpStyle,
            description=textwrap.fill(summary, 80, initial_indent="  ",
                                      subsequent_indent="  "),
            epilog=f"Example:\n  {example}\n\n{status}"))
        action.add_argument("files", nargs=nargs, metavar="FILE",
                            help="a TOML rule file (see rules/ for the format)")
        action.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    rules.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    rules.set_defaults(func=cmd_rules)


def _version_parser(sub: argparse._SubParsersAction, command: Command) -> None:
    version = new_parser(sub, command, "Print the version.", "Exit status: 0")
    version.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    version.set_defaults(func=cmd_version)


PARSERS = {"scan": _scan_parser, "redact": _redact_parser, "check-token": _check_parser,
           "rules": _rules_parser, "version": _version_parser}


def build_parser(name: str) -> argparse.ArgumentParser:
    """The parser for one fast command (only that one is built: a hook pays for one)."""
    import importlib

    command = BY_NAME[name]
    root = _Parser(prog="cendis-scan", add_help=True)
    sub = root.add_subparsers(dest="command", required=True, parser_class=_Parser,
                              metavar="COMMAND")
    importlib.import_module(command.module).PARSERS[name](sub, command)
    return root


def byte_size(text: str) -> int:
    """``4096``, ``512K``, ``64M``, ``1G`` (binary units) as a number of bytes."""
    shifts = {"K": 10, "M": 20, "G": 30}
    number = text.strip()
    shift = shifts.get(number[-1:].upper(), 0)
    if shift:
        number = number[:-1]
    if not (number.isascii() and number.isdigit()) or int(number) == 0:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: a positive whole number, optionally with K, M or G")
    return int(number) << shift


def run(argv: list[str]) -> int:
    args = build_parser(argv[0]).parse_args(argv)
    debug = getattr(args, "debug", False) or debug_wanted()
    setup_logging(debug)
    func: Callable[[argparse.Namespace], int] = args.func
    if sys.stdout is None:
        sys.stdout = ClosedStdout()
    with contextlib.suppress(ValueError):  # not the main thread: a caller's thread
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return func(args)
    except ScanError as exc:
        sys.stderr.write(f"cendis-scan: error: {scrub(str(exc), 500)}\n")
        return exc.exit_status
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        sys.stderr.write(f"cendis-scan: {'terminated' if terminated else 'interrupted'}\n")
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except BrokenPipeError:
        drop_stdout()
        return EXIT_ERROR
    except OSError as exc:  # stdin or stdout failing under a command (EIO, ENOSPC...)
        drop_stdout()
        sys.stderr.write(f"cendis-scan: error: I/O error: {scrub(str(exc.strerror or exc))}\n")
        return EXIT_ERROR
    except Exception as exc:  # a bug: one line, the traceback only when asked for
        return internal_error(exc, debug)


def internal_error(exc: BaseException, debug: bool) -> int:
    if debug:
        import traceback

        traceback.print_exc()
    sys.stderr.write(f"cendis-scan: internal error: {type(exc).__name__}: "
                     f"{scrub(str(exc), 300)}"
                     f"{'' if debug else ' (run with --debug for the traceback)'}\n")
    return EXIT_ERROR


class _Handler(logging.Handler):
    """Library warnings as ``cendis-scan: ...`` lines on stderr, scrubbed."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = scrub(record.getMessage())
            if record.exc_info and record.levelno <= logging.DEBUG:
                import traceback

                text += "\n" + "".join(traceback.format_exception(*record.exc_info))
            sys.stderr.write(f"cendis-scan: {text}\n")
        except Exception:  # logging must never end a scan
            self.handleError(record)


def setup_logging(debug: bool) -> None:
    logger = logging.getLogger("cendis_scan")
    if not any(isinstance(h, _Handler) for h in logger.handlers):
        logger.addHandler(_Handler())
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    logger.propagate = False


def load_rules(extra: list[str]) -> list[Rule]:
    from scanner.rules import load

    return load(extra)


def scan_options(args: argparse.Namespace) -> ScanOptions:
    """ScanOptions from the options ``scan`` and ``git`` share."""
    from scanner.result import GZIP_LIMIT, ScanOptions
    from scanner.token import Confidence

    if args.jobs < 0:
        raise UsageError("--jobs must be 0 or more")
    if args.baseline:  # a bad baseline is said now, not after a long scan
        from scanner.scan import load_fingerprints

        load_fingerprints(args.baseline, report=True)
    return ScanOptions(min_confidence=Confidence(args.min_confidence),
                       excludes=tuple(getattr(args, "exclude", ())),
                       respect_gitignore=getattr(args, "respect_gitignore", False),
                       baseline=args.baseline, jobs=args.jobs,
                       max_decompressed=getattr(args, "max_decompressed", None) or GZIP_LIMIT)


def write_report(text: str, output: str | None) -> None:
    """To stdout, or to ``output``: a regular file (or a new one) is replaced
    atomically, so a failed or interrupted run never leaves half a report; through a
    symlink, its target is replaced and the link kept. Anything else (``/dev/null``, a
    FIFO, a terminal) is opened and written in place: replacing a device by a regular
    file, as root, would break the machine."""
    if output is None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            drop_stdout()
            raise UsageError(f"cannot write the report to stdout: {exc.strerror or exc}") \
                from None
        return
    import stat

    try:
        try:
            st: os.stat_result | None = os.stat(output)  # through any symlinks
        except FileNotFoundError:  # nothing there, or a dangling link: create its target
            st = None
        if st is not None and _is_stdout(st):  # -o /dev/stdout: appended as `>>` asked
            write_report(text, None)
            return
        target = os.path.realpath(output)
        # Not a regular file, a name of this process's own (/dev/stdout, /proc/self/fd/N)
        # or one whose resolved path is another file: written in place, never renamed over.
        if st is not None and (not stat.S_ISREG(st.st_mode)
                               or os.path.abspath(output).startswith(("/dev/", "/proc/"))
                               or not os.path.exists(target)
                               or not os.path.samestat(st, os.stat(target))):
            with open(output, "w", encoding="utf-8") as f:
                f.write(text)
            return
        from scanner.atomic import write_atomic

        write_atomic(target, text, mode=None if st is None else st.st_mode)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None


def _is_stdout(st: os.stat_result) -> bool:
    try:
        return os.path.samestat(st, os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError):
        return False


def finish(result: ScanResult, args: argparse.Namespace, source: str) -> int:
    """Render, write, record if asked, and choose the exit status: errors (and failed
    revokes) win over findings."""
    from scanner.report import render

    color = (args.format == "text" and args.output is None and not args.no_color
             and sys.stdout.isatty() and "NO_COLOR" not in os.environ)
    # A hook (git --staged / --pre-push) is quiet when all is well, and when it blocks,
    # its own message says what to do: the text report does not say it a second time.
    hook = bool(getattr(args, "staged", False) or getattr(args, "pre_push", False))
    if hook and args.format == "text":
        from scanner.report import text

        report = text.render(result, color=color, advice=False)
    else:
        report = render(args.format, result, color=color)
    write_report(report, args.output)
    for error in result.errors:
        sys.stderr.write(f"cendis-scan: error: {scrub(error.message, 500)}\n")
    # The summary line only where it adds something: not after an error when nothing was
    # found (that one line says it: exit 2), not from a hook (silence is success, and
    # the block message counts).
    if args.format == "text" and not hook and (result.findings or not result.errors):
        from scanner.report.text import summary_line

        sys.stderr.write(summary_line(result) + "\n")
    if getattr(args, "record", False) or getattr(args, "revoke", False):
        from scanner.cli.record import record

        if record(result, args, source):
            return EXIT_ERROR
    if result.errors:
        return EXIT_ERROR
    return EXIT_FINDINGS if result.findings else EXIT_CLEAN


def cmd_scan(args: argparse.Namespace) -> int:
    from scanner.scan import scan_paths, scan_stream

    options = scan_options(args)
    rules = load_rules(args.rules)
    if args.record or args.revoke:
        from scanner.cli.record import check

        check(args)
    paths = args.paths
    if not paths:
        paths = ["-"] if _stdin_is_pipe() else ["."]
    if "-" in paths:
        if len(paths) > 1:
            raise UsageError("'-' (stdin) cannot be combined with other paths")
        if sys.stdin is None:
            raise UsageError("stdin is closed: nothing to scan as '-'")
        return finish(scan_stream(sys.stdin.buffer, rules, options), args, "scan:<stdin>")
    from scanner.cli.progress import Progress, wanted

    progress = Progress() if wanted(args.format) else None
    try:
        result = scan_paths(paths, rules, options, progress)
    finally:
        if progress:
            progress.close()
    return finish(result, args, "scan:" + ",".join(paths))


def _stdin_is_pipe() -> bool:
    import stat

    if sys.stdin is None:  # closed (<&-): not a pipe
        return False
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError):
        return False
    # Only a pipe: a redirected file, /dev/null or a closed stdin (some CI runners make
    # /dev/null a regular file) must not turn `cendis-scan scan` into a scan of nothing.
    return stat.S_ISFIFO(mode)


def cmd_redact(args: argparse.Namespace) -> int:
    from scanner.redact_filter import redact_stream

    if sys.stdin is None:
        raise UsageError("stdin is closed: nothing to redact")
    rules = load_rules(args.rules)
    try:
        count = redact_stream(sys.stdin.buffer, sys.stdout.buffer, rules)
    except BrokenPipeError:
        raise
    except OSError as exc:
        drop_stdout()
        raise UsageError(f"redact: {exc.strerror or exc}") from None
    sys.stderr.write(f"cendis-scan: {count} token{'s' if count != 1 else ''} redacted\n")
    return EXIT_CLEAN


def cmd_check_token(args: argparse.Namespace) -> int:
    from scanner.token import check, explain

    if sys.stdin is None:
        raise UsageError("no token on stdin: stdin is closed (pipe it in: pbpaste | "
                         "cendis-scan check-token)")
    if sys.stdin.isatty():
        import getpass

        text = getpass.getpass("Token (not echoed): ")
    else:
        text = sys.stdin.read(4096)
    if not text.strip():
        raise UsageError("no token on stdin (pipe it in: pbpaste | cendis-scan check-token)")
    verdict = check(text)
    sys.stdout.write(explain(verdict, text) + "\n")
    return EXIT_CLEAN if verdict.value == "valid" else EXIT_FINDINGS


def cmd_rules(args: argparse.Namespace) -> int:
    from scanner.rules import load, load_file, validate_samples

    if args.action == "list":
        for rule in load(args.files):
            fields = (rule.id, rule.prefix.decode("utf-8", "replace"), rule.description)
            sys.stdout.write("\t".join(scrub(x) for x in fields) + "\n")
        return EXIT_CLEAN
    if not args.files:
        raise UsageError("rules check needs at least one FILE")
    status = EXIT_CLEAN
    for path in args.files:
        problems = validate_samples(load_file(path))
        for problem in problems:
            sys.stderr.write(f"{scrub(path)}: {scrub(problem, 500)}\n")
        if problems:
            status = EXIT_ERROR
        else:
            sys.stdout.write(f"{scrub(path)}: ok\n")
    return status


def cmd_version(args: argparse.Namespace) -> int:
    from scanner import __version__

    sys.stdout.write(f"cendis-scan {__version__}\n")
    return EXIT_CLEAN
