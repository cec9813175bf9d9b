"""The ``git`` and ``install-hook`` commands: argparse only, the work is in
:mod:`scanner.git.scan` and :mod:`scanner.hooks`.

``git --staged`` runs in every pre-commit hook, so this module imports nothing at load
time beyond argparse; each command imports what it uses.
"""

from __future__ import annotations

import argparse
import os
import sys

from scanner.cli.table import Command

GIT_EXAMPLES = """Modes (one at a time; the default is --all):
  --all              every commit reachable from any ref, commit and tag messages
                     included, and blobs or trees a tag points at
  --staged           what the next commit would add (the index against HEAD)
  --pre-push         what a push sends (git's pre-push lines on stdin, or the
                     pre-commit framework's PRE_COMMIT_FROM_REF/PRE_COMMIT_TO_REF),
                     tags included
  --range A..B       the commits of a rev-list range (and B itself if it is a tag)
  --since-commit SHA the commits after SHA (SHA..HEAD)

In every mode, only a token that no parent commit had anywhere in its tree is new:
a rename, a copy or a merge of a token already there is not a new leak. A token is
reported once, at the commit that introduced it; later copies, renames, merges and
modifications are counted in its "occurrences". An object git cannot read (missing
or corrupt) is an error naming its id, exit status 2.

"""
GIT_MORE = ("cendis-scan git                          whole history of the current repository",
            "cendis-scan git ~/src/app --format sarif -o leaks.sarif",
            "cendis-scan git --since-commit origin/main",
            "cendis-scan git --range v1.0..v1.1 --format json")
HOOK_TEXT = """The hook runs `cendis-scan git --staged` (or `git --pre-push`) and blocks when
a change adds a token. It is written where git looks for hooks (core.hooksPath is
followed); a hook that cendis-scan did not write is left alone unless --force.
With the pre-commit framework, use the hooks in .pre-commit-hooks.yaml instead.

--global: every repository of this user. git's global core.hooksPath is pointed at
a folder cendis-scan manages ($XDG_CONFIG_HOME/cendis-scan/hooks): its pre-commit
and pre-push run the scan, and every hook there then runs what git would have run
without it (the previous global core.hooksPath's hook, else the repository's own
.git/hooks one: the pre-commit framework's, a hand-written one), with the same
arguments and stdin. A repository whose own config sets core.hooksPath (husky)
overrides the global one: `cendis-scan doctor` says so there.
--template: new clones. The hooks go into git's init.templateDir (a folder of
cendis-scan's when unset); a hook already there is kept and runs after the scan.
Both are idempotent and say what they changed; uninstall-hook puts back what was
there.

Exit status: 0 installed (or nothing to change), 2 refused or failed
"""
UNHOOK_TEXT = """Without an option: the hook install-hook wrote in this repository (a hook
cendis-scan did not write is never removed). --global: the previous global
core.hooksPath is restored (or unset, if there was none) and the managed hooks are
removed. --template: the template hooks are removed, the hooks they replaced are put
back, and init.templateDir is unset if install-hook set it.

Exit status: 0 removed (or nothing to change), 2 failed
"""


def _git_parser(sub: argparse._SubParsersAction, command: Command) -> None:
    from scanner.cli.commands import EXIT_STATUS
    from scanner.cli.options import add_common_options, add_record_options, add_report_options
    from scanner.cli.parsing import new_parser

    scan = new_parser(
        sub, command,
        "Scan a git repository for Cendis tokens that commits added: the whole history, "
        "the staged changes, a push, or a range of commits.", GIT_EXAMPLES + EXIT_STATUS,
        GIT_MORE)
    scan.add_argument("repo", nargs="?", default=".", metavar="REPO",
                      help="repository: a work tree, a bare repository or a worktree "
                           "(default: the current directory)")
    mode = scan.add_mutually_exclusive_group()
    mode.add_argument("--all", action="store_true",
                      help="every commit reachable from any ref (the default)")
    mode.add_argument("--staged", action="store_true",
                      help="the staged changes (for a pre-commit hook)")
    mode.add_argument("--pre-push", action="store_true",
                      help="the commits a push sends (for a pre-push hook)")
    mode.add_argument("--range", metavar="A..B", help="the commits of this range")
    mode.add_argument("--since-commit", metavar="SHA", help="the commits after SHA")
    add_common_options(scan)
    add_report_options(scan)
    add_record_options(scan)
    scan.set_defaults(func=cmd_git)


def _hook_parser(sub: argparse._SubParsersAction, command: Command) -> None:
    from scanner.cli.parsing import new_parser

    hook = new_parser(sub, command,
                      "Install a git hook that blocks commits (or pushes) that add a Cendis "
                      "token.", HOOK_TEXT,
                      ("cendis-scan install-hook --pre-push",
                       "cendis-scan install-hook ~/src/app --force"))
    hook.add_argument("repo", nargs="?", default=".", metavar="REPO",
                      help="repository (default: the current directory)")
    hook.add_argument("--pre-push", action="store_true",
                      help="install the pre-push hook instead of pre-commit")
    hook.add_argument("--force", action="store_true",
                      help="replace a hook that cendis-scan did not write")
    _scope_options(hook)
    hook.set_defaults(func=cmd_install_hook)


