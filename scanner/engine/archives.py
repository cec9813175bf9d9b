"""Zip archives (``.zip``, ``.jar``, ``.whl``, ``.apk``, office files): every member is
scanned as an input of its own, reported as ``ARCHIVE!member/path``.

Bounded on every axis an archive can be hostile on: members scanned per archive
(:data:`MAX_MEMBERS`), decompressed bytes per archive (the same bound as gzip,
``ScanOptions.max_decompressed``, counted as members are read, whatever their headers
claim), nesting (an archive inside an archive, see ``scan_input.MAX_NESTING``), and the
size of a nested archive or of a non-seekable one, which is read into memory
(:data:`IN_MEMORY`).
"""

from __future__ import annotations

import stat
import zlib
from collections.abc import Callable
from dataclasses import replace
from typing import IO, Any

from scanner.engine.layers import Budget
from scanner.errors import SourceError
from scanner.result import issue

#: Members scanned per archive; past it the archive is an error (the rest unscanned).
MAX_MEMBERS = 10_000
#: A zip that is not a seekable file (a member, a pipe) is read into memory up to this.
IN_MEMORY = 64 << 20
#: A symlink member's target is read up to this (PATH_MAX): a name, not content.
LINK_MAX = 4096


class Bounded:
    """A member being read, its bytes spent from the input's budget (shared by every
    layer nested in the input: a zip of zips is bounded like one zip)."""

    def __init__(self, f: IO[bytes], budget: Budget):
        self.f, self.budget, self.count = f, budget, 0

    def read(self, n: int = -1, /) -> bytes:
        data = self.f.read(n if n >= 0 else max(0, self.budget.left) + 1)
        self.count += len(data)
        self.budget.spend(len(data), "zip")
        return data


def member_path(path: str | None, name: str) -> str:
    return f"{path or '-'}!{name}"


def scan_zip(f: IO[bytes], origin: Any, outcome: Any, budget: Budget,
             scan_member: Callable[[Any, Any], None], detector: Any = None) -> bool:
    """Scan each member with ``scan_member(reader, member_origin)``, and with
    ``detector`` the members' names and their folders' (names are content, as in a
    tar). False when ``f`` is not a readable zip (the caller scans it as plain bytes
    instead)."""
    import zipfile  # only for zips: ~7 ms of imports

    try:
        archive = zipfile.ZipFile(f)
        listed = archive.infolist()
        members = [i for i in listed if not i.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        return _scan_local(f, origin, outcome, budget, scan_member, detector)
    if detector is not None:
        _name_findings(detector, origin, [i.filename for i in listed[:MAX_MEMBERS]],
                       outcome)
    links: list[tuple[str, str, str]] = []  # (display, fingerprint path, target)
    for info in members[:MAX_MEMBERS]:
        fp = origin.fingerprint_path
        sub = replace(origin, path=member_path(origin.path, info.filename),
                      fingerprint_path=None if fp is None else member_path(fp, info.filename),
                      size=info.file_size)
        try:
            with archive.open(info) as m:
                reader = Bounded(m, budget)
                if detector is not None and _is_link(info):
                    # Its bytes are the target: a name, reported at the link (location
                    # ``link``) as in a tar, not as a line of content.
                    target = reader.read(LINK_MAX)
                    links.append((sub.path or "-", sub.fingerprint_path or sub.path or "-",
                                  target.decode("utf-8", "surrogateescape")))
                else:
                    scan_member(reader, sub)
        except SourceError:
            raise
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, zlib.error, EOFError,
                OSError, ValueError) as exc:
            # An encrypted member, an unknown compression method, a corrupt stream: said
            # in words of our own (zipfile's quote the member's ZipInfo, name and all).
            outcome.errors.append(issue(sub.path, SourceError(f"cannot read: {_why(info, exc)}")))
    if links:
        from scanner.engine.names import link_findings

        found, suppressed = link_findings(detector, links, origin.source)
        outcome.findings += found
        outcome.suppressed += suppressed
    if len(members) > MAX_MEMBERS:
        outcome.errors.append(issue(origin.path or "-", SourceError(
            f"zip holds {len(members)} members; only the first {MAX_MEMBERS} scanned")))
    return True


def _why(info: Any, exc: BaseException) -> str:
    """Why a zip member cannot be read, in one short line that quotes nothing of the
    member (its name is the error's path already, redacted there)."""
    if info.flag_bits & 1:
        return "the member is encrypted (a password is needed)"
    if isinstance(exc, NotImplementedError):
        return f"the member's compression method ({info.compress_type}) is not supported"
    import zipfile

    if isinstance(exc, zlib.error | EOFError | zipfile.BadZipFile):
        return "the member's compressed data is damaged or cut short"
    return f"the member is damaged ({type(exc).__name__})"


def _scan_local(f: IO[bytes], origin: Any, outcome: Any, budget: Budget,
                scan_member: Callable[[Any, Any], None], detector: Any) -> bool:
    """A zip without a central directory (cut short): its members from their local
    headers, then one error for the zip. False when it holds no local header."""
    from scanner.engine.zip_local import scan_local

    def sub_origin(name: str, size: int) -> Any:
        fp = origin.fingerprint_path
        return replace(origin, path=member_path(origin.path, name),
                       fingerprint_path=None if fp is None else member_path(fp, name),
                       size=size)

    try:
        names = scan_local(f, origin, outcome, budget, MAX_MEMBERS, scan_member, sub_origin)
    except (zlib.error, OSError, ValueError, EOFError) as exc:
        names = []
        outcome.errors.append(issue(origin.path or "-", SourceError(f"cannot read: {exc}")))
    if names is None:
        return False
    if detector is not None:
        _name_findings(detector, origin, names, outcome)
    outcome.errors.append(issue(origin.path or "-", SourceError(
        f"zip is truncated (no central directory): {len(names)} members read from "
        "their local headers, the rest lost")))
    return True


def _is_link(info: Any) -> bool:
    """A symlink member: made on Unix (``create_system`` 3) with the mode ``S_IFLNK``
    in the high half of ``external_attr``, as ``zip -y`` and Info-ZIP write it."""
    return bool(info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16))


def _name_findings(detector: Any, origin: Any, names: list[str], outcome: Any) -> None:
    from scanner.engine.names import member_names, path_findings

    path = origin.path or "-"
    fp = origin.fingerprint_path or path
    folders: set[str] = set()
    entries = [pair for name in names for pair in member_names(path, fp, name, folders)]
    found, suppressed, _ = path_findings(detector, entries)
    outcome.findings += found
    outcome.suppressed += suppressed
