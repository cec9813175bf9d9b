"""The git entry points: staged changes, pushes, commit ranges and whole histories.

Only what a change adds is a leak. For each path a commit changed, the tokens it
introduced are those of the new blob less those of the version(s) it replaced; a
token is then reported once per scan, at the earliest commit that introduced it (the
last one in ``--topo-order``, so an ancestor always wins over its descendants), and
every other place that wrote it is counted in ``occurrences``. So a token that stays
in a file for 1,000 commits, a branch merged later, a renamed file or a later commit
that deletes the token never make a second finding.

A whole history is scanned blob-first: every unique blob is read and searched once
(:mod:`scanner.sources.git_objects`), and only when some blob or commit message holds
a token is the history walked (raw tree diffs, no patches) to find where it came in.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

from scanner.engine.detect import Detector
from scanner.engine.names import redact_name, scan_names
from scanner.errors import GitError, UsageError, short
from scanner.finding import Finding, SourceKind
from scanner.result import PARALLEL_BYTES, ScanIssue, ScanOptions, ScanResult
from scanner.rules import Rule
from scanner.scan import filter_findings
from scanner.sources import git
from scanner.sources.git_objects import (
    Batch,
    CatFile,
    Scanned,
    identity_findings,
    scan_objects,
    unreadable,
)

log = logging.getLogger("cendis_scan")
_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
#: From this many objects on, a range's blobs are read by worker processes.
MANY = 2000


@dataclass(slots=True)
class _Place:
    """A path (or a commit or tag message) that a change wrote, holding a token."""

    order: int  # position in the walk: larger is earlier in history
    commit: git.Commit | None
    path: bytes | None  # None: a message
    scanned: Scanned
    introduced: set[str]
    tag: git.Tag | None = None  # the tag whose message this is, or that points here
    #: The commits whose trees were there before (a staged change's is HEAD).
    parents: tuple[str, ...] = ()


@dataclass(slots=True)
class _Objects:
    """Scan results by object id, filled on demand through one cat-file process.

    In a whole-history scan every object was scanned up front (``complete``), so an id
    without hits is simply clean.
    """

    repo: str
    rules: list[Rule]
    jobs: int = 0
    executor: Executor | None = None
    threshold: int = PARALLEL_BYTES
    batch: Batch = field(default_factory=Batch)
    seen: set[str] = field(default_factory=set)
    complete: bool = False
    reader: CatFile | None = None

    def ensure(self, oids: Iterable[str]) -> None:
        if self.complete:
            return
        todo = list(dict.fromkeys(o for o in oids if o not in self.seen))
        if len(todo) >= MANY:  # a long range (a first push): read them in parallel
            self.batch.merge(scan_objects(self.repo, self.rules, git.sizes(self.repo, todo),
                                          self.jobs, self.executor, self.threshold))
        elif todo:
            if self.reader is None:
                self.reader = CatFile(self.repo)
            self.batch.merge(self.reader.scan(Detector(self.rules), todo))
        self.seen.update(todo)

    def get(self, oid: str | None) -> Scanned | None:
        return None if oid is None else self.batch.hits.get(oid)

    def secrets(self, oid: str | None) -> set[str]:
        found = self.get(oid)
        return found.secrets if found else set()

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


def _blob_change(change: git.Change) -> bool:
    return change.new_mode != git.GITLINK and not git.is_zero(change.new_oid)


def _places(objects: _Objects, walked: Sequence[tuple[int, git.Commit | None,
            list[git.Change]]], *, quiet: bool = False, staged_parent: str | None = None
            ) -> tuple[list[_Place], int]:
    """Every change whose new side holds a token, with what it introduced against the
    same path in its parents; and the count of inline-suppressed hits it added."""
    submodules = sorted({git.display(c.path) for _, _, changes in walked for c in changes
                         if git.GITLINK in (c.new_mode, c.old_mode)})
    if submodules and not quiet:
        log.warning(f"skipped submodule{'s' if len(submodules) > 1 else ''} (scan "
            f"{'them' if len(submodules) > 1 else 'it'} in its own repository): "
            + ", ".join(submodules[:5]) + (" ..." if len(submodules) > 5 else ""))
    objects.ensure([c.new_oid for _, _, changes in walked for c in changes
                    if _blob_change(c)] + [commit.oid for _, commit, _ in walked if commit])
    hit = [(order, commit, c) for order, commit, changes in walked for c in changes
           if _blob_change(c) and objects.get(c.new_oid)]
    others = _other_parents(objects.repo, hit)
    objects.ensure([c.old_oid for _, _, c in hit if not git.is_zero(c.old_oid)
                    and c.old_mode != git.GITLINK] + [o for ids in others for o in ids if o])
    places: list[_Place] = []
    suppressed: dict[str, int] = {}
    staged = (staged_parent,) if staged_parent else ()
    for (order, commit, change), parents in zip(hit, others, strict=True):
        new = objects.get(change.new_oid)
        assert new is not None
        old_ids = [change.old_oid, *parents]
        before = set().union(*(objects.secrets(o) for o in old_ids))
        places.append(_Place(order, commit, change.path, new, new.secrets - before,
                             parents=commit.parents if commit else staged))
        olds = [objects.get(o) for o in old_ids]
        added = new.suppressed - max((o.suppressed for o in olds if o), default=0)
        suppressed[change.new_oid] = max(added, suppressed.get(change.new_oid, 0))
    for order, commit, _ in walked:
        message = objects.get(commit.oid) if commit else None
        if commit is not None and message is not None:
            places.append(_Place(order, commit, None, message, message.secrets,
                                 parents=commit.parents))
            suppressed[commit.oid] = message.suppressed
    return places, sum(suppressed.values())


def _drop_inherited(objects: _Objects, places: list[_Place], staged: bool = False) -> None:
    """Only a token that no parent had is new: what a rename or a copy carries over
    from its source in a parent is an occurrence, not a leak (the same path in every
    parent was already looked at by :func:`_places`).

    Costs nothing unless some file still introduces a token; then one diff per commit
    (or one for the index) with git's rename and copy detection names each file's
    source blob: renames with or without edits, copies from files the change touched,
    and exact copies of any file (:func:`git.copied_from`). Looking through every blob
    of the parent tree instead would read 60 MB on git/git for each blocked commit.
    """
    files = [p for p in places if p.introduced and p.parents and p.path is not None]
    moves: dict[tuple[str, str | None], dict[bytes, str]] = {}
    for place in files:
        commit = None if staged or place.commit is None else place.commit.oid
        for par in place.parents:
            if (par, commit) not in moves:
                moves[par, commit] = git.copied_from(objects.repo, par, commit)
    objects.ensure([oid for found in moves.values() for oid in found.values()])
    for place in files:
        commit = None if staged or place.commit is None else place.commit.oid
        for par in place.parents:
            source = moves[par, commit].get(place.path or b"")
            place.introduced -= objects.secrets(source)


def _tag_places(objects: _Objects, roots: Sequence[tuple[str, str, str]]
                ) -> tuple[list[_Place], set[str]]:
    """Tags and what they point at when it is not a commit (a commit's changes are
    the walk's): each tag object's message, a tagged blob, every blob of a tagged
    tree. ``roots`` are (name, id, type) as refs or a push name them. A tag has no
    parent, so all it holds is new; where a commit wrote the same token, the commit
    (older) keeps the finding and the tag counts as an occurrence. Also returns the
    ids of every object read for them."""
    tags = git.read_tags(objects.repo, [oid for _, oid, kind in roots if kind == "tag"])
    targets: list[tuple[bytes, str, git.Tag | None]] = []  # (path, blob, tag)
    messages: list[git.Tag] = []
    for name, oid, kind in roots:
        tag = None
        seen: set[str] = set()
        while kind == "tag" and oid in tags and oid not in seen:
            seen.add(oid)
            tag = tags[oid]
            messages.append(tag)
            oid, kind = tag.target, tag.kind
        label = name.encode("utf-8", "surrogateescape")
        if kind == "blob":
            targets.append((label, oid, tag))
        elif kind == "tree":
            targets += [(label + b":" + path, blob, tag)
                        for path, blob in git.tree_blobs(objects.repo, oid)]
    messages = list({t.oid: t for t in messages}.values())
    ids = [t.oid for t in messages] + [blob for _, blob, _ in targets]
    objects.ensure(ids)
    places = []
    for tag in messages:
        found = objects.get(tag.oid)
        if found is not None:
            places.append(_Place(-1, None, None, found, found.secrets, tag=tag))
    for path, blob, tag in targets:
        found = objects.get(blob)
        if found is not None:
            places.append(_Place(-1, None, path, found, found.secrets, tag=tag))
    return places, set(ids)


def _other_parents(repo: str, hit: Sequence[tuple[int, git.Commit | None, git.Change]]
                   ) -> list[list[str | None]]:
    """For a merge, the blobs at the same path in its other parents: a token that one
    of them already had is merged, not introduced."""
    names = [f"{p}:".encode() + change.path
             for _, commit, change in hit if commit for p in commit.parents[1:]]
    ids = iter(git.lookup(repo, names))
    return [[next(ids) for _ in commit.parents[1:]] if commit else []
            for _, commit, _ in hit]


def _path_places(rules: list[Rule], walked: Walked) -> tuple[list[_Place], dict[bytes, str]]:
    """Paths are content: a token in a path a commit added is new unless the same
    commit removed a path holding it (a rename). Returns those places, and every
    changed path that holds a token with its redacted form, for display."""
    changes = [(order, commit, c) for order, commit, cs in walked for c in cs]
    paths = list(dict.fromkeys(c.path for _, _, c in changes))
    found = {paths[i]: h for i, h in scan_names(Detector(rules), paths).items()}
    if not found:
        return [], {}
    renamed = {p: redact_name(p, h) for p, h in found.items()}
    removed: dict[str, set[str]] = {}
    for _, commit, c in changes:
        if c.status == "D" and c.path in found:
            removed.setdefault(commit.oid if commit else "", set()).update(
                h.secret_sha256 for h in found[c.path])
    places = []
    for order, commit, c in changes:
        if c.status == "D" or c.path not in found:
            continue
        scanned = Scanned([Finding(
            rule_id=h.rule_id, confidence=h.confidence, path=None, line=None, column=None,
            offset=h.offset, encoding=h.encoding, redacted=h.redacted,
            secret_sha256=h.secret_sha256, source=SourceKind.GIT, location="path")
            for h in found[c.path] if not h.suppressed])
        new = scanned.secrets - removed.get(commit.oid if commit else "", set()) \
            if c.status == "A" else set()
        places.append(_Place(order, commit, c.path, scanned, new))
    return places, renamed


def _findings(places: list[_Place], renamed: dict[bytes, str] | None = None
              ) -> list[Finding]:
    """One finding per secret, at its earliest introduction; ``occurrences`` counts
    every place (commit and path, or message) that wrote it. Oldest first; within one
    place, in the order of the text (never in the order of a set: the output is the
    same whatever the hash seed)."""
    count: dict[str, set[tuple[str, bytes | None]]] = {}
    best: dict[str, tuple[tuple[int, bool, tuple[int, ...]], _Place]] = {}
    for place in places:
        where = (_owner(place), place.path)
        for secret in place.scanned.secrets:
            count.setdefault(secret, set()).add(where)
        for secret in place.introduced:
            key = (place.order, place.path is not None, _neg(place.path or b""))
            if secret not in best or key > best[secret][0]:
                best[secret] = (key, place)
    chosen = []
    for secret, (key, place) in best.items():
        first = min((f for f in place.scanned.findings if f.secret_sha256 == secret),
                    key=lambda f: (f.offset, f.secret_sha256))
        chosen.append(((key, -first.offset, _neg(secret.encode())), first, place, secret))
    chosen.sort(key=lambda item: item[0], reverse=True)
    return [_located(first, place, len(count[secret]), renamed or {})
            for _, first, place, secret in chosen]


def _owner(place: _Place) -> str:
    if place.commit is not None:
        return place.commit.oid
    return place.tag.oid if place.tag is not None else ""


def _located(first: Finding, place: _Place, occurrences: int, renamed: dict[bytes, str]
             ) -> Finding:
    """The engine's finding with where the history put it; ``renamed`` gives the
    printable form of paths that hold a token themselves."""
    path = None if place.path is None else renamed.get(place.path) or git.display(place.path)
    c, tag = place.commit, place.tag
    location = first.location or ("file" if path is not None else "commit-message")
    who: tuple[str | None, str | None, str | None, str | None]
    if c is not None:
        who = (c.oid, c.author_name, c.author_email, c.date)
    elif tag is not None:
        who = (tag.oid, tag.tagger_name, tag.tagger_email, tag.date)
        location = first.location or ("file" if path is not None else "tag-message")
    else:
        who = (None, None, None, None)
    note = first.note
    if tag is not None:
        note = f"tag {tag.name}" + (f"; {note}" if note else "")
    return replace(first, path=path, fingerprint_path=path, occurrences=occurrences,
                   location=location, commit=who[0], author_name=who[1],
                   author_email=who[2], date=who[3], note=note)


def _neg(path: bytes) -> tuple[int, ...]:
    """Sorts paths descending, so that under ``max`` the first path in order wins."""
    return tuple(-b for b in path) + (1,)


def _result(repo: git.Repo, places: list[_Place], suppressed: int, batch: Batch,
            options: ScanOptions, started: float, commits: int,
            renamed: dict[bytes, str] | None = None) -> ScanResult:
    findings = _findings(places, renamed)
    findings, ignored = filter_findings(findings, options, [] if repo.bare else [repo.path])
    errors = sorted(batch.errors, key=lambda e: (e.message, e.path or ""))
    return ScanResult(findings, suppressed, batch.objects, batch.bytes,
                      time.perf_counter() - started, errors, ignored, commits)


Walked = list[tuple[int, git.Commit | None, list[git.Change]]]


def _walked(repo: str, rev_sets: Sequence[Sequence[str]], keep: set[str] | None = None,
            merges: dict[str, int] | None = None) -> Walked:
    """Commits of several walks, each once, numbered so that larger is older. With
    ``keep`` (object ids that hold a token), only commits that wrote one of them or
    whose message is one of them are kept. With ``merges``, merges are walked without
    their diffs, and their numbers are noted there instead."""
    walked: Walked = []
    seen: set[str] = set()
    order = 0
    for revs in rev_sets:
        for commit, changes in git.walk(repo, revs, keep=keep, merges=merges is None):
            order += 1
            if commit.oid in seen:
                continue
            seen.add(commit.oid)
            if merges is not None and len(commit.parents) > 1:
                merges[commit.oid] = order
            if keep is None or changes or commit.oid in keep:
                walked.append((order, commit, changes))
    return walked


def _history_walk(repo: str, keep: set[str], explained: set[str]) -> Walked:
    """Where the objects in ``keep`` were written, over all refs.

    Every blob of a reachable tree is written by some commit against its first parent;
    almost always by a commit with one parent, so the walk first skips the diffs of
    merges. Only a blob that no such commit wrote, nor a tag holds (``explained``: a
    token added by a merge itself, or an object no ref reaches) costs a second walk,
    over the merges alone.
    """
    merges: dict[str, int] = {}
    walked = _walked(repo, [["--all"]], keep=keep, merges=merges)
    written = {c.new_oid for _, _, changes in walked for c in changes}
    written.update(commit.oid for _, commit, _ in walked if commit)
    if keep - written - explained:
        for commit, changes in git.walk(repo, ["--all", "--merges"],
                                        keep=keep - written - explained):
            if changes:
                walked.append((merges.get(commit.oid, 0), commit, changes))
    return walked


def _named_tags(repo: str, rev_sets: Sequence[Sequence[str]]) -> list[tuple[str, str, str]]:
    """What the positive side of rev-list expressions names that is not a commit (an
    annotated tag, a tag of a blob or a tree), as (name, id, type); ``--all`` names
    every such ref. The walk peels a tag to its commit and drops the rest silently."""
    names: list[str] = []
    every = False
    for revs in rev_sets:
        negative = False
        for rev in revs:
            if rev == "--not":
                negative = not negative
            elif rev == "--all":
                every = every or not negative
            elif rev.startswith("-") or negative or rev.startswith("^"):
                continue
            elif "..." in rev:
                names += [r or "HEAD" for r in rev.split("...", 1)]
            elif ".." in rev:
                names.append(rev.split("..", 1)[1] or "HEAD")
            else:
                names.append(rev)
    names = list(dict.fromkeys(names))
    roots = [(name, *found) for name, found in zip(names, git.object_types(repo, names),
                                                    strict=True)
             if found is not None and found[1] != "commit"]
    if every:
        roots += git.tag_refs(repo)
    return list({(n, o, k): None for n, o, k in roots})


def _start(path: str) -> git.Repo:
    repo = git.open_repo(path)
    if repo.shallow:
        log.warning("shallow clone: scanned the commits present; history older than the clone's "
            "depth is not here (git fetch --unshallow, then scan again)")
    return repo


def scan_staged(path: str | os.PathLike[str], rules: list[Rule],
                options: ScanOptions | None = None) -> ScanResult:
    """What the next commit would add: the index against HEAD, or against the empty
    tree in a repository with no commit yet."""
    options = options or ScanOptions()
    started = time.perf_counter()
    repo = _start(os.fspath(path))
    if repo.bare:
        raise UsageError(f"{path}: --staged needs a work tree (this is a bare repository)")
    objects = _Objects(repo.path, rules)
    walked: Walked = [(0, None, git.staged(repo))]
    try:
        places, suppressed = _places(objects, walked, staged_parent=repo.head)
        _drop_inherited(objects, places, staged=True)
    finally:
        objects.close()
    named, renamed = _path_places(rules, walked)
    places += named
    # The identity the commit will carry is published with it: a token there is new.
    idents = identity_findings(Detector(rules), git.next_identities(repo.path))
    if idents:
        scanned = Scanned(idents)
        places.append(_Place(0, None, None, scanned, scanned.secrets))
    return _result(repo, places, suppressed, objects.batch, options, started, 0, renamed)


def scan_revs(path: str | os.PathLike[str], rev_sets: Sequence[Sequence[str]],
              rules: list[Rule], options: ScanOptions | None = None, *,
              executor: Executor | None = None) -> ScanResult:
    """The commits of one or more rev-list expressions (``A..B``, ``["X", "--not",
    "--remotes"]``, ``["TIP", "--not", "OLD_TIP"]`` for what is new since the tips
    already scanned), their changes and their messages."""
    options = options or ScanOptions()
    started = time.perf_counter()
    repo = _start(os.fspath(path))
    for revs in rev_sets:
        for rev in revs:
            if rev.startswith("-") and rev not in ("--not", "--remotes", "--all"):
                raise UsageError(f"not a revision: {rev}")
    objects = _Objects(repo.path, rules, options.jobs, executor, options.parallel_bytes)
    try:
        walked = _walked(repo.path, rev_sets)
        places, suppressed = _places(objects, walked)
        _drop_inherited(objects, places)
        places += _tag_places(objects, _named_tags(repo.path, rev_sets))[0]
    finally:
        objects.close()
    named, renamed = _path_places(rules, walked)
    commits = sum(1 for _, commit, _ in walked if commit)
    return _result(repo, places + named, suppressed, objects.batch, options, started,
                   commits, renamed)


def scan_history(path: str | os.PathLike[str], rules: list[Rule],
                 options: ScanOptions | None = None, *,
                 executor: Executor | None = None) -> ScanResult:
    """Every commit reachable from any ref (``--all``): blobs first, the walk only for
    the blobs and messages that hold a token."""
    options = options or ScanOptions()
    started = time.perf_counter()
    repo = _start(os.fspath(path))
    check = git.Connectivity.unless_closed(repo.path)
    try:
        objs = git.all_objects(repo.path)
        batch = scan_objects(repo.path, rules, objs, options.jobs, executor,
                             options.parallel_bytes)
    except BaseException:
        if check is not None:
            check.close()
        raise
    try:
        missing = check.result() if check is not None else []
    except GitError as exc:  # a tree it could not read: git names it
        missing = []
        said = str(exc).removeprefix("error: ").removeprefix("fatal: ")
        batch.errors.append(ScanIssue("git", f"cannot walk every reachable object: {said}; "
                                      "the scan is incomplete"))
    _unreadable(batch, [*objs.unreadable, *missing])
    if repo.head is None and not batch.objects:
        log.warning("the repository has no commits yet: nothing to scan")
    elif repo.head is not None:
        try:
            subs = git.gitlinks(repo.path, repo.head)
        except GitError:
            if not batch.errors:  # else already said: an object of HEAD is missing
                raise
            subs = []
        if subs:
            log.warning(f"skipped submodule{'s' if len(subs) > 1 else ''} (scan each in its "
                        "own repository): " + ", ".join(subs[:5])
                        + (" ..." if len(subs) > 5 else ""))
    objects = _Objects(repo.path, rules, batch=batch, complete=True)
    places: list[_Place] = []
    suppressed = 0
    renamed: dict[bytes, str] = {}
    if batch.hits:
        tagged, explained = _tag_places(objects, git.tag_refs(repo.path))
        walked = _history_walk(repo.path, set(batch.hits), explained)
        places, suppressed = _places(objects, walked, quiet=True)
        named, renamed = _path_places(rules, walked)
        places += named + tagged
    return _result(repo, places, suppressed, batch, options, started, objs.commits,
                   renamed)


def _unreadable(batch: Batch, oids: Sequence[str]) -> None:
    """Objects git lists but cannot give (missing, or corrupt) are errors, once each:
    a history scan that skipped one cannot say the history is clean."""
    named = {e.path for e in batch.errors}
    for oid in dict.fromkeys(oids):
        if oid not in named:
            batch.errors.append(ScanIssue("git", unreadable(oid), oid))


def new_since(tips: Sequence[str], scanned: Sequence[str]) -> list[list[str]]:
    """The rev-list expression for what is reachable from ``tips`` and not from the
    tips an earlier scan already covered (a scheduled sweep's increment)."""
    return [[*tips, "--not", *scanned]] if scanned else [list(tips)]


def push_revs(path: str, lines: Iterable[str], env: Mapping[str, str]) -> list[list[str]]:
    """What a push sends, as rev-list expressions.

    From the pre-commit framework: its from/to refs (a new branch whose root is being
    pushed comes with the local branch only). From git's pre-push hook: one line per
    ref, ``<local ref> <local sha> <remote ref> <remote sha>``; a deletion sends
    nothing; a new branch (remote sha all zeros), or one whose remote tip is unknown
    here, sends the commits that no remote-tracking ref has.
    """
    to = env.get("PRE_COMMIT_TO_REF") or env.get("PRE_COMMIT_SOURCE")
    if to:
        start = env.get("PRE_COMMIT_FROM_REF") or env.get("PRE_COMMIT_ORIGIN")
        return [[f"{start}..{to}"]] if start else [[to, "--not", "--remotes"]]
    if env.get("PRE_COMMIT_LOCAL_BRANCH") and env.get("PRE_COMMIT_REMOTE_NAME"):
        return [[env["PRE_COMMIT_LOCAL_BRANCH"], "--not", "--remotes"]]
    sets = []
    for line in lines:
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=3)
        if len(parts) != 4 or not all(_OID.fullmatch(p) for p in parts[1::2]):
            raise UsageError("pre-push: expected lines of '<local ref> <local sha> "
                             f"<remote ref> <remote sha>', got: {short(line, 80)}")
        _, local, _, remote = parts
        if git.is_zero(local):
            continue  # a deletion sends no commits
        if not git.is_zero(remote) and git.has_commit(path, remote):
            sets.append([f"{remote}..{local}"])
        else:
            sets.append([local, "--not", "--remotes"])
    return sets
