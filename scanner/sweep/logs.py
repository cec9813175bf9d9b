"""Log files, swept incrementally: each file is read from where the last sweep stopped.

A file is known by its device and inode, not its name, so a rotation (``app.log``
renamed to ``app.log.1``, a new ``app.log`` created) is seen for what it is: the renamed
file goes on from its old offset, the new one is read from its start. A file that got
shorter, or whose first bytes or whose bytes just before the old offset changed
(``copytruncate`` then new lines, even behind the same long banner), is read again from
its start. A compressed rotation (``.gz``) is read once, whole. Only the unread tail of
a file is scanned, through ``scanner.scan_stream`` (constant memory), and only its data:
the holes of a sparse file are skipped as ``scan`` skips them
(:func:`scanner.engine.inputs.data_extents`).

A file's *name* is content too: a token in it is a finding (as ``scan`` reports one),
and the name is stored and shown redacted. The state file keeps no whole path that holds
a token. A state file that cannot be understood is set aside (``.corrupt-<n>``) with one
warning, and those logs are read again from their start: duplicates are filtered here
and by the incident store.

The offset kept is the end of the last complete line: a line still being written is
scanned now and again next time, and a token found twice is reported once (the hashes
already reported for a ``[[logs]]`` table are kept in its state file, never a token).
"""

from __future__ import annotations

import errno
import glob
import hashlib
import io
import json
import logging
import os
import re
import stat
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scanner.atomic import write_atomic
from scanner.engine.detect import Detector
from scanner.engine.inputs import data_extents
from scanner.engine.names import path_findings, redact_path
from scanner.errors import ScanError
from scanner.finding import Finding, SourceKind
from scanner.result import ScanIssue, ScanOptions
from scanner.rules import Rule
from scanner.scrub import scrub

log = logging.getLogger(__name__)

#: How many first bytes identify a file's content (a truncated-and-rewritten file
#: differs there).
HEAD_BYTES = 1024
#: How many bytes just before the saved offset must still be the same for the file to
#: go on from there: a ``copytruncate`` that rewrites the same banner (however long)
#: passes the head check, but not this one.
TAIL_BYTES = 4096
#: A tail with no newline at all is taken whole once it is this long (not a log of lines).
NO_NEWLINE_LIMIT = 1 << 20
STATE_VERSION = 2
#: A logs state larger than this is not one (a real one is ~300 bytes a file): set aside
#: unread rather than read into memory.
MAX_STATE_BYTES = 64 << 20
#: What stands for a hole in the stream that is scanned (ASCII unit separator).
HOLE_MARK = 0x1F
_HEX64 = re.compile(r"[0-9a-f]{64}")


class CorruptState(ValueError):
    """A logs state file that is not what :meth:`LogState.save` writes."""


@dataclass(slots=True)
class FileState:
    path: str  # as shown: a token in the name redacted
    size: int
    offset: int  # bytes read up to the end of the last whole line (gz: the whole file)
    lines: int  # newlines before ``offset``: findings' line numbers stay absolute
    head: str  # sha256 of the first min(offset, HEAD_BYTES) bytes
    gz: bool = False
    tail: str | None = None  # sha256 of the TAIL_BYTES before ``offset`` (None: unknown)


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CorruptState(f"{what} is not a count")
    return value


def _file_state(key: Any, value: Any) -> FileState:
    if not isinstance(key, str) or not re.fullmatch(r"[0-9]+:[0-9]+", key):
        raise CorruptState("a file key is not device:inode")
    if not isinstance(value, dict):
        raise CorruptState("a file entry is not an object")
    missing = {"path", "size", "offset", "lines", "head"} - set(value)
    if missing:
        raise CorruptState(f"a file entry lacks {', '.join(sorted(missing))}")
    path, head, tail, gz = value["path"], value["head"], value.get("tail"), \
        value.get("gz", False)
    if not isinstance(path, str) or not isinstance(gz, bool):
        raise CorruptState("a file entry's path or gz has the wrong type")
    if not (isinstance(head, str) and _HEX64.fullmatch(head)) or not (
            tail is None or isinstance(tail, str) and _HEX64.fullmatch(tail)):
        raise CorruptState("a file entry's head or tail is not a sha256")
    size, offset = _count(value["size"], "size"), _count(value["offset"], "offset")
    if offset > size:
        raise CorruptState("an offset is past its file's size")
    return FileState(scrub(path, 1000), size, offset, _count(value["lines"], "lines"),
                     head, gz, tail)


