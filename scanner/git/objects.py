"""Objects by id: what the store holds (ids, sizes, types), annotated tags, and a
``git cat-file --batch`` kept open to read objects back.

The batch output itself is parsed by :mod:`scanner.git.batch`, the one parser; what
the objects hold is the engine's business (:mod:`scanner.engine.objects`).
"""

from __future__ import annotations

import contextlib
import subprocess
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from scanner.errors import GitError
from scanner.git import batch
from scanner.git.plumbing import PACK_LIMITS, display, finish, run, spawn
from scanner.sources.origin import GitItem

#: Ids up to this many bytes are written to cat-file without a thread (a pipe holds 64 KiB).
SMALL_WRITE = 32 << 10


@dataclass(frozen=True, slots=True)
class Objects:
    """Many object ids with their sizes, compact: one ``<oid>\\n`` line each in a single
    bytes (ready for cat-file's stdin) and an array of sizes. 250,000 objects take
    12 MB this way instead of 60 MB of tuples, and worker processes forked after the
    list is built share fewer pages."""

    ids: bytes
    sizes: array
    commits: int = 0  # how many of them are commits
    #: Ids git listed but cannot read (a corrupt loose object shows as "missing").
    unreadable: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.sizes)

    def lines(self, lo: int, hi: int) -> bytes:
        width = len(self.ids) // max(1, len(self.sizes))
        return self.ids[lo * width : hi * width]


def all_objects(repo: str) -> Objects:
    """Every blob, commit and tag in the object store, in pack order (cheapest to read
    back). An object git lists but cannot read (a garbled loose object) is kept aside
    as ``unreadable``.

    Unreachable objects are listed too; they never map to a commit of the walk, so they
    drop out of the findings on their own.
    """
    proc = spawn(repo, [*PACK_LIMITS, "cat-file", "--batch-all-objects", "--unordered",
                        "--batch-check=%(objecttype) %(objectsize) %(objectname)"])
    ids = bytearray()
    sizes = array("q")
    commits = 0
    unreadable = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith((b"blob ", b"commit ", b"tag ")):
            kind, size, oid = line.split(b" ")
            ids += oid
            sizes.append(int(size))
            commits += kind == b"commit"
        elif line.endswith(b" missing\n"):
            unreadable.append(display(line.split(b" ", 1)[0]))
    finish(proc, "cat-file")
    return Objects(bytes(ids), sizes, commits, tuple(unreadable))


def sizes(repo: str, oids: Sequence[str]) -> Objects:
    """The same compact list for ids already known (a missing one gets size 0 here and
    is reported when it is read)."""
    ids = "".join(f"{oid}\n" for oid in oids).encode()
    _, out = run(repo, ["cat-file", "--batch-check=%(objectsize)"], input=ids)
    # One line per id: a size, or "<id> missing".
    return Objects(ids, array("q", (int(n) if n.isdigit() else 0
                                    for n in out.decode("ascii", "replace").splitlines())))


@dataclass(frozen=True, slots=True)
class Tag:
    """An annotated tag object: what it points at and who made it."""

    oid: str
    target: str
    kind: str  # the target's type: commit, tag, tree or blob
    name: str
    tagger_name: str
    tagger_email: str
    date: str | None  # strict ISO 8601, or None when the tag has no tagger line


def _iso(stamp: bytes, zone: bytes) -> str | None:
    import datetime as dt

    try:
        offset = int(zone[:3]) * 60 + (1 if zone[:1] != b"-" else -1) * int(zone[3:5])
        when = dt.datetime.fromtimestamp(int(stamp), dt.timezone(dt.timedelta(minutes=offset)))
    except (ValueError, OverflowError, OSError):
        return None
    return when.isoformat()


def parse_tag(oid: str, raw: bytes) -> Tag | None:
    """The header of a tag object (None if it is not one git would accept)."""
    head = raw.split(b"\n\n", 1)[0]
    fields: dict[bytes, bytes] = {}
    for line in head.split(b"\n"):
        key, _, value = line.partition(b" ")
        fields.setdefault(key, value)
    if b"object" not in fields or b"type" not in fields:
        return None
    name, email, date = "", "", None
    tagger = fields.get(b"tagger", b"")
    if b"<" in tagger and b">" in tagger:
        who, rest = tagger.split(b"<", 1)
        mail, when = rest.split(b">", 1)
        name, email = display(who.strip()), display(mail)
        parts = when.split()
        date = _iso(parts[0], parts[1]) if len(parts) == 2 else None
    return Tag(oid, display(fields[b"object"]), display(fields[b"type"]),
               display(fields.get(b"tag", b"")), name, email, date)


