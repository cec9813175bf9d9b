"""Bare mirrors in the cache, and each repository's sweep state kept inside its mirror.

The state is a set of refs in a namespace of our own, which the fetch refspecs never
touch (so ``fetch --prune`` cannot delete it):

- ``refs/cendis-scan/scanned/<ref>``: the commit each branch or tag had when the last
  finished sweep scanned it;
- ``refs/cendis-scan/retired/<commit>``: a scanned tip that a force-push or a deletion
  left behind and that no current tip reaches: kept so that the same commits, pushed
  again later, are not scanned again.

Being refs, they also keep every scanned commit in the mirror (a force-push does not let
gc drop what ``--not`` must name), and state and mirror cannot disagree: both live and
die together. The state moves in one ``update-ref --stdin`` transaction, only after the
repository's scan finished and its findings were recorded.

Which tokens were already reported for the repository is kept beside the refs (a list
of SHA-256 hashes, never a token), so a rewritten commit that carries an old token is
not reported a second time.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from scanner.atomic import write_atomic
from scanner.errors import ScanError
from scanner.git.plumbing import run
from scanner.scrub import is_clean
from scanner.sweep.config import TRANSPORTS

NAMESPACE = "refs/cendis-scan/"
SCANNED = NAMESPACE + "scanned/"
RETIRED = NAMESPACE + "retired/"
REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
REPORTED_FILE = "cendis-scan-reported"
#: More state refs written at once than this: pack them (reading loose refs gets slow).
PACK_REFS_AFTER = 100
#: A fetch that takes longer than this is a failure of that repository (not a hang).
FETCH_TIMEOUT = 1800.0


#: Only the sweep's transports, by git's own allow-list (it covers every git command, a
#: redirect and a submodule too), so an ``ext::`` or ``fd::`` URL that got past the
#: config check still runs nothing and hangs on nothing. (No prompt ever waits: every
#: git gets :data:`scanner.git.proc.NO_PROMPT`.)
_ALLOW = {"GIT_ALLOW_PROTOCOL": ":".join(TRANSPORTS)}


def _git(path: Path, args: Sequence[str], *, input: bytes | None = None,
         timeout: float | None = None, ok: tuple[int, ...] = (0,),
         env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """git in a mirror, through the one runner (:func:`scanner.git.plumbing.run`: never a
    password prompt, git's error in one line) and the sweep's transports only; its
    output as text. ``env``: more environment (a fetch's credential helper)."""
    status, out = run(str(path), args, input=input, timeout=timeout, ok=ok,
                      extra={**(env or {}), **_ALLOW})
    return status, out.decode("utf-8", "surrogateescape")


def cache_dir_name(name: str) -> str:
    """A folder name for a repository's mirror (its lock file is named after it): a
    hash of the name, which keeps the state when the URL changes, and a readable slug
    only when the name is clean (a name that held a token or a control character, even
    scrubbed, gives none: no part of a token is ever in a file name). An existing
    mirror of a plain name keeps its folder."""
    clean = is_clean(name.encode("ascii", "ignore").decode())  # "données" is clean
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:60] if clean else ""
    return f"{slug or 'repo'}-{hashlib.sha256(name.encode()).hexdigest()[:10]}.git"


@dataclass(frozen=True, slots=True)
class Plan:
    """What one sweep of a repository has to do."""

    tips: dict[str, str]  # ref -> commit it has now (branches and tags wanted)
    scanned: dict[str, str]  # state ref -> commit (scanned and retired)
    new: list[str]  # tip commits not scanned yet

    @property
    def first(self) -> bool:
        """No state at all: the whole history is scanned."""
        return not self.scanned

    @property
    def rev_sets(self) -> list[list[str]]:
        """What is new since the last finished sweep (``scanner.new_since``)."""
        from scanner.git.scan import new_since

        return new_since(self.new, sorted(set(self.scanned.values()))) if self.new else []


class Mirror:
    """One repository's bare mirror in the cache."""

    def __init__(self, path: str | os.PathLike[str], url: str,
                 branches: Sequence[str] = (), *, env: Mapping[str, str] | None = None
                 ) -> None:
        self.path = Path(path)
        self.url = url
        self.branches = tuple(branches)
        self.env = dict(env or {})  # for the fetch only: a credential helper, never saved
        self._fresh_refs: list[list[str]] | None = None  # read by fetch, for plan
        self.remote_head: str | None = None  # the origin's HEAD ("refs/heads/main")

    def _origin_lines(self) -> list[tuple[str, str]] | None:
        """``remote "origin"``'s keys and values as this class writes them (a plain
        ``key = value`` per line); None for anything else, which is then rewritten by
        git. Read from the file, since a git process per check costs more than the
        whole check (2,000 mirrors a sweep)."""
        try:
            text = (self.path / "config").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        out: list[tuple[str, str]] = []
        inside = False
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("["):
                inside = line == '[remote "origin"]'
            elif inside and line:
                key, sep, value = line.partition(" = ")
                if not sep or any(c in value for c in '"\\;#') or value != value.strip():
                    return None
                out.append((key, value))
        return out

    # -- the mirror ---------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the bare repository (once) and point it at the URL (every time, so a
        changed URL in the config takes effect)."""
        if not (self.path / "HEAD").exists():
            self.path.mkdir(parents=True, exist_ok=True)
            _git(self.path, ["init", "-q", "--bare"])
            _git(self.path, ["config", "gc.autoDetach", "false"])
        elif self._origin_lines() == [("url", self.url),
                                      *(("fetch", spec) for spec in REFSPECS)]:
            return  # nothing to write (most sweeps): no git started at all
        _git(self.path, ["config", "--replace-all", "remote.origin.url", self.url])
        _git(self.path, ["config", "--unset-all", "remote.origin.fetch"], ok=(0, 5))
        for spec in REFSPECS:
            _git(self.path, ["config", "--add", "remote.origin.fetch", spec])

    def fetch(self, timeout: float = FETCH_TIMEOUT) -> None:
        """Bring branches and tags up to date; deleted ones are pruned (our namespace is
        outside the refspecs, so the state survives)."""
        self.ensure()
        if not self._unchanged(timeout):
            _git(self.path, ["fetch", "-q", "--prune", "--no-tags", "--no-write-fetch-head",
                             "origin"], timeout=timeout, env=self.env)
        self._follow_head()

    def _unchanged(self, timeout: float) -> bool:
        """Are the origin's branches and tags exactly the mirror's? ``ls-remote`` is one
        round of ref advertisement and nothing else, where a fetch that brings nothing
        still negotiates and checks; most repositories of a sweep have nothing new. The
        refs read here are the ones :meth:`plan` then uses (no second read)."""
        _, out = _git(self.path, ["ls-remote", "--symref", "origin", "HEAD", "refs/heads/*",
                                  "refs/tags/*"], timeout=timeout, env=self.env)
        remote = {}
        for line in out.splitlines():
            oid, _, ref = line.partition("\t")
            if oid.startswith("ref: refs/heads/") and ref == "HEAD":  # the default branch
                self.remote_head = oid.removeprefix("ref: ")
            if ref.startswith(("refs/heads/", "refs/tags/")) and not ref.endswith("^{}"):
                remote[ref] = oid
        raw = self._raw_refs()
        local = {r[0]: r[2] for r in raw if r[0].startswith(("refs/heads/", "refs/tags/"))}
        if remote != local:
            return False
        self._fresh_refs = raw
        return True

    # -- the default branch (presence checks) --------------------------------------------

    def _head_file(self) -> str | None:
        """The branch the mirror's HEAD names, read from its file (no git started)."""
        try:
            text = (self.path / "HEAD").read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return text.removeprefix("ref: ") if text.startswith("ref: refs/heads/") else None

    def _follow_head(self) -> None:
        """Point the mirror's HEAD where the origin's points (a bare ``init`` names its
        own default), only when they differ: one file read on most sweeps."""
        wanted = self.remote_head
        if wanted and is_clean(wanted) and not wanted.endswith("/") and \
                self._head_file() != wanted:
            _git(self.path, ["symbolic-ref", "HEAD", wanted])

    def default_branch(self, hint: str | None = None) -> str | None:
        """The default branch's full ref: the forge's ``default_branch`` (``hint``) when
        the API gave one, else the origin's HEAD as the last fetch saw it."""
        if hint and is_clean(hint):
            return hint if hint.startswith("refs/heads/") else f"refs/heads/{hint}"
        return self.remote_head or self._head_file()

    # -- state --------------------------------------------------------------------------

    def _raw_refs(self) -> list[list[str]]:
        """[ref, type, object, peeled type, peeled object] for every ref; the ones the
        last :meth:`fetch` read when it found nothing to fetch (then nothing moved)."""
        if self._fresh_refs is not None:
            raw, self._fresh_refs = self._fresh_refs, None
            return raw
        _, out = _git(self.path, ["for-each-ref", "--format=%(refname)%00%(objecttype)%00"
                                  "%(objectname)%00%(*objecttype)%00%(*objectname)"])
        return [(line.split("\0") + [""] * 5)[:5] for line in out.splitlines()]

    def _refs(self) -> list[tuple[str, str]]:
        """(ref, commit) for every ref, tags peeled; refs to trees or blobs skipped."""
        refs = []
        for ref, kind, oid, peeled_kind, peeled in self._raw_refs():
            if kind == "commit":
                refs.append((ref, oid))
            elif kind == "tag" and peeled_kind == "commit":
                refs.append((ref, peeled))
        return refs

    def wanted(self, ref: str) -> bool:
        """Every branch and tag, or with ``branches`` the branches (or full refs) whose
        name matches one of the patterns."""
        if ref.startswith(NAMESPACE):
            return False
        if not self.branches:
            return ref.startswith(("refs/heads/", "refs/tags/"))
        short_name = ref.removeprefix("refs/heads/")
        return any(fnmatch.fnmatchcase(ref, p) if p.startswith("refs/") else
                   ref.startswith("refs/heads/") and fnmatch.fnmatchcase(short_name, p)
                   for p in self.branches)

    def plan(self) -> Plan:
        refs = self._refs()
        tips = {ref: oid for ref, oid in refs if self.wanted(ref)}
        scanned = {ref: oid for ref, oid in refs if ref.startswith(NAMESPACE)}
        done = set(scanned.values())
        new = sorted({oid for oid in tips.values() if oid not in done})
        return Plan(tips, scanned, new)

    def advance(self, plan: Plan) -> None:
        """Record that ``plan.tips`` are scanned, in one transaction. An old tip that a
        current tip no longer reaches (force-push, deleted ref) is kept as retired."""
        target = {SCANNED + ref.removeprefix("refs/"): oid for ref, oid in plan.tips.items()}
        tip_set = set(target.values())
        leftovers = {oid for oid in plan.scanned.values() if oid not in tip_set}
        for oid in sorted(leftovers):
            if not self._reached(oid, plan.tips.get(self._ref_of(plan, oid)), tip_set):
                target[RETIRED + oid] = oid
        lines = [f"update {ref} {oid}" for ref, oid in sorted(target.items())
                 if plan.scanned.get(ref) != oid]
        lines += [f"delete {ref}" for ref in sorted(plan.scanned) if ref not in target]
        if lines:
            _git(self.path, ["update-ref", "--stdin"],
                 input=("\n".join(lines) + "\n").encode())
        if len(lines) > PACK_REFS_AFTER:  # a first sweep of a repository with many tags
            _git(self.path, ["pack-refs", "--all"])

    @staticmethod
    def _ref_of(plan: Plan, oid: str) -> str:
        for ref, value in plan.scanned.items():
            if value == oid and ref.startswith(SCANNED):
                return "refs/" + ref.removeprefix(SCANNED)
        return ""

    def _reached(self, oid: str, same_ref_tip: str | None, tips: Iterable[str]) -> bool:
        """Is ``oid`` an ancestor of a current tip? The common case (a fast-forward of
        the same ref) is one cheap ``merge-base --is-ancestor``."""
        if same_ref_tip is not None:
            status, _ = _git(self.path, ["merge-base", "--is-ancestor", oid, same_ref_tip],
                             ok=(0, 1))
            if status == 0:
                return True
        others = sorted(set(tips))
        if not others:
            return False
        _, out = _git(self.path, ["rev-list", "-n", "1", oid, "--not", *others])
        return not out.strip()

    # -- tokens already reported ---------------------------------------------------------

    def reported(self) -> set[str]:
        try:
            text = (self.path / REPORTED_FILE).read_text(encoding="ascii")
        except FileNotFoundError:
            return set()
        return {ln for ln in text.split() if ln}

    def add_reported(self, hashes: Iterable[str]) -> None:
        """Atomically (write, then rename) extend the list of reported token hashes."""
        new = set(hashes)
        if not new:
            return
        have = self.reported()
        if new <= have:
            return
        write_atomic(self.path / REPORTED_FILE, "".join(f"{h}\n" for h in sorted(have | new)))


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold ``path`` (a lock file) for one sweep of one source: two sweeps that overlap
    (a slow cron run and the next) never fetch into or advance the same state at once;
    the second reports the source as busy instead of waiting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepBusy(f"another sweep is working on it ({path.name})") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class SweepBusy(ScanError):
    reason = "busy"


def state_of(mirror: Mirror) -> Mapping[str, str]:
    """The state refs (for tests and ``--format json``)."""
    return mirror.plan().scanned
