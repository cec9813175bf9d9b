"""Git plumbing: run git, list objects, walk commits as raw tree diffs, parse the output.

Only git's machine formats are read (``-z`` raw diffs, ``cat-file`` batch output), never
porcelain, so paths with newlines or bytes that are not UTF-8 survive. Nothing here
looks at file contents: that is :mod:`scanner.sources.git_objects`. Every failure of git
becomes a :class:`~scanner.errors.GitError` carrying git's own message in one line.
"""

from __future__ import annotations

import contextlib
import subprocess
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from scanner.errors import GitError, short

try:
    import fcntl
except ImportError:  # not on Windows: pipes keep their default size there
    fcntl = None  # type: ignore[assignment]

GITLINK = "160000"
#: Memory bounds for the gits that read a whole history. Unbounded, reading every blob
#: maps the whole pack (300+ MB resident on git/git) and caches 96 MB of delta bases;
#: bounded like this, cat-file stays near 35 MB per process at the same speed (measured
#: on git/git). The walk reads trees, which need a larger delta cache to stay fast.
PACK_LIMITS = ("-c", "core.packedGitWindowSize=4m", "-c", "core.packedGitLimit=8m",
               "-c", "core.deltaBaseCacheLimit=4m")
WALK_LIMITS = ("-c", "core.packedGitWindowSize=32m", "-c", "core.packedGitLimit=64m",
               "-c", "core.deltaBaseCacheLimit=32m")
#: One line per commit in a walk: \x01 then these fields, NUL-separated.
_FORMAT = "--format=%x01%H%x00%P%x00%an%x00%ae%x00%aI"
_HEADER_FIELDS = 5
READ = 1 << 20


def is_zero(oid: str) -> bool:
    """The all-zeros id git uses for "no object" (either hash length)."""
    return not oid.strip("0")


def display(raw: bytes) -> str:
    """A path or name for people and JSON: undecodable bytes become ``\\xNN``."""
    return raw.decode("utf-8", "backslashreplace")


def _message(stderr: bytes, fallback: str) -> str:
    """git's own complaint, one line: the ``fatal:``/``error:`` line if there is one."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            if "dubious ownership" in line:  # git's remedy is on lines we do not print
                return short(line, 200) + (" (another user owns it; if you trust it: git "
                                           "config --global --add safe.directory PATH)")
            return short(line, 240)
    return short(lines[0], 240) if lines else fallback


def run(repo: str, args: Sequence[str], *, input: bytes | None = None,
        ok: tuple[int, ...] = (0,)) -> tuple[int, bytes]:
    """Run ``git -C repo ARGS``; any status outside ``ok`` is a GitError with git's words."""
    try:
        proc = subprocess.run(["git", "-C", repo, *args], input=input, capture_output=True,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror or exc}") from None
    if proc.returncode not in ok:
        raise GitError(_message(proc.stderr, f"git {args[0]} failed ({proc.returncode})"))
    return proc.returncode, proc.stdout


def spawn(repo: str, args: Sequence[str], *, stdin: int | None = None) -> subprocess.Popen:
    """A long-running git whose stdout is read as it comes (stderr kept for errors).

    Read it through ``proc.stdout.raw``: one system call per read, straight into the
    caller's buffer. The pipe is widened to 1 MiB where Linux allows, so a whole
    history passes in a few thousand reads instead of a hundred thousand.
    """
    try:
        proc = subprocess.Popen(["git", "-C", repo, *args], stdout=subprocess.PIPE,
                                stdin=subprocess.DEVNULL if stdin is None else stdin,
                                stderr=subprocess.PIPE)
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror or exc}") from None
    if fcntl is not None and hasattr(fcntl, "F_SETPIPE_SZ") and proc.stdout is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
    return proc


def finish(proc: subprocess.Popen, what: str) -> None:
    """Wait for a spawned git; a failure is a GitError with its message."""
    stderr = proc.stderr.read() if proc.stderr else b""
    if proc.wait() != 0:
        raise GitError(_message(stderr, f"git {what} failed ({proc.returncode})"))


@dataclass(frozen=True, slots=True)
class Repo:
    path: str  # as given: every git call runs with -C path
    git_dir: str
    bare: bool
    shallow: bool
    head: str | None  # None when HEAD has no commit yet (a new repository)


