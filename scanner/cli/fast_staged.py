"""The pre-commit hook's quick answer: a staged change that holds no literal at all.

``cendis-scan git --staged`` runs before every commit, so its start-up is most of its
cost. Nearly every commit holds no token, and then no token can be found where none of
the detector's fixed strings (:mod:`scanner.engine.literals`: the prefix, its base64
and escaped forms) occurs. So this module, which imports nothing beyond the standard
library's basics and the two git modules built for it (the process runner
:mod:`scanner.git.proc`, the ``cat-file`` parser :mod:`scanner.git.batch`), reads what
the full scan would read (the staged blobs, their paths, the identities the commit will
carry) and looks for those strings. When none is there it exits 0, as silently as the
full scan (a hook is quiet when all is well), without RE2, the rules' regexes, the
detector or the report code. Anything else (a literal found, gzip or UTF-16 or zip content, a
submodule, a shallow or bare repository, no HEAD yet, a large change, any option, any
git error) returns None and the full scan runs, which says everything itself.
"""

from __future__ import annotations

import os
import sys

from scanner.git import batch, proc

#: Above this many staged bytes the full scan (with its prefilter) runs instead.
MAX_BYTES = 4 << 20
_MAGIC = (b"\x1f\x8b", b"PK", b"\xff\xfe", b"\xfe\xff")
_GITLINK = b"160000"
_REV_PARSE = ["rev-parse", "--is-bare-repository", "--is-shallow-repository", "--verify",
              "-q", "HEAD^{commit}"]


def _repo_arg(args: list[str]) -> str | None:
    """The repository of exactly ``git [REPO] --staged`` (no other option), else None."""
    if not args or args[0] != "git":
        return None
    rest = [a for a in args[1:] if a != "--staged"]
    if len(rest) == len(args) - 1 or len(args) - 1 - len(rest) != 1 or len(rest) > 1:
        return None
    if rest and (rest[0].startswith("-") or not rest[0]):
        return None
    return rest[0] if rest else "."


def _prefixes() -> list[bytes] | None:
    """The built-in rules' prefixes, read without compiling any rule (nor importing
    tomllib, which costs more than the whole answer): the ``prefix = "..."`` lines of
    the rule files we ship, one per ``[[rules]]`` table; anything else, None."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = os.path.join(here, "rules")  # where scanner.rules.builtin_dir finds them
    if not os.path.isdir(folder):
        folder = os.path.join(os.path.dirname(here), "rules")
    out = []
    for name in sorted(n for n in os.listdir(folder) if n.endswith(".toml")):
        with open(os.path.join(folder, name), "rb") as f:
            lines = [ln.strip() for ln in f.read().splitlines()]
        tables = sum(ln == b"[[rules]]" for ln in lines)
        found = [ln.partition(b"=")[2].strip() for ln in lines
                 if ln.partition(b"=")[0].strip() == b"prefix"]
        if len(found) != tables or any(len(v) < 3 or v[:1] != b'"' or v[-1:] != b'"'
                                       or b"\\" in v or b'"' in v[1:-1] for v in found):
            return None
        out += [v[1:-1] for v in found]
    return out or None


def _literals(prefixes: list[bytes]) -> list[bytes]:
    """The detector's literals for these prefixes (:func:`scanner.engine.layers.texts`,
    ~1,400 of them), kept in the cache folder between commits: even with the layer
    seeds shipped precomputed (:mod:`scanner.engine.seed_data`), importing and
    assembling them costs the hook ~1-2 ms more CPU than reading this file back
    (medians of 120-150 interleaved runs, clean 2-file change in git/git). The
    file says what it was derived from (the prefixes, this Python, and the path, size
    and mtime of every engine module, as a .pyc does for its source); any difference,
    or any trouble reading it, means deriving them again (and writing them, if the
    folder can be written)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    engine = os.path.join(here, "engine")
    stamp = [f"v1 {sys.hexversion} {engine}", *(p.hex() for p in prefixes)]
    for name in sorted(os.listdir(engine)):
        if name.endswith(".py"):
            st = os.stat(os.path.join(engine, name))
            stamp.append(f"{name} {st.st_size} {st.st_mtime_ns}")
    key = " ".join(stamp).encode("utf-8", "surrogateescape")
    path = os.path.join(_cache_dir(), "hook-literals.txt")
    cached = _small_file(path, 1 << 20)
    if cached is not None:
        head, _, body = cached.partition(b"\n")
        if head == key:
            return [bytes.fromhex(line.decode()) for line in body.split()]
    from scanner.engine.literals import texts

    found = texts(prefixes)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(key + b"\n" + b"\n".join(t.hex().encode() for t in found) + b"\n")
        os.replace(tmp, path)
    except OSError:
        pass
    return found


def _cache_dir() -> str:
    """Where the prefilter keeps its compiled databases (scanner.engine.prefilter's
    ``_cache_dir``, which this fast path does not import: logging and typing)."""
    explicit = os.environ.get("CENDIS_SCAN_CACHE")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cendis-scan")


def _small_file(path: str, limit: int = 4096) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return None