def _scope_options(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--global", dest="global_", action="store_true",
                       help="every repository of this user (git's global core.hooksPath)")
    scope.add_argument("--template", action="store_true",
                       help="new repositories (git's init.templateDir)")
    parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)


def _unhook_parser(sub: argparse._SubParsersAction, command: Command) -> None:
    from scanner.cli.parsing import new_parser

    hook = new_parser(sub, command,
                      "Remove the hooks install-hook installed, and put back what was "
                      "there before.", UNHOOK_TEXT,
                      ("cendis-scan uninstall-hook --global",
                       "cendis-scan uninstall-hook ~/src/app --pre-push"))
    hook.add_argument("repo", nargs="?", default=".", metavar="REPO",
                      help="repository (default: the current directory)")
    hook.add_argument("--pre-push", action="store_true",
                      help="remove the pre-push hook instead of pre-commit")
    _scope_options(hook)
    hook.set_defaults(func=cmd_uninstall_hook)


PARSERS = {"git": _git_parser, "install-hook": _hook_parser,
           "uninstall-hook": _unhook_parser}


def _say(message: str) -> None:
    from scanner.scrub import scrub

    sys.stderr.write(f"cendis-scan: {scrub(message)}\n")


def cmd_git(args: argparse.Namespace) -> int:
    from scanner.cli.commands import finish, load_rules, scan_options
    from scanner.errors import UsageError
    from scanner.git import scan

    options = scan_options(args)
    rules = load_rules(args.rules)
    if args.record or args.revoke:
        from scanner.cli.record import check

        check(args)
    repo = args.repo
    if args.staged:
        result = scan.scan_staged(repo, rules, options)
    elif args.pre_push:
        from scanner.git.protocol import read_push

        # The pre-commit framework reads git's pre-push lines itself and passes refs in
        # the environment: never wait on a stdin that is not ours.
        framework = os.environ.get("PRE_COMMIT") == "1"
        lines = ([] if framework or sys.stdin is None or sys.stdin.isatty() else
                 sys.stdin.buffer.read().decode("utf-8", "surrogateescape").splitlines())
        push = read_push(repo, lines, os.environ)
        if not push.rev_sets and framework:
            raise UsageError("pre-push: the pre-commit framework gave no refs, so nothing "
                             "was scanned (run it with --from-ref A --to-ref B, or let "
                             "git push run the hook)")
        result = scan.scan_revs(repo, push.rev_sets, rules, options, refs=push.refs)
        if not lines and not result.errors:  # run by hand, no refs: say it (a push of
            # deletions only is a push with nothing to check, and as quiet as a clean one)
            _say("no commits to scan in this push: nothing was scanned")
    elif args.range or args.since_commit:
        if args.range and ".." not in args.range:
            raise UsageError(f"--range wants A..B, got {args.range!r}")
        rev = args.range or f"{args.since_commit}..HEAD"
        result = scan.scan_revs(repo, [[rev]], rules, options)
    else:
        result = scan.scan_history(repo, rules, options)
    status = finish(result, args, f"scan:{repo}")
    if result.findings and (args.staged or args.pre_push):
        from scanner.hooks import blocked_message

        sys.stderr.write(blocked_message(result.findings, push=args.pre_push))
    return status


def _machine_wide(args: argparse.Namespace) -> None:
    """--global and --template act on this user, not on a repository."""
    if args.repo != "." or args.pre_push or getattr(args, "force", False):
        _raise_usage("--global and --template take no REPO, --pre-push or --force: "
                    "they install both hooks for every repository")


def _raise_usage(message: str) -> None:
    from scanner.errors import UsageError

    raise UsageError(message)


def _changed(changes: list[str]) -> int:
    for change in changes:
        _say(change)
    if not changes:
        _say("nothing to change")
    return 0


def cmd_install_hook(args: argparse.Namespace) -> int:
    if args.global_ or args.template:
        from scanner import machine_hooks

        _machine_wide(args)
        install = machine_hooks.install_global if args.global_ else \
            machine_hooks.install_template
        return _changed(install(os.environ))
    from scanner.hooks import install_hook

    path = install_hook(args.repo, pre_push=args.pre_push, force=args.force)
    _say(f"installed {path}")
    return 0


def cmd_uninstall_hook(args: argparse.Namespace) -> int:
    if args.global_ or args.template:
        from scanner import machine_hooks

        _machine_wide(args)
        remove = machine_hooks.uninstall_global if args.global_ else \
            machine_hooks.uninstall_template
        return _changed(remove(os.environ))
    from scanner.hooks import uninstall_hook

    path = uninstall_hook(args.repo, pre_push=args.pre_push)
    return _changed([f"removed {path}"] if path else [])
