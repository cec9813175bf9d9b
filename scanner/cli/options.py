"""The options several commands share, defined once for both command parsers.

The hot-path commands are parsed with argparse (they must not import typer), the rest
with typer; an option both kinds take (``--db``, ``--token``, ``--cendis-api-url``) is
one :class:`Shared` here, turned into an argparse argument by :func:`add` and into a
typer option by :func:`typer_option`: one flag, metavar, help text and environment
variable. Its default is said once, in its help text. The format choices are enums, so
a parser lists exactly the values the code handles.

Nothing here imports typer at load time (:func:`typer_option` does, when a typer command
module calls it).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from scanner.report import Format
from scanner.token import Confidence

__all__ = ["API_URL", "DB", "NOTIFY_CONFIG", "TOKEN", "Confidence", "Format", "ListFormat",
           "Shared", "TextOrJson", "add", "add_common_options", "add_record_options",
           "add_report_options", "typer_option"]


@dataclass(frozen=True, slots=True)
class Shared:
    """One option as every command that takes it shows it."""

    flag: str
    metavar: str
    help: str
    #: The variable the library falls back to (typer reads it too: ``envvar=``).
    envvar: str | None = None


DB = Shared("--db", "PATH|URL", "incident database: a file (SQLite) or postgresql://... "
                                "(default: $CENDIS_SCAN_DB, else ./cendis-incidents.db)",
            "CENDIS_SCAN_DB")
TOKEN = Shared("--token", "CREDENTIAL",
               "the service's own Cendis credential (default: $CENDIS_TOKEN, better than "
               "this option, which others can see in the process list); needs "
               "revoke:tokens, never admin:org", "CENDIS_TOKEN")
NOTIFY_CONFIG = Shared("--notify-config", "FILE",
                       "a TOML file with a [notify] table: tell its channels of the new "
                       "incidents (default: $CENDIS_SCAN_NOTIFY_CONFIG, else nobody)",
                       "CENDIS_SCAN_NOTIFY_CONFIG")
API_URL = Shared("--cendis-api-url", "URL", "the Cendis API (default: $CENDIS_API_URL, "
                                            "else https://api.cendis.ai)", "CENDIS_API_URL")


class ListFormat(StrEnum):
    """``incidents list --format``."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"


class TextOrJson(StrEnum):
    """``--format`` of ``incidents show`` and ``sweep``."""

    TEXT = "text"
    JSON = "json"


def add(parser: Any, option: Shared, *, when: str = "") -> None:
    """``option`` on an argparse parser or argument group; ``when`` prefixes its help
    (``with --revoke: ``)."""
    parser.add_argument(option.flag, metavar=option.metavar, help=when + option.help)


def typer_option(option: Shared, **extra: Any) -> Any:
    """``option`` as a typer option, for ``Annotated[str | None, typer_option(DB)]``."""
    import typer

    return typer.Option(option.flag, metavar=option.metavar, help=option.help,
                        envvar=option.envvar, show_envvar=False, **extra)


def add_common_options(p: argparse.ArgumentParser, *, jobs: bool = True) -> None:
    """Options every scanning command takes (``scan``, ``git``, ``redact``)."""
    p.add_argument("--rules", metavar="FILE", action="append", default=[],
                   help="add rules from a TOML file (repeatable)")
    if jobs:
        p.add_argument("--jobs", "-j", type=int, default=0, metavar="N",
                       help="worker processes (default: one per core)")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback behind an internal error")


def add_report_options(p: argparse.ArgumentParser) -> None:
    """How ``scan`` and ``git`` report: format, file, confidence, baseline, colour."""
    p.add_argument("--format", choices=[f.value for f in Format], default=Format.TEXT.value,
                   metavar="FORMAT",
                   help="report format: text (default), json, sarif or gitlab (GitLab's "
                        "secret detection report)")
    p.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
    p.add_argument("--min-confidence", choices=[c.value for c in Confidence],
                   default=Confidence.POSSIBLE.value, metavar="LEVEL",
                   help="report only findings at least this sure: confirmed, or possible "
                        "(default)")
    p.add_argument("--baseline", metavar="REPORT.json",
                   help="skip findings already in this earlier JSON report")
    p.add_argument("--no-color", action="store_true", help="plain text even on a terminal")


def add_record_options(p: argparse.ArgumentParser) -> None:
    """``--record`` and ``--revoke`` (:mod:`scanner.cli.record`) for ``scan`` and ``git``."""
    group = p.add_argument_group("Incidents (see cendis-scan incidents --help)")
    group.add_argument("--record", action="store_true",
                       help="store the findings as incidents (source scan:<path or repo>)")
    group.add_argument("--revoke", action="store_true",
                       help="record, then revoke the confirmed tokens through the Cendis API "
                            "now (exit 2 if one could not be revoked)")
    add(group, DB)
    add(group, NOTIFY_CONFIG, when="with --record: ")
    add(group, TOKEN, when="with --revoke: ")
    add(group, API_URL, when="with --revoke: ")