def open_repo(path: str) -> Repo:
    """One ``rev-parse`` answers everything a scan needs to know before it starts."""
    status, out = run(path, ["rev-parse", "--absolute-git-dir", "--is-bare-repository",
                             "--is-shallow-repository", "--verify", "-q", "HEAD^{commit}"],
                      ok=(0, 1))
    lines = out.decode("utf-8", "surrogateescape").splitlines()
    if len(lines) < 3:
        raise GitError(f"{path}: git rev-parse gave no answer")
    head = lines[3] if status == 0 and len(lines) > 3 else None
    return Repo(path, lines[0], lines[1] == "true", lines[2] == "true", head)


def empty_tree(repo: str) -> str:
    """The id of the empty tree in this repository's hash (SHA-1 or SHA-256)."""
    return run(repo, ["hash-object", "-t", "tree", "--stdin"], input=b"")[1].decode().strip()


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


def closed_store(repo: str) -> bool:
    """Whether the object store is one pack git wrote, with nothing beside it: no loose
    object, no second pack, no alternate store, no promisor remote (a partial clone).

    Such a pack is closed under reachability: ``git repack`` refuses to write one with
    an object missing and ``clone`` checks connectivity when it arrives, and reading
    every blob and commit of it catches any that became unreadable since. Everything
    else (loose objects a stray ``rm`` can remove, several packs, other stores) needs
    the reachability walk of :class:`Connectivity` to find what is missing.
    """
    _, out = run(repo, ["count-objects", "-v"])
    fields = dict(line.split(": ", 1) for line in out.decode("utf-8", "replace").splitlines()
                  if ": " in line)
    if fields.get("count") != "0" or fields.get("packs") != "1" or "alternate" in fields:
        return False
    status, _ = run(repo, ["config", "--get", "extensions.partialClone"], ok=(0, 1))
    return status == 1


class Connectivity:
    """``rev-list --objects --all --missing=print`` running beside a whole-history scan:
    the store listing cannot show an object that is not there, so only a walk of every
    reachable tree names the blobs and trees that are referenced but missing.

    Bounded like cat-file (about 55 MB on git/git); its output (one id a line) is
    drained by a thread, keeping only the ``?<id>`` lines.
    """

    def __init__(self, repo: str):
        import threading

        self.proc = spawn(repo, [*PACK_LIMITS, "rev-list", "--objects", "--all",
                                 "--missing=print", "--no-object-names"])
        self.missing: list[str] = []
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(b"?"):
                self.missing.append(display(line[1:].strip()))

    @classmethod
    def unless_closed(cls, repo: str) -> Connectivity | None:
        return None if closed_store(repo) else cls(repo)

    def result(self) -> list[str]:
        """The missing ids; a GitError if git could not walk (an unreadable tree)."""
        self.thread.join()
        finish(self.proc, "rev-list")
        return self.missing

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.thread.join()
        self.proc.wait()


@dataclass(frozen=True, slots=True)
class Commit:
    oid: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    date: str  # author date, strict ISO 8601


@dataclass(frozen=True, slots=True)
class Change:
    """One path a commit (or the index) changed: a line of ``--raw`` output."""

    old_mode: str
    new_mode: str
    old_oid: str
    new_oid: str
    status: str
    path: bytes