def _check(repo: str, names: Sequence[bytes]) -> list[tuple[str, str] | None]:
    """(id, type) of each name (a rev, a ``rev:path``), None where git has none; in one
    ``--batch-check``. cat-file reads lines, so a name holding a newline has none."""
    asked = [n for n in names if b"\n" not in n]
    if not asked:
        return [None] * len(names)
    _, out = run(repo, ["cat-file", "--batch-check=%(objectname) %(objecttype)"],
                 input=b"".join(n + b"\n" for n in asked))
    answers = iter(batch.checked(out, len(asked)))
    return [None if b"\n" in name else next(answers) for name in names]


def object_types(repo: str, names: Sequence[str]) -> list[tuple[str, str] | None]:
    """(id, type) of each name (a rev, a ``rev:path``), None where git has none."""
    return _check(repo, [n.encode("utf-8", "surrogateescape") for n in names])


def lookup(repo: str, names: Sequence[bytes]) -> list[str | None]:
    """Blob ids for ``<rev>:<path>`` names (None where there is none), in one call."""
    return [found[0] if found is not None and found[1] == "blob" else None
            for found in _check(repo, names)]


def read_tags(repo: str, oids: Sequence[str]) -> dict[str, Tag]:
    """Tag objects by id, following chains (a tag of a tag) to the end."""
    tags: dict[str, Tag] = {}
    todo = list(dict.fromkeys(oids))
    while todo:
        _, out = run(repo, ["cat-file", "--batch"],
                     input="".join(f"{o}\n" for o in todo).encode())
        nxt = []
        for oid, (_, kind, content) in zip(todo, batch.entries(out), strict=False):
            tag = parse_tag(oid, content) if kind == b"tag" else None
            if tag is not None:  # (a missing one is reported when it is read for scanning)
                tags[oid] = tag
                if tag.kind == "tag" and tag.target not in tags:
                    nxt.append(tag.target)
        todo = list(dict.fromkeys(nxt))
    return tags


class CatFile:
    """One ``git cat-file --batch`` kept open, so that a scan can ask twice (the new
    blobs of a change, then the old ones where the new held a token) without starting
    git again."""

    def __init__(self, repo: str):
        self.repo = repo
        self.proc = spawn(repo, [*PACK_LIMITS, "cat-file", "--batch"], stdin=subprocess.PIPE)

    def read(self, oids: Sequence[str]) -> Iterator[GitItem]:
        """The objects, as :func:`scanner.git.batch.items` hands them over."""
        if not oids:
            return
        assert self.proc.stdin is not None and self.proc.stdout is not None
        data = "".join(f"{oid}\n" for oid in oids).encode()
        writer = _writer(self.proc.stdin, data, close=False)
        try:
            yield from batch.items(self.proc.stdout.raw, len(oids))  # type: ignore[attr-defined]
        except GitError:
            self.close()
            finish(self.proc, "cat-file")
            raise
        finally:
            if writer is not None:
                writer.join()

    def close(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        self.proc.wait()


def read_share(repo: str, oids: bytes) -> Iterator[GitItem]:
    """Objects from a cat-file of their own (a worker's share, ``<id>\\n`` lines): git's
    own message, if it fails, is raised once everything it gave was handed over."""
    proc = spawn(repo, [*PACK_LIMITS, "cat-file", "--batch"], stdin=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    writer = _writer(proc.stdin, oids, close=True)
    failed: GitError | None = None
    try:
        yield from batch.items(proc.stdout.raw, oids.count(b"\n"))  # type: ignore[attr-defined]
    except GitError as exc:
        failed = exc
    finally:
        if writer is not None:
            writer.join()
        proc.stdout.close()
    finish(proc, "cat-file")  # git's own words say more than "stopped early"
    if failed is not None:
        raise failed


def _writer(stdin: IO[bytes], data: bytes, *, close: bool) -> Any:
    """Feed cat-file its ids. What fits in the pipe is written at once (a hook asks for
    a few ids: no thread to start); more is written by a thread while the caller reads,
    or cat-file and this process would each wait for the other."""
    if len(data) <= SMALL_WRITE:
        _write(stdin, data, close)
        return None
    import threading

    writer = threading.Thread(target=_write, args=(stdin, data, close))
    writer.start()
    return writer


def _write(stdin: IO[bytes], data: bytes, close: bool) -> None:
    try:
        stdin.write(data)
        stdin.flush()
        if close:
            stdin.close()
    except (BrokenPipeError, ValueError):
        pass  # git stopped: its message is read by the other side


def shares(objs: Objects, parts: int) -> Iterator[bytes]:
    """Contiguous runs of about equal bytes: pack order keeps delta chains together."""
    step = sum(objs.sizes) / parts + 1
    lo, size = 0, 0
    for i, n in enumerate(objs.sizes):
        size += n
        if size >= step:
            yield objs.lines(lo, i + 1)
            lo, size = i + 1, 0
    if lo < len(objs):
        yield objs.lines(lo, len(objs))