def _plainly_unshallow(repo: str) -> bool:
    """True when ``repo`` is a work tree's top whose repository certainly has no
    ``shallow`` file (what ``rev-parse --is-shallow-repository`` reads), found as git
    finds it: ``$GIT_DIR`` (git sets it in a worktree's hooks), else ``repo/.git``, a
    folder or a ``gitdir:`` file, and its ``commondir``. False: git must say."""
    if os.environ.get("GIT_COMMON_DIR") or os.environ.get("GIT_WORK_TREE"):
        return False
    git_dir = os.environ.get("GIT_DIR", "")
    if git_dir:
        if not os.path.isabs(git_dir) and repo != ".":
            return False  # relative to the folder git is started in
    else:
        git_dir = os.path.join(repo, ".git")
        if not os.path.isdir(git_dir):
            link = _small_file(git_dir)
            if link is None or not link.startswith(b"gitdir: "):
                return False
            git_dir = os.path.join(repo, os.fsdecode(link[8:].strip()))
    common = _small_file(os.path.join(git_dir, "commondir"))
    common_dir = os.path.join(git_dir, os.fsdecode(common.strip())) if common else git_dir
    return (os.path.isfile(os.path.join(git_dir, "HEAD"))
            and os.path.isdir(os.path.join(common_dir, "objects"))
            and not os.path.lexists(os.path.join(common_dir, "shallow")))


def _bare_setting(listing: bytes) -> bool | None:
    """``core.bare`` from ``git var -l``'s listing of the configuration (the last one
    counts, as in git); None when it is not set or not plainly true or false (git
    itself then decides from where the repository is)."""
    value = None
    for line in listing.split(b"\n"):
        if line.startswith(b"core.bare="):
            value = line[len(b"core.bare="):].lower()
    return {b"false": False, b"no": False, b"off": False, b"0": False,
            b"true": True, b"yes": True, b"on": True, b"1": True}.get(value or b"")


def _blobs(repo: str, oids: list[bytes]) -> list[bytes] | None:
    """The staged blobs, in the order asked (None: any other answer)."""
    status, out = proc.collect(proc.start(repo, ["cat-file", "--batch"],
                                          b"".join(o + b"\n" for o in oids)))
    if status != 0:
        return None
    got = list(batch.entries(out))
    if len(got) != len(oids) or any(oid != asked or kind != b"blob"
                                    for (oid, kind, _), asked in zip(got, oids, strict=True)):
        return None
    return [content for _, _, content in got]


def try_clean(args: list[str]) -> int | None:
    """0 when ``git [REPO] --staged`` certainly finds nothing (nothing is printed),
    None when the full scan must run."""
    repo = _repo_arg(args)
    if repo is None or os.environ.get("CENDIS_SCAN_DEBUG", "") not in ("", "0"):
        return None
    if not proc.can_start():
        return None
    try:
        # Two gits at once; a third (rev-parse) only when the repository's files do not
        # already say what it would (a git process is ~1.5 ms of a ~20 ms answer).
        plain = _plainly_unshallow(repo)
        gits = [proc.start(repo, ["diff-index", "--cached", "-z", "--no-abbrev",
                                  "--no-renames", "--no-ext-diff", "HEAD", "--"]),
                proc.start(repo, ["var", "-l"])]
        if not plain:
            gits.append(proc.start(repo, _REV_PARSE))
        (diff_status, diff), (ident_status, identities), *asked = map(proc.collect, gits)
        if diff_status != 0 or ident_status not in (0, 128):
            return None  # no HEAD yet (diff-index needs one), or any git error
        if plain and _bare_setting(identities) is not False:
            asked = [proc.collect(proc.start(repo, _REV_PARSE))]  # core.bare unset or odd
        if asked:
            lines = asked[0][1].split()
            if asked[0][0] != 0 or lines[:2] != [b"false", b"false"] or len(lines) != 3:
                return None  # bare, shallow (the full scan warns), or no commit
        fields = diff.split(b"\0")
        names: list[bytes] = []
        oids: dict[bytes, None] = {}
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            parts = meta.lstrip(b"\n")[1:].split(b" ")
            if not meta.lstrip(b"\n").startswith(b":") or len(parts) < 5:
                return None
            if _GITLINK in (parts[0], parts[1]):
                return None  # the full scan warns about submodules
            names.append(path)
            if parts[3].strip(b"0"):
                oids[parts[3]] = None
        if len(oids) > 500:
            return None  # their ids might not fit in the pipe
        blobs = _blobs(repo, list(oids)) if oids else []
        if blobs is None:
            return None
        total = sum(len(b) for b in blobs)
        if total > MAX_BYTES:
            return None
        if any(b.startswith(_MAGIC) or b"\0" in b[:8192] for b in blobs):
            return None  # gzip, zip, UTF-16 or binary: the full scan decodes it
        prefixes = _prefixes()
        if prefixes is None:
            return None
        haystack = b"\n".join([*blobs, *names, identities])
        if any(lit in haystack for lit in _literals(prefixes)):
            return None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return 0  # a hook is quiet when all is well
