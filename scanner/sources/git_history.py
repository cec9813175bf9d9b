"""Where in a history each token came in: the places (a commit and a path, a message,
a tag, a path name) that wrote a token, what each one introduced, and the one finding
per token that results.

Only what a change adds is a leak: a place introduces the tokens its new blob holds and
no version it replaced (nor, for a rename or copy, its source) held. A token is then
reported once, at the earliest place that introduced it, and every place that wrote it
is counted in ``occurrences``. :mod:`scanner.gitscan` walks the history and calls this.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

from scanner.engine.detect import Detector
from scanner.engine.names import redact_name, scan_names
from scanner.finding import Finding, SourceKind
from scanner.result import PARALLEL_BYTES
from scanner.rules import Rule
from scanner.sources import git
from scanner.sources.git_objects import Batch, CatFile, Scanned, scan_objects

log = logging.getLogger("cendis_scan")

Walked = list[tuple[int, git.Commit | None, list[git.Change]]]

#: From this many objects on, a range's blobs are read by worker processes.
MANY = 2000


@dataclass(slots=True)
class Place:
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
class ObjectScans:
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


def places_of(objects: ObjectScans, walked: Sequence[tuple[int, git.Commit | None,
            list[git.Change]]], *, quiet: bool = False, staged_parent: str | None = None
            ) -> tuple[list[Place], int]:
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
    places: list[Place] = []
    suppressed: dict[str, int] = {}
    staged = (staged_parent,) if staged_parent else ()
    for (order, commit, change), parents in zip(hit, others, strict=True):
        new = objects.get(change.new_oid)
        assert new is not None
        old_ids = [change.old_oid, *parents]
        before = set().union(*(objects.secrets(o) for o in old_ids))
        places.append(Place(order, commit, change.path, new, new.secrets - before,
                             parents=commit.parents if commit else staged))
        olds = [objects.get(o) for o in old_ids]
        added = new.suppressed - max((o.suppressed for o in olds if o), default=0)
        suppressed[change.new_oid] = max(added, suppressed.get(change.new_oid, 0))
    for order, commit, _ in walked:
        message = objects.get(commit.oid) if commit else None
        if commit is not None and message is not None:
            places.append(Place(order, commit, None, message, message.secrets,
                                 parents=commit.parents))
            suppressed[commit.oid] = message.suppressed
    return places, sum(suppressed.values())


def drop_inherited(objects: ObjectScans, places: list[Place], staged: bool = False) -> None:
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


def tag_places(objects: ObjectScans, roots: Sequence[tuple[str, str, str]]
                ) -> tuple[list[Place], set[str]]:
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
            places.append(Place(-1, None, None, found, found.secrets, tag=tag))
    for path, blob, tag in targets:
        found = objects.get(blob)
        if found is not None:
            places.append(Place(-1, None, path, found, found.secrets, tag=tag))
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


def path_places(rules: list[Rule], walked: Walked) -> tuple[list[Place], dict[bytes, str]]:
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
        places.append(Place(order, commit, c.path, scanned, new))
    return places, renamed


def findings_of(places: list[Place], renamed: dict[bytes, str] | None = None
              ) -> list[Finding]:
    """One finding per secret, at its earliest introduction; ``occurrences`` counts
    every place (commit and path, or message) that wrote it. Oldest first; within one
    place, in the order of the text (never in the order of a set: the output is the
    same whatever the hash seed)."""
    count: dict[str, set[tuple[str, bytes | None]]] = {}
    best: dict[str, tuple[tuple[int, bool, tuple[int, ...]], Place]] = {}
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


def _owner(place: Place) -> str:
    if place.commit is not None:
        return place.commit.oid
    return place.tag.oid if place.tag is not None else ""


def _located(first: Finding, place: Place, occurrences: int, renamed: dict[bytes, str]
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
