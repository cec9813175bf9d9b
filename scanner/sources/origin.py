"""What a source hands to the engine: where an input's bytes come from, and how to read
them.

Sources come before the engine (walking folders, reading git objects, taking stdin) and
never run the detector; the engine takes an :class:`Origin` and a :class:`Readable` and
makes findings. This is the one module of the sources side that the engine imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from scanner.finding import SourceKind


class Readable(Protocol):
    """Any binary input: a file, a pipe, or a git object coming out of cat-file."""

    def read(self, n: int, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an input's bytes come from: what a source yields, and all a worker
    process needs to read them again (it pickles)."""

    path: str | None  # as shown to people; None for a git object not yet placed
    fingerprint_path: str | None = None
    source: SourceKind = SourceKind.FILE
    size: int = 0
    fs_path: str | None = None  # where to open it (files only)
    start: int = 0  # a byte range of a large file: [start, end)
    end: int | None = None
    #: Read in the calling process, never a worker: a stream (FIFO, device, pipe) or a
    #: name only this process can open (/dev/stdin, /dev/fd/N of a process substitution).
    local: bool = False


@dataclass(slots=True)
class Region:
    """Many small git objects read back to back into one buffer, handed over together
    so that the engine searches them in one pass: ``spans`` are (id, type, start, end)
    in ``buf``. Valid until the source is asked for its next item (the buffer is
    reused)."""

    buf: bytearray
    spans: list[tuple[str, str, int, int]]


@dataclass(slots=True)
class Large:
    """A git object too large to hold, read as it comes out of the pipe. Whatever the
    engine leaves unread is skipped by the source."""

    oid: str
    kind: str
    size: int
    content: Readable


@dataclass(slots=True)
class Missing:
    """An object git was asked for and cannot give (missing or corrupt)."""

    name: str


GitItem = Region | Large | Missing
