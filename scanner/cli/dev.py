"""``cendis-scan dev ...``: local stand-ins for demos and tests (never on the hook path):
``dev cendis-api`` (the Cendis API) and ``dev send-report`` (a partner that signs its
leak reports). aiohttp and cryptography are imported inside the commands only."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scanner.errors import ConfigError, short

if TYPE_CHECKING:
    from scanner.dev.seed import Seed

DEFAULT_PARTNER_URL = "http://127.0.0.1:8080/partners/github"


def cendis_api(
    port: Annotated[int, typer.Option(
        "--port", min=1, max=65535, help="port on 127.0.0.1 (default 8787)")] = 8787,
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    seed: Annotated[str | None, typer.Option(
        "--seed", metavar="FILE",
        help="tokens it knows: a JSON seed file, or any file or directory whose tokens (as "
             "cendis-scan scan finds them) become live demo tokens; default: a few "
             "generated ones")] = None,
    credential_file: Annotated[str | None, typer.Option(
        "--credential-file", metavar="FILE",
        help="write the generated service credential to FILE (mode 0600, one line) "
             "instead of printing it: CENDIS_TOKEN=$(cat FILE)")] = None,
) -> None:
    """Run a local stand-in of the Cendis API (whoami, revoke; faults injected over
    HTTP: POST /_faults). Tokens are held as hashes. A generated service credential
    and generated demo tokens are printed once on stdout, whether it is a terminal,
    a pipe or a file (they are good against this stand-in only); with
    --credential-file the credential goes to that file instead.

    Example: cendis-scan dev cendis-api --seed examples/leaky-project
    """
    from aiohttp import web

    from scanner.dev import seed as seeds
    from scanner.dev.cendis_api import create_app
    from scanner.scrub import scrub

    loaded = seeds.load(seed) if seed else seeds.generated()
    app = create_app(tokens=loaded.tokens, service_credentials=loaded.credentials)
    url = scrub(f"http://{host}:{port}")
    sys.stdout.write(f"Cendis stand-in on {url}: {len(loaded.tokens)} token(s) known\n")
    sys.stdout.flush()
    if credential_file is not None:  # a file we cannot write: said before starting
        _write_secret(credential_file, "")
    try:
        web.run_app(app, host=host, port=port, access_log=None,
                    print=_Announce(loaded, url, credential_file))
    except OSError as exc:  # an address in use, a host that does not resolve
        raise ConfigError(f"cannot listen on {host}:{port}: "
                          f"{exc.strerror or exc}") from None


class _Announce:
    """Called by ``run_app`` once it listens: a stand-in that cannot start shows no
    credential, and one that runs shows it wherever stdout goes (or writes it to
    ``--credential-file``)."""

    def __init__(self, loaded: Seed, url: str, credential_file: str | None) -> None:
        self.loaded, self.url, self.credential_file = loaded, url, credential_file

    def __call__(self, _: str) -> None:
        from scanner.scrub import scrub

        loaded, out = self.loaded, sys.stdout.write
        shown = loaded.shown
        if self.credential_file is not None and loaded.generated_credential:
            _write_secret(self.credential_file, loaded.generated_credential)
            shown = [line for line in shown if loaded.generated_credential not in line]
            out(f"Service credential written to {scrub(self.credential_file, 200)}\n")
        if shown:
            out("Shown once, for this demo only (good against this stand-in only):\n")
            for line in shown:
                out(f"  {line}\n")
        if loaded.generated_credential:
            then = ("$(cat FILE)" if self.credential_file is not None
                    else "<the service credential above>")
            out(f"Then: export CENDIS_API_URL={self.url} CENDIS_TOKEN={then}\n")
        sys.stdout.flush()


def _write_secret(path: str, secret: str) -> None:
    """The credential alone on one line, readable by its owner only (it is a secret,
    if only for the stand-in): created 0600, or truncated and set to 0600. An empty
    ``secret`` only checks, before the server starts, that the file can be written."""
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


def send_report(
    url: Annotated[str, typer.Option(help="The receiver's GitHub route.")]
    = DEFAULT_PARTNER_URL,
    token_file: Annotated[Path | None, typer.Option(
        help="Report the cendis_pat_ tokens in this file (a list, an .env, any text), as "
             "cendis-scan scan finds them; with none, each non-empty line (default: one "
             "freshly generated token).")] = None,
    keys_port: Annotated[int, typer.Option(
        help="Port of this partner's key endpoint (serve --github-keys-url "
             "http://127.0.0.1:PORT/meta/public_keys/secret_scanning).")] = 8090,
    wait: Annotated[float, typer.Option(help="Retry 503 answers for this many seconds.")]
    = 30.0,
) -> None:
    """Act as a secret-scanning partner: serve a GitHub-shaped key endpoint with a fresh
    P-256 key and post one signed report. Prints the redacted tokens and the answer.
    Exit status: 0 accepted (200), 1 refused, 2 error.

    Example: cendis-scan dev send-report --token-file leaked.txt
    """
    import asyncio

    from scanner.dev.partner import send_report as post
    from scanner.token import generate, redact, secret_sha256

    if token_file is not None:
        try:
            tokens = tokens_in(token_file.read_bytes())
        except OSError as exc:
            raise ConfigError(f"{token_file}: {exc.strerror or exc}") from None
    else:
        tokens = [generate()]
    if not tokens:
        raise ConfigError(f"{token_file}: no tokens")
    try:
        status, answer = asyncio.run(post(url, tokens, keys_port=keys_port, wait=wait,
                                          out=sys.stderr))
    except OSError as exc:
        raise ConfigError(f"cannot reach {url} or serve keys on {keys_port}: "
                          f"{exc.strerror or exc}") from None
    labels = {}
    if isinstance(answer, list):
        labels = {a.get("token_hash"): a.get("label") for a in answer if isinstance(a, dict)}
    for token in tokens:
        label = labels.get(secret_sha256(token.encode())) or "queued"
        typer.echo(f"{redact(token)}  {label}")
    typer.echo(f"receiver answered {status}")
    if status != 200:
        sys.stderr.write(f"cendis-scan: report refused: {str(answer)[:200]}\n")
        raise typer.Exit(1)


def tokens_in(data: bytes) -> list[str]:
    """Every distinct token in ``data`` that the detector finds in plain text (what
    ``cendis-scan scan`` reports, so an ``.env`` or a log works as it is), else the
    non-empty, non-comment lines (to report other strings)."""
    from scanner.engine.detect import Detector
    from scanner.rules import load

    hits = Detector(load()).scan_text(data)
    found = [data[h.offset:h.end].decode("ascii", "replace") for h in hits
             if h.encoding == "plain"]
    if found:
        return list(dict.fromkeys(found))
    text = data.decode("utf-8", "replace")
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def register(app: typer.Typer) -> None:
    """Add the ``dev`` group (``dev cendis-api``, ``dev send-report``)."""
    group = typer.Typer(
        name="dev", no_args_is_help=True, rich_markup_mode=None,
        help="Local stand-ins for trying cendis-scan without real services.  "
             "Example: cendis-scan dev cendis-api --seed examples/leaky-project")
    group.command("send-report")(send_report)
    group.command("cendis-api")(cendis_api)
    app.add_typer(group, name="dev")
