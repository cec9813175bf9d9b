"""``cendis-scan dev ...``: local stand-ins for demos and tests (never on the hook path)."""

from __future__ import annotations

import os
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
        credential_file: str | None = typer.Option(
            None, "--credential-file", metavar="FILE",
            help="write the generated service credential to FILE (mode 0600, one line) "
                 "instead of printing it: CENDIS_TOKEN=$(cat FILE)"),
    ) -> None:
        """Run a local stand-in of the Cendis API (whoami, revoke; faults injected over
        HTTP: POST /_faults). Tokens are held as hashes. A generated service credential
        and generated demo tokens are printed once on stdout, whether it is a terminal,
        a pipe or a file (they are good against this stand-in only); with
        --credential-file the credential goes to that file instead.

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
            sys.stdout.flush()

            def listening(_: str) -> None:
                """Called by run_app once it listens: a stand-in that cannot start
                shows no credential, and one that runs shows it wherever stdout goes."""
                shown = loaded.shown
                if credential_file is not None and loaded.generated_credential:
                    _write_secret(credential_file, loaded.generated_credential)
                    shown = [line for line in shown
                             if loaded.generated_credential not in line]
                    out(f"Service credential written to {scrub(credential_file, 200)}\n")
                if shown:
                    out("Shown once, for this demo only (good against this stand-in "
                        "only):\n")
                    for line in shown:
                        out(f"  {line}\n")
                if loaded.generated_credential:
                    then = ("$(cat FILE)" if credential_file is not None
                            else "<the service credential above>")
                    out(f"Then: export CENDIS_API_URL={url} CENDIS_TOKEN={then}\n")
                sys.stdout.flush()

            if credential_file is not None:  # a file we cannot write: said before starting
                _write_secret(credential_file, "")
            try:
                web.run_app(app, host=host, port=port, print=listening, access_log=None)
            except OSError as exc:  # an address in use, a host that does not resolve
                raise ConfigError(f"cannot listen on {host}:{port}: "
                                  f"{exc.strerror or exc}") from None

def _write_secret(path: str, secret: str) -> None:
    """The credential alone on one line, readable by its owner only (it is a secret,
    if only for the stand-in): created 0600, or truncated and set to 0600. An empty
    ``secret`` only checks, before the server starts, that the file can be written."""
    from scanner.errors import short

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            if secret:
                os.write(fd, (secret + "\n").encode("ascii"))
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(f"--credential-file {short(path, 80)}: "
                          f"{exc.strerror or exc}") from None
