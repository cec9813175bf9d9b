"""The library entry point: scan paths or a stream, filter, and return a result.

The CLI and the hooks are thin wrappers over :func:`scan_paths` and
:func:`scan_stdin`. Work is spread over processes (one per core) only when there is
enough of it to pay for starting them; small scans stay in-process so a hook on one
file answers in about the time Python takes to start.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from scanner.engine.detect import Detector
from scanner.engine.inputs import GZIP_LIMIT
from scanner.errors import ConfigError, SourceError
from scanner.finding import CONFIDENCE_RANK, Finding
from scanner.rules import Rule
from scanner.sources.files import (
    Outcome,
    Task,
    _fingerprint_root,
    count_segment,
    line_segments,
    number_lines,
    scan_file,
    scan_task,
    split_large,
    walk,
)

IGNORE_FILE = ".cendis-scan-ignore"
#: Below this much work a scan stays in one process.
PARALLEL_BYTES = 8 << 20
PARALLEL_FILES = 400
#: Files at least this large are cut into one range per core.
SPLIT_BYTES = 64 << 20
BATCH_BYTES = 4 << 20
BATCH_FILES = 64

Progress = Callable[[int, int], None]  # (files done, bytes done)


@dataclass(slots=True)
class Options:
    min_confidence: str = "possible"
    excludes: list[str] = field(default_factory=list)
    respect_gitignore: bool = False
    baseline: str | None = None
    jobs: int = 0  # 0: one per core
    max_decompressed: int = GZIP_LIMIT  # per gzip input; past it the input is a bomb


@dataclass(slots=True)
class Result:
    findings: list[Finding]
    suppressed: int
    files: int
    bytes: int
    seconds: float
    errors: list[str]
    ignored: int = 0

    def summary(self) -> dict[str, float | int]:
        return {"files": self.files, "bytes": self.bytes, "findings": len(self.findings),
                "suppressed": self.suppressed, "seconds": round(self.seconds, 3)}


_WORKER: Detector | None = None  # set before forking so workers inherit it


def _work(batch: list[Task], max_decompressed: int = GZIP_LIMIT) -> Outcome:
    assert _WORKER is not None
    total = Outcome()
    for task in batch:
        total.merge(scan_task(_WORKER, task, max_decompressed=max_decompressed))
    return total


def _batches(tasks: list[Task]) -> list[list[Task]]:
    batches: list[list[Task]] = []
    current: list[Task] = []
    size = 0
    for task in tasks:
        current.append(task)
        size += (task.end or task.size) - task.start
        if size >= BATCH_BYTES or len(current) >= BATCH_FILES:
            batches.append(current)
            current, size = [], 0
    if current:
        batches.append(current)
    return batches


def scan_paths(paths: list[str], rules: list[Rule], options: Options,
               progress: Progress | None = None) -> Result:
    global _WORKER
    started = time.perf_counter()
    detector = Detector(rules)
    errors: list[str] = []
    tasks = list(walk(paths, options.excludes, options.respect_gitignore, errors))
    jobs = options.jobs or os.cpu_count() or 1
    total_bytes = sum(t.size for t in tasks)
    outcome = Outcome()
    if jobs < 2 or (total_bytes < PARALLEL_BYTES and len(tasks) < PARALLEL_FILES):
        for task in tasks:
            outcome.merge(scan_task(detector, task,
                                    max_decompressed=options.max_decompressed))
            if progress:
                progress(outcome.files, outcome.bytes)
    else:
        tasks = [part for t in tasks for part in split_large(t, jobs, SPLIT_BYTES)]
        import multiprocessing
        from functools import partial

        _WORKER = detector
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(jobs) as pool:
            work = partial(_work, max_decompressed=options.max_decompressed)
            for part in pool.imap_unordered(work, _batches(tasks)):
                outcome.merge(part)
                if progress:
                    progress(outcome.files, outcome.bytes)
            segments = line_segments(outcome, jobs * 4)
            if segments:
                # Longest first, one at a time: both cores stay busy to the end.
                order = sorted(range(len(segments)), key=lambda i: segments[i][1] -
                               segments[i][2])
                counts = [0] * len(segments)
                done = pool.map(count_segment, [segments[i] for i in order], chunksize=1)
                for i, count in zip(order, done, strict=True):
                    counts[i] = count
                number_lines(outcome, segments, counts)
        _WORKER = None
    errors += outcome.errors
    findings, ignored = _filter(outcome.findings, options, paths)
    _note_tracked_env_files(findings)
    findings.sort(key=lambda f: f.sort_key)
    return Result(findings, outcome.suppressed, outcome.files, outcome.bytes,
                  time.perf_counter() - started, errors, ignored)


def scan_stdin(stream: BinaryIO, rules: list[Rule], options: Options) -> Result:
    """Constant memory whatever the size; gzip and UTF-16 are recognised here too."""
    started = time.perf_counter()
    outcome = Outcome(files=1)
    errors: list[str] = []
    task = Task("<stdin>", "-", "<stdin>", 0)
    try:
        scan_file(Detector(rules), stream, task, outcome, seekable=False,
                  max_decompressed=options.max_decompressed)
    except SourceError as exc:
        errors.append(f"<stdin>: {exc}")
    findings, ignored = _filter(outcome.findings, options, [])
    return Result(findings, outcome.suppressed, outcome.files, outcome.bytes,
                  time.perf_counter() - started, errors, ignored)


def load_fingerprints(path: str, *, report: bool) -> set[str]:
    """Fingerprints from a JSON report (``--baseline``) or an ignore file."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") \
            from None
    if not report:
        return {ln.strip() for ln in text.splitlines() if ln.strip() and not
                ln.lstrip().startswith("#")}
    try:
        data = json.loads(text)
        return {str(f["fingerprint"]) for f in data["findings"]}
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{path}: not a cendis-scan JSON report (need findings[].fingerprint)") \
            from None


