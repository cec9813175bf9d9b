"""The ``doctor`` command: argparse only, the checks are in :mod:`scanner.doctor`."""

from __future__ import annotations

import argparse
import os
import sys

from scanner.cli.table import Command

DOCTOR_TEXT = """Checks, each one line with its status (ok, warn, fail) and the fix:
  hooks.repository  pre-commit and pre-push run cendis-scan in the repository at PATH
                    (core.hooksPath resolved as git does: a repository's own setting,
                    such as husky's, overrides the global one)
  hooks.global      install-hook --global is in place for every repository
  env.CENDIS_TOKEN  if set: a whole token, not a truncated copy or a placeholder
  files.home        tokens in shell history and profiles, ~/.netrc,
                    ~/.docker/config.json, ~/.npmrc and ~/.config/** (bounded: no
                    symlinked folder followed, only regular files up to 8 MiB)
  files.env         .env/.envrc files under PATH that git does not ignore
Tokens are shown redacted only. HOME and XDG_CONFIG_HOME say whose machine it is.
--json writes one document with every check (for a fleet's device management).

Exit status: 0 nothing to fix (warnings allowed), 1 something must be fixed,
2 usage error
"""


def _parser(sub: argparse._SubParsersAction, command: Command) -> None:
    from scanner.cli.parsing import new_parser

    doctor = new_parser(sub, command,
                        "Check this machine for what lets a token leak: hooks that do not "
                        "run, a broken CENDIS_TOKEN, tokens left in shell history, "
                        "profiles, credential files and .env files.", DOCTOR_TEXT,
                        ("cendis-scan doctor --json ~/src",))
    doctor.add_argument("path", nargs="?", default=".", metavar="PATH",
                        help="the folder to check for a repository and .env files "
                             "(default: the current directory)")
    doctor.add_argument("--json", action="store_true",
                        help="one JSON document with every check")
    doctor.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    doctor.set_defaults(func=cmd_doctor)


PARSERS = {"doctor": _parser}


def cmd_doctor(args: argparse.Namespace) -> int:
    import json

    from scanner.doctor import run
    from scanner.errors import UsageError
    from scanner.scrub import redact_secrets, scrub

    if not os.path.isdir(args.path):
        raise UsageError(f"{args.path}: not a folder")
    report = run(args.path, os.environ)
    if args.json:
        # Every field is redacted at birth; the whole document once more, to be sure.
        sys.stdout.write(redact_secrets(json.dumps(report.as_json(), indent=2,
                                                   ensure_ascii=False)) + "\n")
    else:
        for result in report.results:
            sys.stdout.write(scrub(result.text(), None) + "\n")
        counts = report.as_json()["counts"]
        assert isinstance(counts, dict)
        sys.stdout.write(f"doctor: {report.status}: " + ", ".join(
            f"{n} {s}" for s, n in counts.items()) + "\n")
    return report.exit_status
