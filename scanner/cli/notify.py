"""``cendis-scan notify test CHANNEL --config FILE``: is a channel set up right?

Sends one test message (from a made-up incident: no token, not even a redacted real
one) through the same sender the dispatcher uses, and prints what the channel answered.
Thin over :mod:`scanner.notify`: a bad ``[notify]`` table is one line and exit 2, a
delivery the channel refused (or that never arrived) one line and exit 1.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from scanner.errors import EXIT_FINDINGS, ScanError

NOTIFY_TEST_HELP = """Send a test message to one channel of a [notify] table and print the
channel's answer (Slack's "ok", the webhook endpoint's status, the SMTP relay's reply).

The file may be a receiver's or a sweep's TOML, or one holding only [notify]; secrets
are read from the environment variables it names.

Example: cendis-scan notify test security --config notify.toml

Exit status: 0 delivered, 1 the channel refused it or could not be reached, 2 a
configuration error.
"""


class Refused(ScanError):
    """The channel did not take the test message: exit 1, like a check that failed."""

    reason = "refused"
    exit_status = EXIT_FINDINGS


def test_incident(now: datetime, base_url: str | None) -> dict[str, Any]:
    """A made-up incident shaped like ``Store.get_incident()``: nothing in it is a token."""
    where = f"links to incidents go to {base_url}/incidents/ID" if base_url else \
        "no base_url: messages carry no link"
    return {"id": None, "sha256": None, "redacted": "cendis_pat_Test…",
            "severity": "unknown", "status": "test", "owner": "cendis-scan",
            "scopes": [], "first_seen": now.isoformat(timespec="seconds"),
            "sightings": [{"source": "notify test", "path": "notify-test.txt", "line": 1}],
            "events": [{"kind": "test", "detail": where}]}


async def _send(channel: Any, config: Any, now: datetime) -> str:
    import aiohttp

    from scanner.notify import build_message, make_sender

    incident = test_incident(now, config.base_url)
    message = build_message(incident, "test", config.base_url,
                            detail=incident["events"][0]["detail"])
    async with aiohttp.ClientSession() as session:
        return await make_sender(channel).send([message], session=session,
                                               idem_key=f"test_{uuid.uuid4().hex}", now=now)


def send_test(channel: Annotated[str, typer.Argument(metavar="CHANNEL",
                                                help="the channel's name in [notify.channels]")],
         config: Annotated[str, typer.Option("--config", metavar="FILE",
                                             help="a TOML file with a [notify] table")]) -> None:
    from scanner.notify import DeliveryError, load_notify_config

    settings = load_notify_config(config)
    chosen = settings.channel(channel)
    try:
        answer = asyncio.run(_send(chosen, settings, datetime.now(UTC)))
    except DeliveryError as exc:
        retry = "worth retrying" if exc.retryable else "not retryable"
        raise Refused(f"{chosen.name} ({chosen.kind}): not delivered: {exc.message} "
                      f"[{exc.reason}, {retry}]") from None
    sys.stdout.write(f"{chosen.name} ({chosen.kind}): delivered: {answer}\n")


send_test.__doc__ = NOTIFY_TEST_HELP


def register(app: typer.Typer) -> None:
    """Add the ``notify`` group."""
    group = typer.Typer(name="notify", no_args_is_help=True, rich_markup_mode=None,
                        help="Notifications: test a channel of a [notify] table.  "
                             "Example: cendis-scan notify test security --config notify.toml")
    group.command("test")(send_test)
    app.add_typer(group, name="notify")