def _filter(findings: list[Finding], options: Options, roots: list[str]) -> tuple[
        list[Finding], int]:
    floor = CONFIDENCE_RANK[options.min_confidence]
    skip: set[str] = set()
    if options.baseline:
        skip |= load_fingerprints(options.baseline, report=True)
    for base in {_fingerprint_root(r) for r in roots} | {
            os.path.abspath(r) for r in roots if os.path.isdir(r)}:
        ignore = os.path.join(base, IGNORE_FILE)
        if os.path.isfile(ignore):
            skip |= load_fingerprints(ignore, report=False)
    kept = [f for f in findings if CONFIDENCE_RANK[f.confidence] >= floor]
    out = [f for f in kept if f.fingerprint not in skip]
    return out, len(kept) - len(out)


def _note_tracked_env_files(findings: list[Finding]) -> None:
    """Cendis's docs: keep ``.env``/``.envrc`` in ``.gitignore``. Say so when git would
    pick one up. Runs ``git check-ignore`` once per such file, only for findings."""
    import subprocess

    from scanner.sources.files import git_top

    seen: dict[str, bool] = {}
    for f in findings:
        name = os.path.basename(f.path or "")
        if not (name == ".envrc" or name == ".env" or name.startswith(".env.")):
            continue
        if f.path not in seen:
            absolute = os.path.abspath(f.path or "")
            top = git_top(os.path.dirname(absolute))
            exposed = False
            if top is not None:
                try:
                    rc = subprocess.run(["git", "-C", top, "check-ignore", "-q", "--",
                                         absolute], capture_output=True, timeout=10).returncode
                    exposed = rc == 1
                except (OSError, subprocess.SubprocessError):
                    exposed = False
            seen[f.path or ""] = exposed
        if seen[f.path or ""]:
            f.note = (f"{name} is not ignored by git: add it to .gitignore so it is never "
                      "committed")