def _tokens(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """NUL-separated fields of a stream, read a piece at a time."""
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\0")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def _read(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(READ):
        yield chunk


def parse_raw(tokens: Iterator[bytes], first: bytes) -> Change:
    """One ``:old new oid oid status`` field and the path that follows it."""
    meta = first.lstrip(b"\n")[1:].split(b" ")
    path = next(tokens, None)
    if path is None or len(meta) < 5:
        raise GitError("unexpected output from git (raw diff)")
    old_mode, new_mode, old_oid, new_oid, status = (m.decode() for m in meta[:5])
    return Change(old_mode, new_mode, old_oid, new_oid, status, path)


def changes(stream_tokens: Iterator[bytes]) -> Iterator[Change]:
    """``--raw -z`` output without commit headers (``diff-index``)."""
    for token in stream_tokens:
        if token.lstrip(b"\n").startswith(b":"):
            yield parse_raw(stream_tokens, token)


def staged(repo: Repo) -> list[Change]:
    """What the next commit would change: the index against HEAD (or the empty tree)."""
    base = repo.head or empty_tree(repo.path)
    _, out = run(repo.path, ["diff-index", "--cached", "-z", "--no-abbrev", "--no-renames",
                             "--no-ext-diff", base, "--"])
    return list(changes(iter(out.split(b"\0"))))


def walk(repo: str, revs: Sequence[str], *, keep: set[str] | None = None,
         merges: bool = True) -> Iterator[tuple[Commit, list[Change]]]:
    """Commits of ``git log REVS``, children before parents (``--topo-order``), each with
    the paths it changed against its first parent.

    Raw tree diffs only: no patch text is produced, which is what makes a whole history
    cheap (6 s on git/git where ``log -p`` takes 76). A merge shows its diff against the
    first parent, so every blob of every reachable tree is the new side of some change.
    With ``keep``, changes whose new blob is not in it are dropped as they are read.
    Without ``merges``, merges are listed without their diff (a third faster on git/git).
    """
    args = [*WALK_LIMITS, "log", "--topo-order", "--no-color", "--no-show-signature",
            "--no-mailmap", "--root", "--raw", "--no-abbrev", "-z", "--no-renames",
            f"--diff-merges={'first-parent' if merges else 'off'}", "--no-ext-diff",
            "--no-relative", _FORMAT, *revs, "--"]
    proc = spawn(repo, args)
    try:
        yield from _commits(_tokens(_read(proc.stdout.raw)), keep)  # type: ignore[union-attr]
    finally:
        if proc.poll() is None and proc.stdout:
            proc.stdout.close()
            proc.kill()
            proc.wait()
    finish(proc, "log")


def _commits(tokens: Iterator[bytes], keep: set[str] | None
             ) -> Iterator[tuple[Commit, list[Change]]]:
    commit: Commit | None = None
    found: list[Change] = []
    for token in tokens:
        bare = token.lstrip(b"\n")
        if bare.startswith(b"\x01"):
            if commit is not None:
                yield commit, found
            fields = [bare[1:], *(next(tokens, b"") for _ in range(_HEADER_FIELDS - 1))]
            oid, parents, name, email, date = (display(f) for f in fields)
            commit, found = Commit(oid, tuple(parents.split()), name, email, date), []
        elif bare.startswith(b":"):
            if keep is not None:
                # Cheap test before building anything: the new id is the 4th field.
                new_oid = bare[1:].split(b" ", 4)[3].decode()
                if new_oid not in keep:
                    next(tokens, None)
                    continue
            found.append(parse_raw(tokens, token))
    if commit is not None:
        yield commit, found


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


def object_types(repo: str, names: Sequence[str]) -> list[tuple[str, str] | None]:
    """(id, type) of each name (a rev, a ``rev:path``), None where git has none."""
    asked = [n for n in names if "\n" not in n]
    if not asked:
        return [None] * len(names)
    _, out = run(repo, ["cat-file", "--batch-check=%(objectname) %(objecttype)"],
                 input="".join(f"{n}\n" for n in asked).encode("utf-8", "surrogateescape"))
    answers = iter(out.decode("utf-8", "replace").splitlines())
    found: list[tuple[str, str] | None] = []
    for name in names:
        parts = next(answers, "").split(" ") if "\n" not in name else []
        found.append((parts[0], parts[1]) if len(parts) == 2 and parts[1] != "missing"
                     else None)
    return found


def read_tags(repo: str, oids: Sequence[str]) -> dict[str, Tag]:
    """Tag objects by id, following chains (a tag of a tag) to the end."""
    tags: dict[str, Tag] = {}
    todo = list(dict.fromkeys(oids))
    while todo:
        _, out = run(repo, ["cat-file", "--batch"],
                     input="".join(f"{o}\n" for o in todo).encode())
        pos, nxt = 0, []
        for oid in todo:
            nl = out.find(b"\n", pos)
            parts = out[pos:nl].split(b" ")
            pos = nl + 1
            if len(parts) != 3:
                continue  # missing: reported when it is read for scanning
            size = int(parts[2])
            tag = parse_tag(oid, out[pos:pos + size]) if parts[1] == b"tag" else None
            pos += size + 1
            if tag is not None:
                tags[oid] = tag
                if tag.kind == "tag" and tag.target not in tags:
                    nxt.append(tag.target)
        todo = list(dict.fromkeys(nxt))
    return tags


def ref_names(repo: str) -> list[bytes]:
    """Every ref's full name (``refs/heads/...``, ``refs/tags/...``), as bytes."""
    _, out = run(repo, ["for-each-ref", "--format=%(refname)"])
    return [line for line in out.split(b"\n") if line]


def tag_refs(repo: str) -> list[tuple[str, str, str]]:
    """(short name, id, type) of every ref that points at something other than a
    commit: annotated tags, and refs straight at a tree or a blob."""
    _, out = run(repo, ["for-each-ref", "--format=%(objecttype) %(objectname) %(refname)"])
    refs = []
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        kind, oid, name = line.split(" ", 2)
        if kind != "commit":
            short = name.removeprefix("refs/tags/") if name.startswith("refs/tags/") else name
            refs.append((short, oid, kind))
    return refs


def tree_blobs(repo: str, tree: str) -> list[tuple[bytes, str]]:
    """(path, blob id) of every file in a tree (submodule entries left out)."""
    _, out = run(repo, ["ls-tree", "-r", "-z", "--full-tree", tree])
    blobs = []
    for entry in out.split(b"\0"):
        if not entry:
            continue
        meta, _, path = entry.partition(b"\t")
        parts = meta.split(b" ")
        if len(parts) == 3 and parts[1] == b"blob":
            blobs.append((path, parts[2].decode()))
    return blobs


#: Rename limit for :func:`copied_from`: past this many sources times destinations
#: squared, git keeps exact copies from every file and similar ones from changed files
#: only, so a large tree costs a hash lookup, not a comparison with every file.
COPY_LIMIT = "50"


def copied_from(repo: str, parent: str, commit: str | None) -> dict[bytes, str]:
    """For each path that git's rename and copy detection sees as moved or copied from
    ``parent`` (into ``commit``, or into the index when None): the blob it came from.
    Renames with edits, copies from changed files, and exact copies of any file."""
    args = (["diff-index", "--cached"] if commit is None else ["diff-tree", "-r"])
    _, out = run(repo, [*args, "-z", "--raw", "--no-abbrev", "-M", "-C",
                        "--find-copies-harder", f"-l{COPY_LIMIT}", "--no-ext-diff",
                        parent, *([commit] if commit else []), "--"])
    sources: dict[bytes, str] = {}
    fields = iter(out.split(b"\0"))
    for field in fields:
        if not field.startswith(b":"):
            continue
        meta = field[1:].split(b" ")
        next(fields, b"")  # the path (the source, for a rename or a copy)
        if len(meta) >= 5 and meta[4][:1] in (b"R", b"C"):
            sources[next(fields, b"")] = meta[2].decode()
    return sources


def rev_list(repo: str, revs: Sequence[str]) -> list[str]:
    _, out = run(repo, ["rev-list", *revs, "--"])
    return out.decode().split()


def has_commit(repo: str, oid: str) -> bool:
    status, _ = run(repo, ["cat-file", "-e", f"{oid}^{{commit}}"], ok=(0, 1, 128))
    return status == 0


def lookup(repo: str, names: Sequence[bytes]) -> list[str | None]:
    """Object ids for ``<rev>:<path>`` names (None where there is none), in one call."""
    asked = [n for n in names if b"\n" not in n]  # cat-file reads lines: skip the rest
    if not asked:
        return [None] * len(names)
    _, out = run(repo, ["cat-file", "--batch-check=%(objectname) %(objecttype)"],
                 input=b"".join(n + b"\n" for n in asked))
    answers = iter(out.decode("utf-8", "replace").splitlines())
    ids: list[str | None] = []
    for name in names:
        parts = next(answers, "").split(" ") if b"\n" not in name else []
        ids.append(parts[0] if len(parts) == 2 and parts[1] == "blob" else None)
    return ids


def gitlinks(repo: str, rev: str) -> list[str]:
    """Submodule paths in ``rev``'s tree (their commits live in other repositories)."""
    _, out = run(repo, ["ls-tree", "-r", "-z", "--full-tree", rev])
    return [display(entry.split(b"\t", 1)[1]) for entry in out.split(b"\0")
            if entry.startswith(GITLINK.encode())]


def next_identities(repo: str) -> bytes:
    """The author and committer lines the next commit would carry (``git var``), as
    commit-header lines; empty when git knows no identity yet."""
    status, out = run(repo, ["var", "-l"], ok=(0, 128))
    if status != 0:
        return b""
    wanted = {b"GIT_AUTHOR_IDENT": b"author ", b"GIT_COMMITTER_IDENT": b"committer "}
    lines = []
    for line in out.split(b"\n"):
        key, _, value = line.partition(b"=")
        if key in wanted:
            lines.append(wanted[key] + value)
    return b"\n".join(lines)
