"""Log files, swept incrementally: each file is read from where the last sweep stopped.

A file is known by its device and inode, not its name, so a rotation (``app.log``
renamed to ``app.log.1``, a new ``app.log`` created) is seen for what it is: the renamed
file goes on from its old offset, the new one is read from its start. A file that got
shorter, or whose first bytes changed (``copytruncate`` then new lines), is read again
from its start. A compressed rotation (``.gz``) is read once, whole. Only the unread
tail of a file is scanned, through ``scanner.scan_stream`` (constant memory).

The offset kept is the end of the last complete line: a line still being written is
scanned now and again next time, and a token found twice is reported once (the hashes
already reported for a ``[[logs]]`` table are kept in its state file, never a token).
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scanner.finding import Finding, SourceKind
from scanner.result import ScanIssue, ScanOptions
from scanner.rules import Rule
from scanner.sweep.mirrors import write_atomic

#: How many first bytes identify a file's content (a truncated-and-rewritten file
#: differs there).
HEAD_BYTES = 1024
#: A tail with no newline at all is taken whole once it is this long (not a log of lines).
NO_NEWLINE_LIMIT = 1 << 20


@dataclass(slots=True)
class FileState:
    path: str
    size: int
    offset: int  # bytes read up to the end of the last whole line (gz: the whole file)
    lines: int  # newlines before ``offset``: findings' line numbers stay absolute
    head: str  # sha256 of the first min(offset, HEAD_BYTES) bytes
    gz: bool = False


@dataclass(slots=True)
class LogState:
    files: dict[str, FileState] = field(default_factory=dict)  # "dev:inode" -> state
    reported: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, path: Path) -> LogState:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError):
            return cls()  # unreadable state: read everything again (duplicates filtered)
        return cls({k: FileState(**v) for k, v in data.get("files", {}).items()},
                   set(data.get("reported", [])))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {
            "files": {k: {"path": s.path, "size": s.size, "offset": s.offset,
                          "lines": s.lines, "head": s.head, "gz": s.gz}
                      for k, s in sorted(self.files.items())},
            "reported": sorted(self.reported)}
        write_atomic(path, json.dumps(data, indent=1) + "\n")


class _Tail(io.RawIOBase):
    """Bytes ``start..end`` of an open file, noting where the last newline was."""

    def __init__(self, f: io.BufferedReader, start: int, end: int) -> None:
        self.f = f
        self.pos = start
        self.end = end
        self.newlines = 0
        self.last_newline = -1  # absolute offset of the last b"\n" read
        f.seek(start)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self.end - self.pos)
        if want <= 0:
            return 0
        data = self.f.read(want)
        n = len(data)
        buffer[:n] = data
        count = data.count(b"\n")
        if count:
            self.newlines += count
            self.last_newline = self.pos + data.rindex(b"\n")
        self.pos += n
        return n

    def drain(self) -> None:
        """Read what the scan left (it stops early on some errors) to count lines."""
        buf = bytearray(1 << 16)
        while self.readinto(buf):
            pass


@dataclass(slots=True)
class LogSweep:
    """What one ``[[logs]]`` table's sweep found; ``commit()`` saves its state."""

    findings: list[Finding]
    files: int
    bytes: int
    errors: list[ScanIssue]
    state: LogState
    state_path: Path
    seconds: float = 0.0

    def commit(self) -> None:
        self.state.reported.update(f.secret_sha256 for f in self.findings)
        self.state.save(self.state_path)


def _head(f: io.BufferedReader, length: int) -> str:
    f.seek(0)
    return hashlib.sha256(f.read(length)).hexdigest()


def matched(patterns: tuple[str, ...]) -> list[str]:
    """Regular files matched by the globs, each once, in a stable order."""
    seen: dict[str, None] = {}
    for pattern in patterns:
        for name in sorted(glob.glob(pattern, recursive=True)):
            if os.path.isfile(name):
                seen.setdefault(os.path.abspath(name), None)
    return list(seen)


def sweep_logs(patterns: tuple[str, ...], state_path: Path, rules: list[Rule],
               options: ScanOptions, *, scan: Callable[..., Any] | None = None) -> LogSweep:
    """Scan the unread part of every matched file. The state is not saved here: the
    caller records the findings first, then calls ``commit()``."""
    from scanner.scan import scan_stream

    scan = scan or scan_stream
    started = time.perf_counter()
    old = LogState.load(state_path)
    new = LogState(reported=set(old.reported))
    findings: dict[str, Finding] = {}
    errors: list[ScanIssue] = []
    total = files = 0
    for path in matched(patterns):
        try:
            st = os.stat(path)
            key = f"{st.st_dev}:{st.st_ino}"
            prev = old.files.get(key)
            gz = path.endswith(".gz")
            with open(path, "rb") as f:
                if gz:
                    if prev is not None and prev.gz and prev.size == st.st_size:
                        new.files[key] = replace(prev, path=path)
                        continue
                    start, lines = 0, 0
                else:
                    start, lines = 0, 0
                    if (prev is not None and not prev.gz and st.st_size >= prev.offset
                            and _head(f, min(prev.offset, HEAD_BYTES)) == prev.head):
                        start, lines = prev.offset, prev.lines
                tail = _Tail(f, start, st.st_size)
                result = scan(io.BufferedReader(tail, 1 << 16), rules, options, name=path)
                tail.drain()
                if gz:
                    offset, more = st.st_size, 0
                elif tail.last_newline >= 0:
                    offset, more = tail.last_newline + 1, tail.newlines
                elif st.st_size - start >= NO_NEWLINE_LIMIT:
                    offset, more = st.st_size, 0
                else:
                    offset, more = start, 0
                head = _head(f, min(offset, HEAD_BYTES))
        except OSError as exc:
            errors.append(ScanIssue("io", f"{path}: cannot read: {exc.strerror or exc}", path))
            for k, s in old.files.items():  # keep its state: try again next time
                if s.path == path:
                    new.files[k] = s
            continue
        files += 1
        total += st.st_size - start
        if result.errors:  # not read through: keep the old state, try again next time
            errors.extend(result.errors)
            if prev is not None:
                new.files[key] = prev
            continue
        new.files[key] = FileState(path, st.st_size, offset, lines + more, head, gz)
        for finding in result.findings:
            if finding.secret_sha256 in old.reported or finding.secret_sha256 in findings:
                continue
            line = finding.line + lines if finding.line is not None and not gz else finding.line
            findings[finding.secret_sha256] = replace(
                finding, path=path, fingerprint_path=path, line=line,
                offset=finding.offset + start, source=SourceKind.FILE)
    return LogSweep(list(findings.values()), files, total, errors, new, state_path,
                    time.perf_counter() - started)
