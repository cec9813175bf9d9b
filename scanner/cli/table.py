"""The one table of commands: name, summary, example, and where the handler lives.

Both paths read it: the fast path (argparse, for the commands a hook or a CI step runs,
which must not pay for importing typer) and the typer path (everything else). The
top-level help is rendered from it too, so a command is named, summarised and
exemplified in exactly one place, and a command missing from here does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    summary: str
    example: str
    module: str  # fast: has build(sub) and the handler; typer: has register(app)
    fast: bool


COMMANDS: tuple[Command, ...] = (
    Command("scan", "Scan files, directories or stdin for tokens.", "cendis-scan scan .",
            "scanner.cli.commands", True),
    Command("git", "Scan git history, staged changes or a push.",
            "cendis-scan git --staged", "scanner.cli.git_commands", True),
    Command("redact", "Copy stdin to stdout with every token redacted.",
            "tail -f app.log | cendis-scan redact", "scanner.cli.commands", True),
    Command("check-token", "Say whether the token on stdin is well-formed.",
            "pbpaste | cendis-scan check-token", "scanner.cli.commands", True),
    Command("rules", "List rules, or check a rule file against its samples.",
            "cendis-scan rules check my-rules.toml", "scanner.cli.commands", True),
    Command("install-hook", "Install git hooks: one repository, --global or --template.",
            "cendis-scan install-hook", "scanner.cli.git_commands", True),
    Command("uninstall-hook", "Remove the hooks install-hook installed; restore the old.",
            "cendis-scan uninstall-hook", "scanner.cli.git_commands", True),
    Command("doctor", "Check this machine: hooks, CENDIS_TOKEN, tokens left in files.",
            "cendis-scan doctor", "scanner.cli.doctor", True),
    Command("incidents", "List and inspect the incident trail (one per leaked token).",
            "cendis-scan incidents list --status pending", "scanner.cli.incidents", False),
    Command("revoke", "Revoke one leaked token now (read from stdin) and record it.",
            "pbpaste | cendis-scan revoke", "scanner.cli.incidents", False),
    Command("whoami", "Show the service credential's user, org, scopes and expiry.",
            "cendis-scan whoami", "scanner.cli.incidents", False),
    Command("serve", "Receive signed leak reports from partners; record and revoke them.",
            "CENDIS_TOKEN=... cendis-scan serve --port 8080", "scanner.cli.serve", False),
    Command("sweep", "Sweep repositories and logs incrementally; record and revoke.",
            "cendis-scan sweep sweep.toml --every 15m", "scanner.cli.sweep", False),
    Command("db", "Migrate the incident database's schema; copy a trail to another one.",
            "cendis-scan db copy cendis-incidents.db postgresql://host/db",
            "scanner.cli.db", False),
    Command("notify", "Send a test notification to a configured channel.",
            "cendis-scan notify test security --config notify.toml", "scanner.cli.notify",
            False),
    Command("dev", "Local stand-ins (the Cendis API, a signing partner) for demos.",
            "cendis-scan dev cendis-api", "scanner.cli.dev", False),
    Command("version", "Print the version.", "cendis-scan version", "scanner.cli.commands",
            True),
)

BY_NAME = {c.name: c for c in COMMANDS}

EXAMPLES = ("cendis-scan scan .", "kubectl logs pod | cendis-scan scan -",
            "cendis-scan git --staged", "tail -f app.log | cendis-scan redact",
            "cendis-scan scan --help")


def top_help(version: str) -> str:
    width = max(len(c.name) for c in COMMANDS) + 2
    rows = "\n".join(f"  {c.name.ljust(width)}{c.summary}" for c in COMMANDS)
    examples = "\n".join(f"    {e}" for e in EXAMPLES)
    return (f"Usage: cendis-scan [--version] [--debug] COMMAND [ARGS]...\n\n"
            f"  Find, block and revoke leaked Cendis personal access tokens "
            f"(cendis_pat_...).\n  cendis-scan {version}\n\n"
            f"Options:\n  -h, --help  Show this message and exit.\n"
            f"  --version   Print the version and exit.\n"
            f"  --debug     Show the traceback behind an internal error "
            f"(or CENDIS_SCAN_DEBUG=1).\n\n"
            f"Commands:\n{rows}\n\n  Each command answers --help.\n\n"
            f"  Examples:\n{examples}\n")
