"""The library's scan entry points for files, directories, streams and bytes.

The CLI and the hooks are thin wrappers over these. Work is spread over processes
(:mod:`scanner.engine.pool`) only when there is enough of it to pay for starting them;
small scans stay in-process so a hook on one file answers in about the time Python
takes to start. Nothing here keeps state between calls: any number of scans may run at
once, from threads, an event loop or worker processes.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import time
from bisect import bisect_right
from collections.abc import Sequence
from concurrent.futures import Executor, Future, as_completed
from dataclasses import replace
from typing import BinaryIO

from scanner.engine import pool as pools
from scanner.engine.detect import Detector
from scanner.engine.inputs import SNIFF, kind_of
from scanner.engine.names import path_findings, redact_path
from scanner.engine.scan_input import (
    READ_WHOLE,
    Fanout,
    Outcome,
    count_lines,
    line_segments,
    number_lines,
    scan_input,
    split_large,
)
from scanner.engine.tars import SPLIT_MIN
from scanner.errors import UsageError
from scanner.finding import Finding, SourceKind
from scanner.result import DECODE_WINDOW, GZIP_LIMIT, Progress, ScanOptions, ScanResult
from scanner.rules import Rule
from scanner.scrub import is_clean, scrub
from scanner.sources.files import git_top, walk
from scanner.sources.origin import Origin
from scanner.suppress import (  # noqa: F401  (IGNORE_FILE: re-exported, public before)
    IGNORE_FILE,
    filter_findings,
    load_fingerprints,
)

log = logging.getLogger(__name__)

#: Files at least this large are cut into one range per worker.
SPLIT_BYTES = 64 << 20
#: A unit of work sent to a worker: this many bytes or files, whichever comes first.
BATCH_BYTES = 4 << 20
#: Small files are searched together, this many bytes at a time.
REGION_BYTES = 4 << 20
BATCH_FILES = 256  # each unit builds a detector (~1 ms): not too many units


def scan_origin(detector: Detector, origin: Origin, gzip_limit: int = GZIP_LIMIT,
                fanout: Fanout | None = None) -> Outcome:
    """Scan one file (or one range of a large file); any failure becomes an error for
    this file alone. What is not a regular file once open (a FIFO, a device,
    /dev/stdin on a pipe) is streamed in constant memory, like stdin. ``fanout``: the
    workers a large tar's members are split across."""
    outcome = Outcome(files=1 if origin.start == 0 else 0)
    try:
        with open(origin.fs_path or "", "rb") as f:
            seekable = stat.S_ISREG(os.fstat(f.fileno()).st_mode)
            scan_input(detector, f, origin, outcome, seekable=seekable, gzip_limit=gzip_limit,
                       fanout=fanout)
    except Exception as exc:  # one bad file must not end the scan (reported, exit 2)
        log.debug("scanning %s failed", origin.path, exc_info=True)
        outcome.fail(origin, exc)
    return outcome


def _large_tar(origin: Origin) -> bool:
    """A regular file that is a tar large enough to split across the workers (an
    image): it is read here, its members by the workers (tars.scan_tar)."""
    if origin.local or origin.end is not None or origin.size < SPLIT_MIN or not origin.fs_path:
        return False
    try:
        with open(origin.fs_path, "rb") as f:
            return kind_of(f.read(SNIFF)) == "tar"
    except OSError:
        return False


def _shown(origin: Origin, renamed: dict[str, str]) -> Origin:
    """The origin with its paths as they may be printed: components holding a token
    redacted, then scrubbed (control characters and undecodable bytes as ``\\xNN``).
    The file is still opened through ``fs_path``."""
    path = scrub(redact_path(origin.path or "", renamed))
    fp_path = scrub(redact_path(origin.fingerprint_path or "", renamed))
    if path == origin.path and fp_path == origin.fingerprint_path:
        return origin
    return replace(origin, path=path, fingerprint_path=fp_path)


def _scan_batch(rules: list[Rule], batch: list[Origin], gzip_limit: int,
                decode_window: int = DECODE_WINDOW) -> Outcome:
    """A worker's unit of work; self-contained (rules and options travel with it), so
    it runs in any process pool, ours or a caller's."""
    detector = Detector(rules, max_decompressed=gzip_limit, decode_window=decode_window)
    total = Outcome()
    if detector.prefilter is not None:
        _scan_small(detector, batch, gzip_limit, total)
        return total
    for origin in batch:
        total.merge(scan_origin(detector, origin, gzip_limit))
    return total


def _scan_small(detector: Detector, batch: list[Origin], gzip_limit: int,
                total: Outcome) -> None:
    """Small plain files read whole and searched together: one prefilter pass per
    REGION_BYTES of them, and the full scan (the same as :func:`scan_origin`'s) only for
    files where a literal is. A source tree is thousands of small files that hold no
    token, and per file this costs a read instead of a search set-up. Anything else
    (large, gzip/zip/UTF-16, unreadable, not a regular file) goes through scan_origin,
    which also words any error."""
    held: list[tuple[Origin, bytes]] = []
    size = 0
    for origin in batch:
        data = None
        if origin.end is None and origin.size <= READ_WHOLE and not origin.local:
            data = _read_small(origin.fs_path or "")
        if data is None:
            total.merge(scan_origin(detector, origin, gzip_limit))
            continue
        held.append((origin, data))
        size += len(data) + 1
        if size >= REGION_BYTES:
            _search_held(detector, held, gzip_limit, total)
            held, size = [], 0
    if held:
        _search_held(detector, held, gzip_limit, total)


