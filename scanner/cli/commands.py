"""The hot-path commands, parsed with argparse (see :mod:`scanner.cli` and
:mod:`scanner.cli.parsing`): ``scan``, ``redact``, ``check-token``, ``rules``, ``version``.

Each command function takes parsed arguments and returns an exit status; the library's
errors propagate, and :func:`scanner.cli.parsing.run` makes each one line on stderr and
its exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from scanner.cli.console import drop_stdout
from scanner.cli.errors import error_line
from scanner.cli.options import add_common_options, add_record_options, add_report_options
from scanner.cli.parsing import HelpStyle, Parser, new_parser, styled
from scanner.cli.table import Command
from scanner.errors import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, UsageError
from scanner.scrub import scrub

if TYPE_CHECKING:
    from scanner.result import ScanOptions, ScanResult
    from scanner.rules import Rule

EXIT_STATUS = """Exit status:
  0    nothing found
  1    findings (at or above --min-confidence)
  2    usage, configuration or I/O error; also when any input could not be read
  130  interrupted (Ctrl-C); 143: terminated (SIGTERM); no report is written
"""


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
                      help="an input whose compressed layers (gzip, zip, tar.xz, nested or "
                           "not) expand past SIZE (bytes, or with K, M or G: 64M), or past 32 "
                           "times its own size if that is more, is an error, not scanned "
                           "further (default: 1G)")
    scan.add_argument("--decode-window", type=decode_window, default=None, metavar="SIZE",
                      help="look for every encoded form (hex, escapes, layers in any order) "
                           "in the first SIZE bytes of each input, or 'all' (default: 8M; "
                           "past it: the token, its base64 and base64 of gzip)")
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
                                   parser_class=Parser, title="Commands")
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


def decode_window(text: str) -> int:
    """``--decode-window``: a size, or ``all``; it becomes ``ScanOptions.decode_window``
    (:func:`scan_options`), which carries it to every worker."""
    from scanner.result import EVERYWHERE

    return EVERYWHERE if text.strip().lower() == "all" else byte_size(text)


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


def load_rules(extra: list[str]) -> list[Rule]:
    from scanner.rules import load

    return load(extra)


def scan_options(args: argparse.Namespace) -> ScanOptions:
    """ScanOptions from the options ``scan`` and ``git`` share."""
    from scanner.result import DECODE_WINDOW, GZIP_LIMIT, ScanOptions
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
                       max_decompressed=getattr(args, "max_decompressed", None) or GZIP_LIMIT,
                       decode_window=getattr(args, "decode_window", None) or DECODE_WINDOW)


def finish(result: ScanResult, args: argparse.Namespace, source: str) -> int:
    """Render, write, record if asked, and choose the exit status: errors (and failed
    revokes) win over findings."""
    from scanner.report import render
    from scanner.report.output import StdoutFailed, write_report

    color = (args.format == "text" and args.output is None and not args.no_color
             and sys.stdout.isatty() and "NO_COLOR" not in os.environ)
    # A hook (git --staged / --pre-push) is quiet when all is well, and when it blocks,
    # its own message says what to do: the text report does not say it a second time.
    hook = bool(getattr(args, "staged", False) or getattr(args, "pre_push", False))
    try:
        write_report(render(args.format, result, color=color, advice=not hook), args.output)
    except StdoutFailed:
        drop_stdout()
        raise
    for error in result.errors:
        error_line(error.message)
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