@dataclass(slots=True)
class LogState:
    files: dict[str, FileState] = field(default_factory=dict)  # "dev:inode" -> state
    reported: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, path: Path) -> LogState:
        """The saved state; :class:`CorruptState` when it is not one (garbage, wrong
        types, missing keys, a newer version, not a regular file, too large), a
        :class:`ScanError` when it cannot be read."""
        data = _json_state(_read_state(path))
        if data is None:
            return cls()
        version = data.get("version", STATE_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise CorruptState("its version is not a number")
        if version > STATE_VERSION:
            raise CorruptState(f"written by a newer cendis-scan (version {version}; this "
                               f"one reads up to {STATE_VERSION})")
        files, reported = data.get("files", {}), data.get("reported", [])
        if not isinstance(files, dict) or not isinstance(reported, list):
            raise CorruptState("files or reported has the wrong type")
        if not all(isinstance(h, str) and _HEX64.fullmatch(h) for h in reported):
            raise CorruptState("reported holds something other than sha256s")
        return cls({k: _file_state(k, v) for k, v in files.items()}, set(reported))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {
            "version": STATE_VERSION,
            "files": {k: {"path": s.path, "size": s.size, "offset": s.offset,
                          "lines": s.lines, "head": s.head, "tail": s.tail, "gz": s.gz}
                      for k, s in sorted(self.files.items())},
            "reported": sorted(self.reported)}
        write_atomic(path, json.dumps(data, indent=1) + "\n")


class StateUnreadable(ScanError):
    reason = "state"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def _read_state(path: Path) -> bytes | None:
    """The state file's bytes (None: there is none). Checked before it is opened, and
    again once open: a FIFO would block the read forever, a link to ``/dev/zero`` or a
    huge sparse file would fill memory, so anything but a regular file of at most
    :data:`MAX_STATE_BYTES` is :class:`CorruptState` (set aside unread)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateUnreadable(f"{path.name}: cannot read the logs state: "
                              f"{exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CorruptState(f"{_kind(st.st_mode)}, not a regular file")
    if st.st_size > MAX_STATE_BYTES:
        raise CorruptState(f"larger than {MAX_STATE_BYTES >> 20} MiB")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a link since the lstat
            raise CorruptState("a symbolic link, not a regular file") from None
        raise StateUnreadable(f"{path.name}: cannot read the logs state: "
                              f"{exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):  # swapped since the lstat
            raise CorruptState(f"{_kind(st.st_mode)}, not a regular file")
        try:
            data = f.read(MAX_STATE_BYTES + 1)
        except OSError as exc:
            raise StateUnreadable(f"{path.name}: cannot read the logs state: "
                                  f"{exc.strerror or exc}") from None
    if len(data) > MAX_STATE_BYTES:  # grew since the stat
        raise CorruptState(f"larger than {MAX_STATE_BYTES >> 20} MiB")
    return data


def _json_state(data: bytes | None) -> dict[str, Any] | None:
    """The state's JSON object (None for no file), or :class:`CorruptState`."""
    if data is None:
        return None
    try:
        parsed = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise CorruptState("not UTF-8") from None
    except (ValueError, RecursionError):
        raise CorruptState("not JSON") from None
    if not isinstance(parsed, dict):
        raise CorruptState("not a JSON object")
    return parsed


def set_aside(path: Path) -> Path:
    """Rename a corrupt state file to the first free ``<name>.corrupt-<n>``: kept for a
    post-mortem, out of the way of every later sweep. A FIFO, device or link is renamed
    as it is (the link, not what it points to), never read."""
    n = 1
    while True:
        aside = path.with_name(f"{path.name}.corrupt-{n}")
        if not os.path.lexists(aside):  # a dangling link there is taken too
            os.replace(path, aside)
            return aside
        n += 1


def load_state(path: Path) -> LogState:
    """The state, or an empty one (with one warning) when the file is corrupt: a bad
    state must not fail every later sweep; reading the logs again is safe."""
    try:
        return LogState.load(path)
    except CorruptState as exc:
        aside = set_aside(path)
        log.warning("warning: the logs state %s is corrupt (%s): set aside as %s; these "
                    "logs are read again from their start", path.name, exc, aside.name)
        return LogState()


class _Tail(io.RawIOBase):
    """The data of bytes ``start..end`` of an open file, noting where the last newline
    was. A hole of a sparse file is not read: one separator byte stands for it (not a
    zero, which would make the stream look binary; no token or base64 character, so
    the data on either side is never joined into one), and :meth:`file_offset` maps a
    position in this stream back to the file."""

    def __init__(self, f: io.BufferedReader, start: int, end: int) -> None:
        self.f = f
        self.extents = data_extents(f.fileno(), start, end) or [(end, end)]
        self.i = 0
        self.pos = self.extents[0][0]  # file position
        self.streamed = 0  # stream position
        self.spans: list[tuple[int, int]] = [(0, self.pos)]  # (stream, file) per extent
        self.newlines = 0
        self.last_newline = -1  # absolute offset of the last b"\n" read
        f.seek(self.pos)

    def readable(self) -> bool:
        return True

    def file_offset(self, streamed: int) -> int:
        i = max(0, bisect_right([s for s, _ in self.spans], streamed) - 1)
        stream_at, file_at = self.spans[i]
        return file_at + streamed - stream_at

    def readinto(self, buffer: Any) -> int:
        if self.i < len(self.extents) and self.pos >= self.extents[self.i][1]:
            self.i += 1
            if self.i >= len(self.extents) or not len(buffer):
                return 0
            self.pos = self.extents[self.i][0]
            self.f.seek(self.pos)
            buffer[0] = HOLE_MARK  # the hole
            self.streamed += 1
            self.spans.append((self.streamed, self.pos))
            return 1
        if self.i >= len(self.extents):
            return 0
        want = min(len(buffer), self.extents[self.i][1] - self.pos)
        data = self.f.read(want)
        n = len(data)
        if not n:  # the file got shorter while read
            self.i = len(self.extents)
            return 0
        buffer[:n] = data
        count = data.count(b"\n")
        if count:
            self.newlines += count
            self.last_newline = self.pos + data.rindex(b"\n")
        self.pos += n
        self.streamed += n
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
    previous: LogState = field(default_factory=LogState)

    def commit(self) -> None:
        """Every finding was acknowledged: the offsets move on."""
        self.state.reported.update(f.secret_sha256 for f in self.findings)
        self.state.save(self.state_path)

    def keep(self, acknowledged: set[str]) -> None:
        """Some findings were not acknowledged: the offsets stay where they were (the
        same bytes are read again next time), only what was acknowledged is marked
        reported."""
        LogState(self.previous.files, self.previous.reported | acknowledged
                 ).save(self.state_path)


def _hash_range(f: io.BufferedReader, start: int, end: int) -> str:
    f.seek(start)
    return hashlib.sha256(f.read(max(0, end - start))).hexdigest()


def _head(f: io.BufferedReader, length: int) -> str:
    return _hash_range(f, 0, length)


def _tail(f: io.BufferedReader, offset: int) -> str:
    return _hash_range(f, max(0, offset - TAIL_BYTES), offset)


def _resume(f: io.BufferedReader, prev: FileState | None, size: int) -> bool:
    """Go on from ``prev.offset``? Only if the file did not shrink and both the first
    bytes and the bytes just before the offset are the ones read last time."""
    return (prev is not None and not prev.gz and prev.tail is not None
            and size >= prev.offset
            and _head(f, min(prev.offset, HEAD_BYTES)) == prev.head
            and _tail(f, prev.offset) == prev.tail)


def matched(patterns: tuple[str, ...]) -> list[str]:
    """Regular files matched by the globs, each once, in a stable order. Anything else
    a glob matches that is not a folder (a FIFO, a device, a socket, a link to one, a
    broken link) is skipped with one warning each, as ``scan`` says what it skips: a
    FIFO would block the sweep, ``/dev/zero`` would never end."""
    seen: dict[str, None] = {}
    said: set[str] = set()
    for pattern in patterns:
        for name in sorted(glob.glob(pattern, recursive=True)):
            full = os.path.abspath(name)
            try:
                mode = os.stat(name).st_mode
            except OSError:
                kind = "a broken symbolic link" if os.path.islink(name) else "unreadable"
            else:
                if stat.S_ISREG(mode):
                    seen.setdefault(full, None)
                    continue
                if stat.S_ISDIR(mode):
                    continue
                kind = _kind(mode)
            if full not in said:
                said.add(full)
                _skip(full, kind)
    return list(seen)


def _skip(path: str, kind: str) -> None:
    log.warning("warning: skipped %s: %s, not a regular file (matched by a [[logs]] "
                "glob; not read)", scrub(path, 300), kind)


def _open_regular(path: str) -> io.BufferedReader | None:
    """``path`` opened for reading if it is (still) a regular file, else None with one
    warning: never blocks (``O_NONBLOCK``) on a FIFO swapped in since the glob."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        _skip(path, _kind(mode))
        return None
    return os.fdopen(fd, "rb")


def _name_findings(detector: Detector, paths: list[str]
                   ) -> tuple[list[Finding], dict[str, str]]:
    """Tokens in the matched files' names (each folder and file name once, as ``scan``
    reports names) and the ``renamed`` map that redacts them wherever a path is shown
    or stored."""
    entries: dict[tuple[str, str], None] = {}
    for path in paths:
        parts = path.split("/")
        for i in range(2, len(parts) + 1):
            prefix = "/".join(parts[:i])
            entries.setdefault((prefix, prefix), None)
    found, _, renamed = path_findings(detector, list(entries))
    return found, renamed


def sweep_logs(patterns: tuple[str, ...], state_path: Path, rules: list[Rule],
               options: ScanOptions, *, scan: Callable[..., Any] | None = None) -> LogSweep:
    """Scan the unread part of every matched file, and every matched file's name. The
    state is not saved here: the caller records the findings first, then calls
    ``commit()`` (or ``keep()`` when they were not all acknowledged)."""
    from scanner.scan import scan_stream

    scan = scan or scan_stream
    started = time.perf_counter()
    old = load_state(state_path)
    new = LogState(reported=set(old.reported))
    findings: dict[str, Finding] = {}
    errors: list[ScanIssue] = []
    total = files = 0
    paths = matched(patterns)
    named, renamed = _name_findings(
        Detector(rules, max_decompressed=options.max_decompressed), paths)
    for finding in named:
        if finding.secret_sha256 not in old.reported:
            findings.setdefault(finding.secret_sha256, finding)
    for path in paths:
        shown = scrub(redact_path(path, renamed))  # never a token, in state or output
        try:
            opened = _open_regular(path)
            if opened is None:
                continue
            st = os.fstat(opened.fileno())
            key = f"{st.st_dev}:{st.st_ino}"
            prev = old.files.get(key)
            gz = path.endswith(".gz")
            with opened as f:
                if gz:
                    if prev is not None and prev.gz and prev.size == st.st_size:
                        new.files[key] = replace(prev, path=shown)
                        continue
                    start, lines = 0, 0
                elif _resume(f, prev, st.st_size):
                    assert prev is not None
                    start, lines = prev.offset, prev.lines
                else:
                    start, lines = 0, 0
                tail = _Tail(f, start, st.st_size)
                result = scan(io.BufferedReader(tail, 1 << 16), rules, options, name=shown)
                tail.drain()
                if gz:
                    offset, more = st.st_size, 0
                elif tail.last_newline >= 0:
                    offset, more = tail.last_newline + 1, tail.newlines
                elif st.st_size - start >= NO_NEWLINE_LIMIT:
                    offset, more = st.st_size, 0
                else:
                    offset, more = start, 0
                head, after = _head(f, min(offset, HEAD_BYTES)), _tail(f, offset)
        except OSError as exc:
            errors.append(ScanIssue("io", f"{shown}: cannot read: {exc.strerror or exc}",
                                    shown))
            for k, s in old.files.items():  # keep its state: try again next time
                if s.path == shown:
                    new.files[k] = s
            continue
        files += 1
        total += st.st_size - start
        if result.errors:  # not read through: keep the old state, try again next time
            errors.extend(result.errors)
            if prev is not None:
                new.files[key] = prev
            continue
        new.files[key] = FileState(shown, st.st_size, offset, lines + more, head, gz, after)
        for finding in result.findings:
            if finding.secret_sha256 in old.reported or finding.secret_sha256 in findings:
                continue
            line = finding.line + lines if finding.line is not None and not gz else finding.line
            at = finding.offset if gz else tail.file_offset(finding.offset)
            findings[finding.secret_sha256] = replace(
                finding, path=shown, fingerprint_path=shown, line=line, offset=at,
                source=SourceKind.FILE)
    return LogSweep(list(findings.values()), files, total, errors, new, state_path,
                    time.perf_counter() - started, old)
