"""The hot-path commands, parsed with argparse (see :mod:`scanner.cli`).

Each command function takes parsed arguments and returns an exit status; library
errors become one line on stderr and status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from scanner.errors import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, ScanError, UsageError

EXIT_STATUS = """exit status:
  0  nothing found
  1  findings (at or above --min-confidence)
  2  usage, configuration or I/O error; also when any input could not be read
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(EXIT_ERROR)


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("text", "json", "sarif"), default="text",
                   help="report format (default: text)")
    p.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
    p.add_argument("--min-confidence", choices=("confirmed", "possible"), default="possible",
                   help="report only findings at least this sure (default: possible)")
    p.add_argument("--baseline", metavar="REPORT.json",
                   help="skip findings already in this earlier JSON report")
    p.add_argument("--rules", metavar="FILE", action="append", default=[],
                   help="add rules from a TOML file (repeatable)")
    p.add_argument("--no-color", action="store_true", help="plain text even on a terminal")


def build_parser() -> argparse.ArgumentParser:
    root = _Parser(prog="cendis-scan", add_help=True)
    sub = root.add_subparsers(dest="command", required=True, parser_class=_Parser)

    scan = sub.add_parser(
        "scan", help="scan files, directories or stdin",
        description="Scan files and directories (recursively, dotfiles and git-ignored "
                    "files included, never .git/) or stdin for Cendis tokens.",
        epilog="examples:\n  cendis-scan scan .\n  cendis-scan scan --format sarif -o "
               "leaks.sarif src/ .env\n  kubectl logs pod | cendis-scan scan -\n\n"
               + EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    scan.add_argument("paths", nargs="*", metavar="PATH",
                      help="files or directories; '-' for stdin (default: '.', or stdin "
                           "when it is a pipe)")
    scan.add_argument("--exclude", metavar="GLOB", action="append", default=[],
                      help="skip paths matching this gitignore-style pattern (repeatable)")
    scan.add_argument("--respect-gitignore", action="store_true",
                      help="skip files that .gitignore files ignore (default: scan them: "
                           ".env files are usually git-ignored)")
    scan.add_argument("--jobs", "-j", type=int, default=0, metavar="N",
                      help="worker processes (default: one per core)")
    scan.add_argument("--max-decompressed", type=byte_size, default=None, metavar="SIZE",
                      help="a gzip input that inflates past SIZE (bytes, or with K, M or G: "
                           "64M) is an error, not scanned further (default: 1G)")
    _report_options(scan)
    scan.set_defaults(func=cmd_scan)

    redact = sub.add_parser(
        "redact", help="copy stdin to stdout with every token redacted",
        description="Copy stdin to stdout, line by line, replacing every token (confirmed "
                    "or possible) by its redacted form; everything else is copied byte for "
                    "byte. The number of redactions goes to stderr.",
        epilog="example:\n  tail -f app.log | cendis-scan redact\n\nexit status: 0, or 2 "
               "on an I/O error",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    redact.add_argument("--rules", metavar="FILE", action="append", default=[],
                        help="add rules from a TOML file (repeatable)")
    redact.set_defaults(func=cmd_redact)

    check = sub.add_parser(
        "check-token", help="say whether the token on stdin is well-formed",
        description="Read one token from stdin (never from the command line, which lands in "
                    "shell history) and say whether it is a well-formed v1 token, truncated, "
                    "mistyped (checksum) or a placeholder. The token is never printed.",
        epilog="examples:\n  pbpaste | cendis-scan check-token\n  cendis-scan check-token   "
               "(asks for it without echo)\n\nexit status: 0 well-formed, 1 not, 2 no input",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    check.set_defaults(func=cmd_check_token)

    rules = sub.add_parser(
        "rules", help="list rules or check rule files",
        description="List the rules in force, or validate rule files and run their true "
                    "and false samples.",
        epilog="examples:\n  cendis-scan rules list\n  cendis-scan rules check my.toml\n\n"
               "exit status: 0 valid, 2 invalid",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    rules.add_argument("action", choices=("list", "check"))
    rules.add_argument("files", nargs="*", metavar="FILE")
    rules.set_defaults(func=cmd_rules)

    _add_git_commands(sub)
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


def _add_git_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The git commands live with the git source; absent until that module exists."""
    try:
        from scanner.cli import git_commands
    except ImportError:
        return
    git_commands.add(sub, _report_options, EXIT_STATUS)


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ScanError as exc:
        sys.stderr.write(f"cendis-scan: error: {exc}\n")
        return exc.exit_status
    except KeyboardInterrupt:
        sys.stderr.write("cendis-scan: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_ERROR


def load_rules(extra: list[str]) -> list:  # type: ignore[type-arg]
    from scanner.rules import load

    return load(extra)


def write_report(text: str, output: str | None) -> None:
    """To stdout, or to a file replaced atomically (a failed run never truncates it)."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    import tempfile

    directory = os.path.dirname(os.path.abspath(output))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".cendis-scan-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, output)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None


def finish(result, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    """Render, write and choose the exit status: errors win over findings."""
    from scanner.report import render

    color = (args.format == "text" and args.output is None and not args.no_color
             and sys.stdout.isatty() and "NO_COLOR" not in os.environ)
    write_report(render(args.format, result, color=color), args.output)
    for error in result.errors:
        sys.stderr.write(f"cendis-scan: error: {error}\n")
    if args.format == "text":
        from scanner.report.text import summary_line

        sys.stderr.write(summary_line(result) + "\n")
    if result.errors:
        return EXIT_ERROR
    return EXIT_FINDINGS if result.findings else EXIT_CLEAN


def cmd_scan(args: argparse.Namespace) -> int:
    from scanner.scan import Options, scan_paths, scan_stdin

    if args.jobs < 0:
        raise UsageError("--jobs must be 0 or more")
    rules = load_rules(args.rules)
    options = Options(min_confidence=args.min_confidence, excludes=args.exclude,
                      respect_gitignore=args.respect_gitignore, baseline=args.baseline,
                      jobs=args.jobs)
    if args.max_decompressed is not None:
        options.max_decompressed = args.max_decompressed
    paths = args.paths
    if not paths:
        paths = ["-"] if _stdin_is_pipe() else ["."]
    if "-" in paths:
        if len(paths) > 1:
            raise UsageError("'-' (stdin) cannot be combined with other paths")
        return finish(scan_stdin(sys.stdin.buffer, rules, options), args)
    from scanner.cli.progress import Progress, wanted

    progress = Progress() if wanted(args.format) else None
    try:
        result = scan_paths(paths, rules, options, progress)
    finally:
        if progress:
            progress.close()
    return finish(result, args)


def _stdin_is_pipe() -> bool:
    import stat

    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError):
        return False
    # Only a pipe: a redirected file, /dev/null or a closed stdin (some CI runners make
    # /dev/null a regular file) must not turn `cendis-scan scan` into a scan of nothing.
    return stat.S_ISFIFO(mode)


def cmd_redact(args: argparse.Namespace) -> int:
    from scanner.redact import redact_stream

    count = redact_stream(sys.stdin.buffer, sys.stdout.buffer, load_rules(args.rules))
    sys.stderr.write(f"cendis-scan: {count} token{'s' if count != 1 else ''} redacted\n")
    return EXIT_CLEAN


def cmd_check_token(args: argparse.Namespace) -> int:
    from scanner.token import check, explain

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
            sys.stdout.write(f"{rule.id}\t{rule.prefix.decode()}\t{rule.description}\n")
        return EXIT_CLEAN
    if not args.files:
        raise UsageError("rules check needs at least one FILE")
    status = EXIT_CLEAN
    for path in args.files:
        problems = validate_samples(load_file(path))
        for problem in problems:
            sys.stderr.write(f"{path}: {problem}\n")
        if problems:
            status = EXIT_ERROR
        else:
            sys.stdout.write(f"{path}: ok\n")
    return status
