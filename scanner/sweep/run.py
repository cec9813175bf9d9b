"""One sweep: every source of the configuration (or of one shard), concurrently.

Each repository runs in a thread of its own: fetch its mirror, scan what is new through
the library (``scan_git_history`` the first time, then ``scan_git_revs`` of what is new
since the scanned tips), hand the new findings to the sink, and only then advance its
state. The library is thread-safe and manages its own process pools, so threads are
enough here. One repository failing (unreachable, corrupt, refused credentials) is
reported in its row and does not stop the others; its state stays where it was.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanner.errors import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, ScanError, short
from scanner.finding import Finding
from scanner.result import ScanOptions, ScanResult
from scanner.rules import Rule
from scanner.sweep.config import LogSource, RepoSource, SweepConfig, shard_of
from scanner.sweep.logs import sweep_logs
from scanner.sweep.mirrors import Mirror, Plan, cache_dir_name, exclusive
from scanner.sweep.sinks import Place, Sink

if TYPE_CHECKING:
    from scanner.sweep.discovery import OrgResult

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SourceReport:
    """One row of the summary: a repository, a ``[[logs]]`` table, or an ``[[org]]``'s
    discovery (its repositories are rows of their own)."""

    kind: str  # "repo" | "logs" | "org"
    name: str
    first: bool = False  # a repository's first sweep: its whole history
    commits: int = 0
    files: int = 0  # git objects or log files read
    bytes: int = 0
    findings: list[Finding] = field(default_factory=list)  # new ones only
    queued: int = 0
    revoked: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: bool = False  # a shutdown came before it started
    revoked_by: str = "sweep"  # "sweep" (here) or "receiver" (--report-to)
    discovery: dict[str, Any] | None = None  # an org: listed, new, renamed, retired...
    presence: dict[str, int] | None = None  # a repository's presence checks, if any ran

    def to_dict(self) -> dict[str, Any]:
        extra = {"discovery": self.discovery} if self.discovery is not None else {}
        if self.presence is not None:
            extra["presence"] = self.presence
        return {**extra, "kind": self.kind, "name": self.name, "first": self.first,
                "commits": self.commits, "files": self.files, "bytes": self.bytes,
                "new_findings": len(self.findings), "queued": self.queued,
                "revoked": self.revoked, "revoked_by": self.revoked_by,
                "errors": self.errors,
                "seconds": round(self.seconds, 3), "skipped": self.skipped,
                "findings": [f.to_dict() for f in self.findings]}


@dataclass(slots=True)
class SweepReport:
    sources: list[SourceReport]
    problems: list[str] = field(default_factory=list)  # revocation trouble
    seconds: float = 0.0
    shard: tuple[int, int] | None = None

    @property
    def new_findings(self) -> int:
        return sum(len(s.findings) for s in self.sources)

    @property
    def failed(self) -> bool:
        return bool(self.problems) or any(s.errors for s in self.sources)

    @property
    def exit_status(self) -> int:
        """2 when a source (or a revoke) failed, else 1 when there are new findings."""
        if self.failed:
            return EXIT_ERROR
        return EXIT_FINDINGS if self.new_findings else EXIT_CLEAN

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "shard": list(self.shard) if self.shard else None,
                "seconds": round(self.seconds, 3), "new_findings": self.new_findings,
                "problems": self.problems, "exit_status": self.exit_status,
                "sources": [s.to_dict() for s in self.sources]}


def select(config: SweepConfig, shard: tuple[int, int] | None,
           discovered: Sequence[RepoSource] = ()) -> list[RepoSource | LogSource]:
    """The sources of this shard (all of them without one): the configuration's, and
    the discovered repositories (once each; a ``[[repo]]`` of the same name wins)."""
    names = {r.name for r in config.repos}
    seen: set[str] = set()
    found: list[RepoSource] = []
    for repo in discovered:
        if repo.name not in names and repo.mirror_name not in seen:
            seen.add(repo.mirror_name)
            found.append(repo)
    sources: list[RepoSource | LogSource] = [*config.repos, *found, *config.logs]
    if shard is None:
        return sources
    k, n = shard
    return [s for s in sources if shard_of(s, n) == k]


def org_report(result: OrgResult) -> SourceReport:
    """An ``[[org]]``'s row: its discovery's figures and changes, and its errors (a
    failed listing is an error even though the last known list is swept)."""
    return SourceReport("org", result.org.name, errors=list(result.errors),
                        seconds=result.seconds, discovery=result.to_dict())


def _new(findings: Sequence[Finding], reported: set[str]) -> list[Finding]:
    """Findings whose token was never reported for this source, each token once."""
    out: dict[str, Finding] = {}
    for finding in findings:
        if finding.secret_sha256 not in reported:
            out.setdefault(finding.secret_sha256, finding)
    return list(out.values())


def _issues(result: ScanResult) -> list[str]:
    return [f"{e.reason}: {e.message}" for e in result.errors[:5]]


def sweep_repo(source: RepoSource, cache: Path, rules: list[Rule], options: ScanOptions,
               sink: Sink, *, fetch: bool = True) -> SourceReport:
    """Fetch, scan what is new, record, then advance the state (in that order)."""
    report = SourceReport("repo", source.name)
    started = time.perf_counter()
    from scanner.sweep.discovery.credentials import clone_env

    mirror = Mirror(cache / cache_dir_name(source.mirror_name), source.url, source.branches,
                    env=clone_env(source.url, source.credential, os.environ))
    try:
        with exclusive(mirror.path.with_suffix(".lock")):
            _sweep_mirror(source, mirror, rules, options, sink, report, fetch)
    except ScanError as exc:
        report.errors.append(f"{getattr(exc, 'reason', 'error')}: {short(str(exc), 240)}")
    except Exception as exc:  # a bug in one source must not end the sweep
        log.debug("sweeping %s failed", source.name, exc_info=True)
        report.errors.append(f"internal: {short(repr(exc), 240)}")
    finally:
        report.seconds = time.perf_counter() - started
    return report


def _sweep_mirror(source: RepoSource, mirror: Mirror, rules: list[Rule],
                  options: ScanOptions, sink: Sink, report: SourceReport,
                  fetch: bool) -> None:
    import scanner

    if fetch:
        mirror.fetch()
    elif not (mirror.path / "HEAD").exists():
        raise ScanError(f"no mirror in the cache yet ({mirror.path})")
    plan = mirror.plan()
    report.first = plan.first
    result: ScanResult | None = None
    if plan.first and not source.branches:
        result = scanner.scan_git_history(mirror.path, rules, options)
    elif plan.new:
        result = scanner.scan_git_revs(mirror.path, plan.rev_sets, rules, options)
    if result is not None:
        report.commits, report.files, report.bytes = (result.commits, result.files,
                                                      result.bytes)
        if result.errors:  # something unread: do not advance, try again next time
            report.errors = _issues(result)
            return
        report.findings = _new(result.findings, mirror.reported())
    if report.findings:
        place = Place(f"scan:{source.name}", source.name, source.public_url)
        report.queued = sink.record(place, report.findings, revoke=source.auto_revoke)
        mirror.add_reported(f.secret_sha256 for f in report.findings)
    mirror.advance(plan)
    _check_presence(source, mirror, rules, sink, report, plan)


def _check_presence(source: RepoSource, mirror: Mirror, rules: list[Rule], sink: Sink,
                    report: SourceReport, plan: Plan) -> None:
    """After the state moved: is each open incident of this repository still at its
    default branch's tip? A failure is an error of the row; the sweep's own work is
    already done and kept."""
    from scanner.sweep.presence import check_presence, presence_error

    book = getattr(sink, "presence", None)
    if book is None:
        return
    try:
        checked = check_presence(book, source.name, mirror.path, rules,
                                 branch=mirror.default_branch(source.default_branch),
                                 tips=plan.tips)
    except Exception as exc:  # noqa: BLE001 - one line in the row, never the sweep
        log.debug("presence check of %s failed", source.name, exc_info=True)
        report.errors.append(presence_error(exc))
        return
    if checked.checked:
        report.presence = checked.to_dict()


def sweep_log_source(source: LogSource, cache: Path, rules: list[Rule],
                     options: ScanOptions, sink: Sink) -> SourceReport:
    report = SourceReport("logs", source.name)
    started = time.perf_counter()
    try:
        with exclusive(cache / f"{source.key}.lock"):
            _sweep_logs(source, cache, rules, options, sink, report)
    except ScanError as exc:
        report.errors.append(f"{getattr(exc, 'reason', 'error')}: {short(str(exc), 240)}")
    except Exception as exc:
        log.debug("sweeping %s failed", source.name, exc_info=True)
        report.errors.append(f"internal: {short(repr(exc), 240)}")
    finally:
        report.seconds = time.perf_counter() - started
    return report


def _sweep_logs(source: LogSource, cache: Path, rules: list[Rule], options: ScanOptions,
                sink: Sink, report: SourceReport) -> None:
    swept = sweep_logs(source.paths, cache / f"{source.key}.json", rules, options)
    report.files, report.bytes = swept.files, swept.bytes
    report.errors = [f"{e.reason}: {e.message}" for e in swept.errors[:5]]
    report.findings = swept.findings
    by_path: dict[str, list[Finding]] = {}
    for finding in swept.findings:
        by_path.setdefault(finding.path or "-", []).append(finding)
    acknowledged: set[str] = set()
    for path, found in by_path.items():
        try:
            report.queued += sink.record(Place(f"scan:{path}"), found,
                                         revoke=source.auto_revoke)
        except ScanError:  # the offsets stay: the unacknowledged are found again
            swept.keep(acknowledged)
            raise
        acknowledged.update(f.secret_sha256 for f in found)
    swept.commit()


def run_sweep(config: SweepConfig, sink: Sink, rules: list[Rule], *,
              options: ScanOptions | None = None, shard: tuple[int, int] | None = None,
              fetch: bool = True, stop: threading.Event | None = None,
              on_start: Callable[[RepoSource | LogSource], None] | None = None,
              on_done: Callable[[SourceReport], None] | None = None,
              on_total: Callable[[int], None] | None = None,
              environ: Mapping[str, str] | None = None,
              sleep: Callable[[float], Awaitable[None]] | None = None,
              clock: Callable[[], float] | None = None) -> SweepReport:
    """Discover the ``[[org]]`` repositories (``environ``, ``sleep`` and ``clock`` are
    the discovery's), then sweep every selected source, ``config.concurrency`` at a
    time. A set ``stop`` lets the sources already started finish and starts no other
    (clean shutdown)."""
    options = options or ScanOptions()
    started = time.perf_counter()
    cache = Path(config.cache)
    cache.mkdir(parents=True, exist_ok=True)
    orgs: list[OrgResult] = []
    if config.orgs:
        from scanner.sweep.discovery import discover

        orgs = discover(config.orgs, cache, fetch=fetch, environ=environ, sleep=sleep,
                        clock=clock)
    sources = select(config, shard, [r for o in orgs for r in o.repos])
    if on_total is not None:
        on_total(len(sources))

    def one(source: RepoSource | LogSource) -> SourceReport:
        if stop is not None and stop.is_set():
            return SourceReport("repo" if isinstance(source, RepoSource) else "logs",
                                source.name, skipped=True)
        if on_start is not None:
            on_start(source)
        if isinstance(source, RepoSource):
            report = sweep_repo(source, cache, rules, options, sink, fetch=fetch)
        else:
            report = sweep_log_source(source, cache, rules, options, sink)
        if on_done is not None:
            on_done(report)
        return report

    if len(sources) <= 1 or config.concurrency == 1:
        # In this thread: a single-threaded process may fork its scan workers, which
        # start faster than the forkserver a threaded one must use.
        reports = [one(source) for source in sources]
    else:
        with ThreadPoolExecutor(max_workers=config.concurrency,
                                thread_name_prefix="cendis-sweep") as pool:
            reports = list(pool.map(one, sources))
    reports = [*(org_report(o) for o in orgs), *reports]
    problems = sink.finish()
    for report in reports:
        report.revoked_by = sink.revoked_by
        report.revoked = sum(1 for f in report.findings
                             if sink.outcome(f.secret_sha256) in ("revoked",
                                                                   "already_revoked"))
    return SweepReport(reports, problems, time.perf_counter() - started, shard)