def _read_small(fs_path: str) -> bytes | None:
    """A regular file's bytes if it is small and plain text or binary, else None."""
    try:
        with open(fs_path, "rb", buffering=0) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            data = f.readall()
    except OSError:
        return None
    if len(data) > READ_WHOLE or kind_of(data[:SNIFF]) not in ("text", "binary"):
        return None
    return data


def _search_held(detector: Detector, held: list[tuple[Origin, bytes]], gzip_limit: int,
                 total: Outcome) -> None:
    starts, pos = [], 0
    for _, data in held:
        starts.append(pos)
        pos += len(data) + 1
    region = b"\n".join(data for _, data in held)
    marked = {bisect_right(starts, p) - 1 for p in detector.candidates(region, 0, len(region))}
    for i, (origin, data) in enumerate(held):
        if i not in marked:
            total.files += 1
            total.bytes += len(data)
            continue
        outcome = Outcome(files=1)
        try:
            scan_input(detector, io.BytesIO(data), origin, outcome, seekable=True,
                       gzip_limit=gzip_limit)
        except Exception as exc:  # one bad file must not end the scan (reported, exit 2)
            log.debug("scanning %s failed", origin.path, exc_info=True)
            outcome.fail(origin, exc)
        total.merge(outcome)


def _batches(origins: list[Origin]) -> list[list[Origin]]:
    batches: list[list[Origin]] = []
    current: list[Origin] = []
    size = 0
    for origin in origins:
        current.append(origin)
        size += (origin.end or origin.size) - origin.start
        if size >= BATCH_BYTES or len(current) >= BATCH_FILES:
            batches.append(current)
            current, size = [], 0
    if current:
        batches.append(current)
    return batches


def scan_paths(paths: Sequence[str | os.PathLike[str]], rules: list[Rule],
               options: ScanOptions | None = None, progress: Progress | None = None, *,
               executor: Executor | None = None) -> ScanResult:
    """Scan files and directories (recursively; dotfiles and git-ignored files included,
    never ``.git/``). ``executor``: a process pool of the caller's to use instead of
    starting one."""
    if isinstance(paths, str | bytes | os.PathLike):
        raise UsageError("paths must be a list of paths, not one path (say [path])")
    options = options or ScanOptions()
    started = time.perf_counter()
    roots = [os.fspath(p) for p in paths]
    if options.baseline:  # a bad baseline is said before the scan, not after it
        load_fingerprints(options.baseline, report=True)
    detector = Detector(rules, max_decompressed=options.max_decompressed,
                        decode_window=options.decode_window)
    outcome = Outcome()
    names: list[tuple[str, str]] = []
    skipped: list[str] = []
    origins = list(walk(roots, options.excludes, options.respect_gitignore, outcome.errors,
                        skipped, names))
    if skipped:
        log.warning("skipped %d not regular file(s) inside directories (FIFOs, devices, "
                    "sockets), such as %s", len(skipped), skipped[0])
    found, outcome.suppressed, renamed = path_findings(detector, names)
    outcome.findings += found
    if renamed or not is_clean("\n".join(o.path or "" for o in origins)):
        origins = [_shown(o, renamed) for o in origins]
    local = [o for o in origins if o.local]  # streams: read here, never in a worker
    total_bytes = sum(o.size for o in origins if not o.local)
    if executor is None and not pools.worth_it(options.jobs, total_bytes,
                                               options.parallel_bytes, len(origins)):
        if detector.prefilter is not None:  # small files searched together
            for batch in _batches(origins):
                _scan_small(detector, batch, options.max_decompressed, outcome)
                if progress:
                    progress(outcome.files, outcome.bytes)
        else:
            for origin in origins:
                outcome.merge(scan_origin(detector, origin, options.max_decompressed))
                if progress:
                    progress(outcome.files, outcome.bytes)
    else:
        jobs = pools.worker_count(options.jobs)
        origins = [part for o in origins if not o.local
                   for part in split_large(o, jobs, SPLIT_BYTES)]
        if executor is None and _threads_will_do(detector, origins):
            _scan_ranges(detector, origins, local, options, outcome, progress, jobs)
        else:
            _scan_in_pool(rules, detector, origins, local, options, outcome, progress, jobs,
                          executor)
    if any(o.fs_path and o.fs_path.endswith("/oci-layout") for o in origins):
        from scanner.engine.images import name_folders  # an OCI image layout folder

        name_folders(outcome, origins)
    findings, ignored = filter_findings(outcome.findings, options, roots)
    findings = _note_tracked_env_files(findings)
    findings.sort(key=lambda f: f.sort_key)
    return ScanResult(findings, outcome.suppressed, outcome.files, outcome.bytes,
                      time.perf_counter() - started, outcome.errors, ignored,
                      skipped=len(skipped))


