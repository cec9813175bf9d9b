"""``cendis-scan dev ...``: local stand-ins for demos and tests (never on the hook path)."""

from __future__ import annotations

import sys

import typer

from scanner.cli.incidents import cli_errors
from scanner.errors import ConfigError


def register(app: typer.Typer) -> None:
    """Add the ``dev`` group (``dev cendis-api``) to the application."""
    group = typer.Typer(
        name="dev", no_args_is_help=True, rich_markup_mode=None,
        help="Local stand-ins for trying cendis-scan without real services.  "
             "Example: cendis-scan dev cendis-api --seed examples/leaky-project")
    app.add_typer(group, name="dev")
    from scanner.cli.serve import add_send_report  # issue 9: the local signing partner

    add_send_report(group)

    @group.command("cendis-api")
    def cendis_api(
        port: int = typer.Option(8787, "--port", min=1, max=65535,
                                 help="port on 127.0.0.1 (default 8787)"),
        host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
        seed: str | None = typer.Option(
            None, "--seed", metavar="FILE",
            help="tokens it knows: a JSON seed file, or any file or directory whose "
                 "tokens (as cendis-scan scan finds them) become live demo tokens; "
                 "default: a few generated ones"),
    ) -> None:
        """Run a local stand-in of the Cendis API (whoami, revoke; faults injected over
        HTTP: POST /_faults). Tokens are held as hashes. A generated service credential
        (and generated demo tokens) are printed once, on a terminal only.

        Example: cendis-scan dev cendis-api --seed examples/leaky-project
        """
        with cli_errors():
            from aiohttp import web

            from scanner.dev import seed as seeds
            from scanner.dev.cendis_api import create_app

            loaded = seeds.load(seed) if seed else seeds.generated()
            app = create_app(tokens=loaded.tokens, service_credentials=loaded.credentials)
            from scanner.scrub import scrub

            url = scrub(f"http://{host}:{port}")
            out = sys.stdout.write
            out(f"Cendis stand-in on {url}: {len(loaded.tokens)} token(s) known\n")
            if loaded.shown and sys.stdout.isatty():
                out("Shown once, for this demo only:\n")
                for line in loaded.shown:
                    out(f"  {line}\n")
                out(f"Then: export CENDIS_API_URL={url} CENDIS_TOKEN=<the service "
                    "credential above>\n")
            elif loaded.shown:
                out("(generated credentials are shown on a terminal only; for scripts, "
                    "pass --seed FILE.json with a \"service\" entry)\n")
            sys.stdout.flush()
            try:
                web.run_app(app, host=host, port=port, print=None, access_log=None)
            except OSError as exc:  # an address in use, a host that does not resolve
                raise ConfigError(f"cannot listen on {host}:{port}: "
                                  f"{exc.strerror or exc}") from None
