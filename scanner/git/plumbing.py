"""Every git subprocess outside the hook's fast path, and the small questions a scan
asks of a repository.

Only git's machine formats are read (``-z`` output, ``for-each-ref`` formats), never
porcelain, so paths with newlines or bytes that are not UTF-8 survive. Every failure of
git becomes a :class:`~scanner.errors.GitError` carrying git's own message in one line
(:func:`scanner.git.proc.message`), and every git gets the same environment
(:func:`scanner.git.proc.environment`: no prompt ever waits for an answer).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scanner.errors import GitError
from scanner.git.proc import environment, message

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


def is_zero(oid: str) -> bool:
    """The all-zeros id git uses for "no object" (either hash length)."""
    return not oid.strip("0")


def display(raw: bytes) -> str:
    """A path or name for people and JSON: undecodable bytes become ``\\xNN``."""
    return raw.decode("utf-8", "backslashreplace")


def run(repo: str, args: Sequence[str], *, input: bytes | None = None,
        ok: tuple[int, ...] = (0,), timeout: float | None = None,
        own_repository: bool = False, extra: Mapping[str, str] | None = None
        ) -> tuple[int, bytes]:
    """Run ``git -C repo ARGS``; any status outside ``ok`` is a GitError with git's words,
    and so is a git still running after ``timeout`` seconds (a fetch that hangs).
    ``own_repository``: answer for ``repo`` even inside another repository's hook;
    ``extra``: more environment (the sweep's allowed transports)."""
    try:
        proc = subprocess.run(["git", "-C", repo, *args], input=input, capture_output=True,
                              env={**environment(own_repository=own_repository),
                                   **(extra or {})},
                              timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} took longer than {timeout:.0f} s") from None
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror or exc}") from None
    if proc.returncode not in ok:
        raise GitError(message(proc.stderr, f"git {args[0]} failed ({proc.returncode})"))
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
                                stderr=subprocess.PIPE, env=environment())
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
        raise GitError(message(stderr, f"git {what} failed ({proc.returncode})"))


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


def rev_list(repo: str, revs: Sequence[str]) -> list[str]:
    _, out = run(repo, ["rev-list", *revs, "--"])
    return out.decode().split()


def has_commit(repo: str, oid: str) -> bool:
    status, _ = run(repo, ["cat-file", "-e", f"{oid}^{{commit}}"], ok=(0, 1, 128))
    return status == 0


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


def listing(directory: str) -> list[str] | None:
    """The files git considers under ``directory`` (tracked, or untracked and not
    ignored), relative to it; None when ``directory`` is not in a work tree git will
    read, or git is not installed. The repository is the folder's own, whatever a
    surrounding hook's environment points at."""
    try:
        _, out = run(directory, ["ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], own_repository=True)
    except GitError:
        return None
    return [os.fsdecode(p) for p in out.split(b"\0") if p]


def ignored(work_tree: str, path: str) -> bool | None:
    """Whether git would ignore ``path`` in ``work_tree`` (None: git cannot say)."""
    try:
        status, _ = run(work_tree, ["check-ignore", "-q", "--", path], ok=(0, 1),
                        timeout=10)
    except GitError:
        return None
    return status == 0
