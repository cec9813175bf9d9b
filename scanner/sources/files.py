"""Files and directories: walk, sniff, read, and hand fragments to the detector.

Every file is looked at, dotfiles and git-ignored ones included (``.env`` files are
ignored by git precisely because they hold secrets), but never anything inside
``.git/``. One unreadable file is an error for that file only: it is reported and the
scan goes on.
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from scanner.engine.detect import Detector
from scanner.engine.inputs import (
    CHUNK,
    GZIP_LIMIT,
    REGION,
    SNIFF,
    Located,
    gunzip,
    kind_of,
    locate,
    scan_buffer,
    scan_stream,
    search,
    utf16_to_utf8,
)
from scanner.errors import ConfigError, SourceError
from scanner.finding import Finding

if TYPE_CHECKING:
    from scanner.sources.ignore import GitIgnore

#: Files up to this size are read whole; larger ones are mapped.
READ_WHOLE = 4 << 20


@dataclass(slots=True)
class Task:
    """One file (or one byte range of a very large file) to scan."""

    path: str  # as shown to people
    fs_path: str
    fingerprint_path: str
    size: int
    start: int = 0
    end: int | None = None


@dataclass(slots=True)
class Outcome:
    findings: list[Finding] = field(default_factory=list)
    suppressed: int = 0
    files: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)
    split: dict[str, str] = field(default_factory=dict)  # display path -> fs path

    def merge(self, other: Outcome) -> None:
        self.findings += other.findings
        self.suppressed += other.suppressed
        self.files += other.files
        self.bytes += other.bytes
        self.errors += other.errors
        self.split.update(other.split)


@lru_cache(maxsize=1024)
def git_top(directory: str) -> str | None:
    """The enclosing git work tree, found by looking for ``.git`` upwards (no subprocess)."""
    here = os.path.abspath(directory)
    while True:
        if os.path.exists(os.path.join(here, ".git")):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def _display(path: str) -> str:
    return path[2:] if path.startswith("./") else path


def _fingerprint_root(root: str) -> str:
    """Fingerprints name paths relative to the git work tree, so they stay the same
    whichever folder a scan starts from; outside git, relative to the scan root."""
    absolute = os.path.abspath(root)
    base = absolute if os.path.isdir(absolute) else os.path.dirname(absolute)
    return git_top(base) or base


def _matcher(patterns: list[str]) -> Any:
    import pathspec

    try:
        return pathspec.GitIgnoreSpec.from_lines(patterns)
    except Exception as exc:  # pathspec raises several types for a bad pattern
        raise ConfigError(f"bad --exclude pattern: {exc}") from None


def walk(roots: list[str], excludes: list[str], respect_gitignore: bool,
         errors: list[str]) -> Iterator[Task]:
    """Tasks for every file under ``roots``, in path order; problems go to ``errors``."""
    exclude = _matcher(excludes) if excludes else None
    for root in roots:
        try:
            st = os.stat(root)
        except OSError as exc:
            errors.append(f"{root}: {exc.strerror or exc}")
            continue
        fp_root = _fingerprint_root(root)
        if not stat.S_ISDIR(st.st_mode):
            rel = os.path.relpath(os.path.abspath(root), fp_root)
            yield Task(_display(root), root, rel.replace(os.sep, "/"), st.st_size)
            continue
        fp_prefix = os.path.relpath(os.path.abspath(root), fp_root).replace(os.sep, "/")
        fp_prefix = "" if fp_prefix == "." else fp_prefix + "/"
        walker = _Walker(exclude, _git_ignore() if respect_gitignore else None, errors)
        for full, rel, size in walker.files(root, ""):
            yield Task(_display(full), full, fp_prefix + rel, size)


class _Walker:
    """A sorted, depth-first walk with os.scandir: relative paths are built by string
    concatenation (``os.path.relpath`` per file cost a third of a tree scan)."""

    def __init__(self, exclude: Any, ignores: GitIgnore | None, errors: list[str]):
        self.exclude = exclude
        self.ignores = ignores
        self.errors = errors

    def files(self, directory: str, rel: str) -> Iterator[tuple[str, str, int]]:
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.errors.append(f"{_display(directory)}: {exc.strerror or exc}")
            return
        if self.ignores is not None:
            self.ignores.enter(directory, rel)
        for entry in entries:
            name = entry.name
            full = entry.path
            path = rel + name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                if name == ".git" or self._skipped(path + "/"):
                    continue
                yield from self.files(full, path + "/")
                continue
            if self._skipped(path):
                continue
            try:
                st = entry.stat()
            except OSError as exc:
                reason = "broken symlink" if entry.is_symlink() else exc.strerror
                self.errors.append(f"{_display(full)}: {reason}")
                continue
            if stat.S_ISREG(st.st_mode):  # not fifos, sockets, devices, linked directories
                yield full, path, st.st_size

    def _skipped(self, rel: str) -> bool:
        if self.exclude is not None and self.exclude.match_file(rel):
            return True
        return self.ignores is not None and self.ignores.ignored(rel)


def _git_ignore() -> GitIgnore:
    """Imported only for --respect-gitignore: the hook path never pays for it."""
    from scanner.sources.ignore import GitIgnore

    return GitIgnore()


def to_findings(located: Iterable[Located], task: Task, encoding: str | None,
                outcome: Outcome, binary: bool = False) -> None:
    for loc in located:
        hit = loc.hit
        if hit.suppressed:
            outcome.suppressed += 1
            continue
        enc = hit.encoding if encoding is None else (
            encoding if hit.encoding == "plain" else f"{encoding}+{hit.encoding}")
        outcome.findings.append(Finding(
            rule_id=hit.rule_id, confidence=hit.confidence, path=task.path,
            line=None if binary else loc.line, column=None if binary else loc.column,
            offset=loc.offset, encoding=enc, redacted=hit.redacted,
            secret_sha256=hit.secret_sha256, variable=hit.variable,
            fingerprint_path=task.fingerprint_path,
        ))


def _chunks(f: Any, head: bytes) -> Iterator[bytes]:
    yield head
    while chunk := f.read(CHUNK):
        yield chunk


def scan_task(detector: Detector, task: Task, *, max_decompressed: int = GZIP_LIMIT
              ) -> Outcome:
    """Scan one file; any failure becomes an error line for this file alone."""
    outcome = Outcome(files=1 if task.start == 0 else 0)
    try:
        with open(task.fs_path, "rb") as f:
            scan_file(detector, f, task, outcome, seekable=True,
                      max_decompressed=max_decompressed)
    except SourceError as exc:
        outcome.errors.append(f"{task.path}: {exc}")
    except OSError as exc:
        outcome.errors.append(f"{task.path}: {exc.strerror or exc}")
    except Exception as exc:  # one bad file must not end the scan (reported, exit 2)
        outcome.errors.append(f"{task.path}: internal error: {type(exc).__name__}: {exc}")
    return outcome


def scan_file(detector: Detector, f: Any, task: Task, outcome: Outcome, *,
              seekable: bool, max_decompressed: int = GZIP_LIMIT) -> None:
    """Sniff the first bytes, then pick the cheapest way to read what they say it is.

    A pipe (stdin) is always streamed; a regular file is read whole when small and
    mapped when large; gzip and UTF-16 are decoded as streams either way. A gzip input
    that inflates past ``max_decompressed`` bytes is a bomb (a :class:`SourceError`).
    """
    if task.end is not None:  # a range of a large plain file, already sniffed
        _scan_mapped(detector, f, task, outcome, binary=False)
        return
    head = f.read(SNIFF)
    kind = kind_of(head)
    binary = kind == "binary"
    if kind == "gzip":
        stream = gunzip(_count(_chunks(f, head), outcome), max_decompressed)
        to_findings(scan_stream(detector, stream), task, "gzip", outcome)
    elif kind.startswith("utf-16"):
        stream = utf16_to_utf8(_count(_chunks(f, head), outcome), kind)
        to_findings(scan_stream(detector, stream), task, "utf-16", outcome)
    elif not seekable:
        stream = _count(_chunks(f, head), outcome)
        to_findings(scan_stream(detector, stream), task, None, outcome, binary=binary)
    elif task.size <= READ_WHOLE:
        buf = head + f.read()
        outcome.bytes += len(buf)
        located = scan_buffer(detector, buf, lines=not binary)
        to_findings(located, task, None, outcome, binary=binary)
    else:
        _scan_mapped(detector, f, task, outcome, binary=binary)


def _count(stream: Iterable[bytes], outcome: Outcome) -> Iterator[bytes]:
    for piece in stream:
        outcome.bytes += len(piece)
        yield piece


def _scan_mapped(detector: Detector, f: Any, task: Task, outcome: Outcome,
                 binary: bool) -> None:
    size = os.fstat(f.fileno()).st_size
    if size == 0:
        return
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if task.end is None:
            outcome.bytes += size
            to_findings(scan_buffer(detector, mm, lines=not binary), task, None, outcome,
                        binary=binary)
            return
        # One range of a split file: lines are counted later, in parallel (split_lines).
        end = min(task.end, size)
        outcome.bytes += end - task.start
        located = locate(mm, search(detector, mm, task.start, end), lines=False)
        to_findings(located, task, None, outcome)
        outcome.split[task.path] = task.fs_path


def count_segment(segment: tuple[str, int, int]) -> int:
    """Newlines in one byte range of a file (a unit of parallel line counting)."""
    fs_path, start, end = segment
    buf = bytearray(min(REGION, max(0, end - start)))
    view = memoryview(buf)
    total = 0
    with open(fs_path, "rb", buffering=0) as f:  # read(), not a mapping: no page faults
        f.seek(start)
        while start < end:
            got = f.readinto(view[: min(len(buf), end - start)])
            if not got:
                break
            total += buf.count(b"\n", 0, got)
            start += got
    return total


def line_segments(outcome: Outcome, pieces: int) -> list[tuple[str, int, int]]:
    """The byte ranges whose newlines number the findings of split files: from the
    start of the file to its last finding, cut at each finding and into ``pieces``
    roughly equal parts so every core counts."""
    segments = []
    for path, fs_path in outcome.split.items():
        offsets = sorted({f.offset for f in outcome.findings if f.path == path})
        if not offsets:
            continue
        step = max(1, -(-offsets[-1] // pieces))
        cuts = sorted({0, *offsets, *range(0, offsets[-1], step)})
        segments += [(fs_path, a, b) for a, b in zip(cuts, cuts[1:], strict=False)]
    return segments


def number_lines(outcome: Outcome, segments: list[tuple[str, int, int]],
                 counts: list[int]) -> None:
    newlines_before: dict[tuple[str, int], int] = {}
    running: dict[str, int] = {}
    for (fs_path, _, end), count in zip(segments, counts, strict=True):
        running[fs_path] = running.get(fs_path, 0) + count
        newlines_before[(fs_path, end)] = running[fs_path]
    for f in outcome.findings:
        fs_path = outcome.split.get(f.path or "")
        if fs_path is not None and f.line is None:
            f.line = 1 + newlines_before.get((fs_path, f.offset), 0)


def split_large(task: Task, parts: int, min_size: int) -> list[Task]:
    """Cut a large plain-text file into byte ranges so both cores share it."""
    if task.size < min_size or parts < 2:
        return [task]
    try:
        with open(task.fs_path, "rb") as f:
            if kind_of(f.read(SNIFF)) not in ("text",):
                return [task]
    except OSError:
        return [task]
    step = -(-task.size // parts)
    return [
        Task(task.path, task.fs_path, task.fingerprint_path, task.size, lo,
             min(lo + step, task.size))
        for lo in range(0, task.size, step)
    ]
