"""The typer application: the top-level help, and the commands off the hot path.

The hot-path commands are listed here too, so ``cendis-scan --help`` shows every
command, but they are parsed by :mod:`scanner.cli.commands` (one definition of their
options, no typer import when a hook runs them).
"""

from __future__ import annotations

import sys

import typer

from scanner import __version__

app = typer.Typer(
    name="cendis-scan",
    help="Find, block and revoke leaked Cendis personal access tokens (cendis_pat_...).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    epilog="\b\nExamples:\n  cendis-scan scan .\n  kubectl logs pod | cendis-scan scan -\n"
           "  tail -f app.log | cendis-scan redact\n  cendis-scan scan --help",
)

_FORWARD = {"ignore_unknown_options": True, "allow_extra_args": True,
            "help_option_names": []}
_SUMMARIES = {
    "scan": "Scan files, directories or stdin for tokens.  Example: cendis-scan scan .",
    "git": "Scan git history, staged changes or a push.  Example: cendis-scan git --staged",
    "redact": "Copy stdin to stdout with every token redacted.  Example: "
              "tail -f app.log | cendis-scan redact",
    "check-token": "Say whether the token on stdin is well-formed.  Example: "
                   "pbpaste | cendis-scan check-token",
    "rules": "List rules, or check a rule file against its samples.  Example: "
             "cendis-scan rules check my-rules.toml",
    "install-hook": "Install a plain git pre-commit (or pre-push) hook.  Example: "
                    "cendis-scan install-hook",
}


def _forwarder(name: str) -> None:
    def command(ctx: typer.Context) -> None:
        from scanner.cli.commands import run

        sys.exit(run([name, *ctx.args]))

    command.__doc__ = _SUMMARIES[name] + "  (See: cendis-scan " + name + " --help.)"
    app.command(name, context_settings=_FORWARD, add_help_option=False)(command)


for _name in _SUMMARIES:
    _forwarder(_name)


@app.command()
def version() -> None:
    """Print the version.  Example: cendis-scan version"""
    typer.echo(f"cendis-scan {__version__}")


def unknown(args: list[str]) -> str | None:
    """What is wrong with a command line whose first word no command or option takes."""
    if not args or args[0] == "--help":
        return None
    names = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    if args[0] in names:
        return None
    kind = "option" if args[0].startswith("-") else "command"
    from scanner.errors import short

    return f"no such {kind} {short(args[0], 40)!r}"


def _register_more() -> None:
    """Commands kept in their own modules (each has a ``register(app)``)."""
    from scanner.cli import dev, incidents, serve

    incidents.register(app)
    dev.register(app)
    serve.register(app)  # after dev: it adds send-report to the dev group


_register_more()