def _threads_will_do(detector: Detector, parts: list[Origin]) -> bool:
    """Large plain files cut into ranges, and nothing else: Hyperscan releases the GIL
    while it searches a mapping, so threads share the work without starting processes
    (no fork, no multiprocessing import, nothing pickled)."""
    return (detector.prefilter is not None and bool(parts)
            and all(p.end is not None for p in parts))


def _scan_ranges(detector: Detector, parts: list[Origin], local: list[Origin],
                 options: ScanOptions, outcome: Outcome, progress: Progress | None,
                 jobs: int) -> None:
    """The ranges searched by threads; lines (counting holds the GIL) by processes,
    started only when there is a finding to number."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(jobs) as threads:
        futures = [threads.submit(scan_origin, detector, part, options.max_decompressed)
                   for part in parts]
        _gather(futures, detector, local, options, outcome, progress)
    segments = line_segments(outcome, jobs * 4)
    if segments:
        with pools.executor(options.jobs) as pool:
            number_lines(outcome, segments, count_lines(segments, pool))


def _gather(futures: list[Future[Outcome]], detector: Detector, local: list[Origin],
            options: ScanOptions, outcome: Outcome, progress: Progress | None) -> None:
    """While the workers (threads or processes) scan, read the inputs only this process
    can open (streams, /dev/stdin); then merge the workers' outcomes as they finish."""
    for origin in local:
        outcome.merge(scan_origin(detector, origin, options.max_decompressed))
    for future in as_completed(futures):
        outcome.merge(future.result())
        if progress:
            progress(outcome.files, outcome.bytes)


def _scan_in_pool(rules: list[Rule], detector: Detector, origins: list[Origin],
                  local: list[Origin], options: ScanOptions, outcome: Outcome,
                  progress: Progress | None, jobs: int, executor: Executor | None) -> None:
    """Batches of files in worker processes (each builds its own detector), lines of
    split files counted there too."""
    tars = [o for o in origins if _large_tar(o)]
    if tars:
        origins = [o for o in origins if o not in tars]
    with pools.executor(options.jobs, executor) as pool:
        futures = [pool.submit(_scan_batch, rules, batch, options.max_decompressed,
                               options.decode_window) for batch in _batches(origins)]
        fanout = Fanout(pool, rules)
        for origin in tars:  # read here, the members by the workers
            outcome.merge(scan_origin(detector, origin, options.max_decompressed, fanout))
        _gather(futures, detector, local, options, outcome, progress)
        segments = line_segments(outcome, jobs * 4)
        if segments:
            number_lines(outcome, segments, count_lines(segments, pool))


def scan_stream(stream: BinaryIO, rules: list[Rule], options: ScanOptions | None = None, *,
                name: str = "<stdin>") -> ScanResult:
    """Scan a binary stream (stdin, a pipe, a socket) in constant memory, whatever its
    size; gzip and UTF-16 are recognised here too."""
    options = options or ScanOptions()
    started = time.perf_counter()
    outcome = Outcome(files=1)
    origin = Origin(name, None, SourceKind.STDIN)
    try:
        detector = Detector(rules, max_decompressed=options.max_decompressed,
                        decode_window=options.decode_window)
        scan_input(detector, stream, origin, outcome, seekable=False,
                   gzip_limit=options.max_decompressed)
    except Exception as exc:
        log.debug("scanning %s failed", name, exc_info=True)
        outcome.fail(origin, exc)
    findings, ignored = filter_findings(outcome.findings, options, [])
    return ScanResult(findings, outcome.suppressed, outcome.files, outcome.bytes,
                      time.perf_counter() - started, outcome.errors, ignored)


def scan_bytes(data: bytes, rules: list[Rule], options: ScanOptions | None = None, *,
               name: str = "<bytes>") -> ScanResult:
    """Scan bytes held in memory (a request body, a log line, a decoded attachment)."""
    import io

    return scan_stream(io.BytesIO(data), rules, options, name=name)


def _note_tracked_env_files(findings: list[Finding]) -> list[Finding]:
    """Cendis's docs: keep ``.env``/``.envrc`` in ``.gitignore``. Say so when git would
    pick one up. Runs ``git check-ignore`` once per such file, only for findings."""
    from scanner.git.plumbing import ignored

    seen: dict[str, bool] = {}
    out = []
    for f in findings:
        name = os.path.basename(f.path or "")
        if not (name == ".envrc" or name == ".env" or name.startswith(".env.")) or (
                f.note is not None or not os.path.lexists(f.path or "")):  # in an archive
            out.append(f)
            continue
        if f.path not in seen:
            absolute = os.path.abspath(f.path or "")
            top = git_top(os.path.dirname(absolute))
            seen[f.path or ""] = top is not None and ignored(top, absolute) is False
        if seen[f.path or ""]:
            f = replace(f, note=f"{name} is not ignored by git: add it to .gitignore so it "
                                "is never committed")
        out.append(f)
    return out
