"""A large mapped tar (an image's layer) split across worker processes: its file members
go to workers in parts of about PART bytes or PART_MEMBERS members (each part scanned by
:func:`scan_part` there, as one reader would), and the outcomes are merged back in tar
order, so findings, errors and the kept JSON members come out as from one process.
:func:`scanner.engine.tars.scan_tar` still reads the headers (names, whiteouts, bounds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from scanner.engine.tars import (
    KEEP_ALL,
    WHOLE,
    Entry,
    Mapped,
    Members,
    Span,
    Walk,
    guard,
    sub_origin,
)
from scanner.engine.unpack import BLOCK
from scanner.errors import SourceError
from scanner.result import issue

if TYPE_CHECKING:
    from scanner.sources.origin import Origin

#: A part sent to a worker: this many bytes of members, or this many members.
PART, PART_MEMBERS = 24 << 20, 4000


def scan_part(src: Mapped, part: list[Entry], origin: Origin, outcome: Any,
              members: Members) -> list[tuple[str, bytes]]:
    """A worker's share of a split tar: these file members, each scanned as
    :func:`scanner.engine.tars.scan_tar` would; returns the JSON members kept, in order."""
    walk = Walk(src, origin, outcome, members)
    try:
        for entry in part:
            src.pos = entry.pos
            walk.add(entry)
    except SourceError as exc:
        outcome.errors.append(issue(origin.path or "-", exc))
    return walk.finish()


class Parts:
    """A split tar's file members, sent to workers a part at a time and merged back in
    order; a member that is a large tar itself (a layer) is scanned here, in its place
    in that order (after the parts before it are merged), and split in turn."""

    def __init__(self, src: Mapped, origin: Origin, outcome: Any, members: Members,
                 send: Callable[[Mapped, list[Entry], Origin], Any]):
        self.src, self.origin, self.outcome, self.members = src, origin, outcome, members
        self.send = send
        self.sent: list[Any] = []  # futures of (outcome, kept), not merged yet
        self.part: list[Entry] = []
        self.size = 0
        self.kept: list[tuple[str, bytes]] = []
        self.kept_size = 0
        self.failure: Any = None  # the tar's own error, said after its members'

    def add(self, entry: Entry) -> None:
        if entry.size > WHOLE and self.members.nested is not None:
            at = self.src.base + entry.pos
            if self.members.kind_of(self.src.mm[at : at + min(entry.size, 8192)]) == "tar":
                self._send()
                self._merge()
                self.src.pos = entry.pos
                guard(self.members.nested, Span(self.src).member(entry.size),
                       sub_origin(self.origin, entry), self.outcome)
                return
        self.part.append(entry)
        self.size += entry.size + BLOCK
        if self.size >= PART or len(self.part) >= PART_MEMBERS:
            self._send()

    def _send(self) -> None:
        if self.part:
            self.sent.append(self.send(self.src, self.part, self.origin))
            self.part, self.size = [], 0

    def _merge(self) -> None:
        """The parts sent so far, merged in order; their JSON kept as one reader would
        have kept it (each part kept at least that much)."""
        for future in self.sent:
            got, kept = future.result()
            self.outcome.merge(got)
            for name, data in kept:
                if self.kept_size < KEEP_ALL:
                    self.kept.append((name, data))
                    self.kept_size += len(data)
        self.sent = []

    def finish(self) -> list[tuple[str, bytes]]:
        self._send()
        self._merge()
        if self.failure is not None:
            self.outcome.errors.append(self.failure)
        return self.kept
