"""``cendis-scan sweep CONFIG``: a thin typer command over :mod:`scanner.sweep`.

Off the hook path: typer, rich, sqlite-utils and aiohttp are imported only here and only
when the command runs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
from typing import Annotated, Any

import typer

from scanner.cli.options import API_URL, DB, TOKEN, TextOrJson, typer_option
from scanner.errors import ConfigError, short
from scanner.incidents.pipeline import db_path

SWEEP_HELP = """Sweep every repository and log of a configuration, incrementally: the first
sweep of a repository scans its whole history, later ones only the commits new since
(force-pushes and deleted branches included); logs are read from where the last sweep
stopped. New findings become incidents (source scan:<repository or path>) and, where
auto_revoke is on, are revoked through the Cendis API.

Example: cendis-scan sweep sweep.toml --every 15m

Exit status: 0 nothing new, 1 new findings, 2 a source (or a revoke) failed.
"""


#: The longest --every: a sweep a year apart is already no schedule; anything longer
#: (999999999d) would overflow the wait, so it is a usage error instead.
MAX_EVERY = 365 * 86400
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str) -> float:
    """``15m``, ``1h``, ``90s``, ``1h30m`` -> seconds, from 1 s to 365 days."""
    compact = re.sub(r"\s+", "", text.strip().lower())
    parts = re.findall(r"([0-9]+)([smhd])", compact)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != compact:
        raise ConfigError(f"--every wants a duration such as 15m, 1h or 90s, not "
                          f"{short(text, 30)!r}")
    if any(len(n.lstrip("0")) > 12 for n, _ in parts):  # int() of 5000 digits refuses
        raise ConfigError(f"--every must be at most {MAX_EVERY // 86400}d")
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds < 1:
        raise ConfigError("--every must be at least 1s")
    if seconds > MAX_EVERY:
        raise ConfigError(f"--every must be at most {MAX_EVERY // 86400}d (not "
                          f"{short(text, 30)!r})")
    return float(seconds)


class _Progress:
    """A progress bar on a terminal: sources done of sources to sweep."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._lock = threading.Lock()
        self._running: list[str] = []
        self.bar = Progress(TextColumn("sweeping"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.description}"), TimeElapsedColumn(),
                            console=Console(file=sys.stderr), transient=True)
        self.task = self.bar.add_task("", total=total)
        self.bar.start()

    def total(self, count: int) -> None:
        """The count once the organisations' repositories are known."""
        self.bar.update(self.task, total=count)

    def start(self, source: Any) -> None:
        with self._lock:
            self._running.append(source.name)
            self.bar.update(self.task, description=", ".join(self._running)[:60])

    def done(self, report: Any) -> None:
        with self._lock:
            if report.name in self._running:
                self._running.remove(report.name)
            self.bar.update(self.task, advance=1, description=", ".join(self._running)[:60])

    def close(self) -> None:
        self.bar.stop()


def _sweep_once(config: Any, sink: Any, rules: Any, shard: Any, fmt: str, fetch: bool,
                stop: threading.Event, *, lines: bool) -> int:
    from scanner.sweep.run import run_sweep, select

    progress = _Progress(len(select(config, shard))) \
        if fmt == "text" and sys.stderr.isatty() else None
    try:
        report = run_sweep(config, sink, rules, shard=shard, fetch=fetch, stop=stop,
                           on_start=progress.start if progress else None,
                           on_done=progress.done if progress else None,
                           on_total=progress.total if progress else None)
    finally:
        if progress is not None:
            progress.close()
    if fmt == "json":
        sys.stdout.write(json.dumps(report.to_dict(), indent=None if lines else 2) + "\n")
        sys.stdout.flush()
    else:
        from scanner.report.sweep import write_table

        write_table(report)
    return report.exit_status


def _make_sink(config: Any, db: str | None, report_to: str | None, token: str | None,
               api_url: str | None, shard: Any) -> Any:
    from scanner.sweep.run import select
    from scanner.sweep.sinks import REPORT_TOKEN_ENV, LocalSink, RemoteSink

    if report_to:
        return RemoteSink(report_to, os.environ.get(REPORT_TOKEN_ENV))
    credential = url = None
    if any(s.auto_revoke for s in [*select(config, shard), *config.orgs]):  # else aiohttp
        # is not imported
        from scanner.cendis.client import api_url_from, credential_from

        credential = credential_from(token, os.environ)
        url = api_url_from(api_url, os.environ)
    return LocalSink(db or config.database or db_path(None), api_url=url,
                     credential=credential, notify=config.notify)


def sweep(
    config: Annotated[str, typer.Argument(metavar="CONFIG", help="the sweep's TOML file")],
    every: Annotated[str | None, typer.Option(
        "--every", metavar="DURATION",
        help="keep running, one sweep every DURATION (15m, 1h; 1s to 365d); SIGTERM stops "
             "cleanly between repositories")] = None,
    shard: Annotated[str | None, typer.Option(
        "--shard", metavar="K/N",
        help="only the sources in shard K of N (0 <= K < N), by a stable hash of each "
             "repository's name")] = None,
    format: Annotated[TextOrJson, typer.Option(
        "--format", metavar="FORMAT", help="text (a table, default) or json")
    ] = TextOrJson.TEXT,
    db: Annotated[str | None, typer_option(DB)] = None,
    token: Annotated[str | None, typer_option(TOKEN)] = None,
    cendis_api_url: Annotated[str | None, typer_option(API_URL)] = None,
    report_to: Annotated[str | None, typer.Option(
        "--report-to", metavar="URL",
        help="send new findings to a running 'cendis-scan serve' (its POST /v1/findings, "
             "bearer token from $CENDIS_SCAN_REPORT_TOKEN) instead of the local "
             "database")] = None,
    fetch: Annotated[bool, typer.Option(
        "--fetch/--no-fetch",
        help="fetch each mirror first (default); --no-fetch sweeps the cache as it is")
    ] = True,
) -> None:
    from scanner.rules import load as load_rules
    from scanner.sweep.config import load, parse_shard

    interval = parse_every(every) if every else None
    where = parse_shard(shard) if shard else None
    conf = load(config)
    rules = load_rules()
    sink = _make_sink(conf, db, report_to, token, cendis_api_url, where)
    stop = threading.Event()
    if interval is not None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    try:
        while True:
            status = _sweep_once(conf, sink, rules, where, format.value, fetch, stop,
                                 lines=interval is not None)
            if interval is None:
                raise typer.Exit(status)
            if stop.wait(interval) or stop.is_set():
                sys.stderr.write("cendis-scan: sweep stopped (SIGTERM)\n")
                raise typer.Exit(0)
    finally:
        sink.close()


def register(app: typer.Typer) -> None:
    app.command("sweep", help=SWEEP_HELP)(sweep)
