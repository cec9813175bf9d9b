"""Which change wrote each object that holds a token: the walk of a history, a range or
the index, and what each change introduced.

Only what a change adds is a leak: a change introduces the tokens its new blob holds
and no version it replaced (nor, for a rename or copy, its source) held. A whole
history is walked only for the objects that hold a token, after every object was
scanned once (:mod:`scanner.git.scanning`); a range or the index is walked first and
its objects scanned as they are met. Three entry points, one per mode, each returning
an :class:`~scanner.git.attribution.Attribution`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from scanner.engine.detect import Detector
from scanner.engine.names import redact_name, scan_names
from scanner.engine.objects import Scanned, hit_findings, identity_findings
from scanner.git import commits as git_commits
from scanner.git import objects as git_objects
from scanner.git import plumbing as git
from scanner.git.attribution import Attribution, Place
from scanner.git.commits import Change, Commit
from scanner.git.scanning import ObjectScans
from scanner.rules import Rule

log = logging.getLogger(__name__)

Walked = list[tuple[int, Commit | None, list[Change]]]


def of_staged(objects: ObjectScans, repo: git.Repo) -> Attribution:
    """What the next commit would add: the index against HEAD (or the empty tree), the
    paths it adds, and the identity the commit will carry (published with it)."""
    walked: Walked = [(0, None, git_commits.staged(repo))]
    places, suppressed = places_of(objects, walked, staged_parent=repo.head)
    drop_inherited(objects, places, staged=True)
    named, renamed = path_places(objects.rules, walked)
    places += named
    idents = identity_findings(Detector(objects.rules), git.next_identities(repo.path))
    if idents:
        scanned = Scanned(idents)
        places.append(Place(0, None, None, scanned, scanned.secrets))
    return Attribution(places, suppressed, renamed, 0)


def of_revs(objects: ObjectScans, rev_sets: Sequence[Sequence[str]]) -> Attribution:
    """The commits of rev-list expressions, and the tags (or tagged blobs and trees)
    they name."""
    walked = _walked(objects.repo, rev_sets)
    places, suppressed = places_of(objects, walked)
    drop_inherited(objects, places)
    places += tag_places(objects, _named_tags(objects.repo, rev_sets))[0]
    named, renamed = path_places(objects.rules, walked)
    commits = sum(1 for _, commit, _ in walked if commit)
    return Attribution(places + named, suppressed, renamed, commits)


def of_history(objects: ObjectScans) -> Attribution:
    """Every ref, for the objects already found to hold a token (``objects`` is
    complete): where each was written, by a commit or a tag."""
    tagged, explained = tag_places(objects, git.tag_refs(objects.repo))
    walked = _history_walk(objects.repo, set(objects.batch.hits), explained)
    places, suppressed = places_of(objects, walked, quiet=True)
    named, renamed = path_places(objects.rules, walked)
    return Attribution(places + named + tagged, suppressed, renamed)


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
        for commit, changes in git_commits.walk(repo, revs, keep=keep, merges=merges is None):
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
        for commit, changes in git_commits.walk(repo, ["--all", "--merges"],
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
    roots = [(name, *found) for name, found in zip(names, git_objects.object_types(repo, names),
                                                    strict=True)
             if found is not None and found[1] != "commit"]
    if every:
        roots += git.tag_refs(repo)
    return list({(n, o, k): None for n, o, k in roots})


def _blob_change(change: Change) -> bool:
    return change.new_mode != git.GITLINK and not git.is_zero(change.new_oid)


def places_of(objects: ObjectScans, walked: Sequence[tuple[int, Commit | None,
            list[Change]]], *, quiet: bool = False, staged_parent: str | None = None
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
    parent was already looked at by :func:`places_of`).

    Costs nothing unless some file still introduces a token; then one diff per commit
    (or one for the index) with git's rename and copy detection names each file's
    source blob: renames with or without edits, copies from files the change touched,
    and exact copies of any file (:func:`scanner.git.commits.copied_from`). Looking
    through every blob of the parent tree instead would read 60 MB on git/git for each
    blocked commit.
    """
    files = [p for p in places if p.introduced and p.parents and p.path is not None]
    moves: dict[tuple[str, str | None], dict[bytes, str]] = {}
    for place in files:
        commit = None if staged or place.commit is None else place.commit.oid
        for par in place.parents:
            if (par, commit) not in moves:
                moves[par, commit] = git_commits.copied_from(objects.repo, par, commit)
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
    tags = git_objects.read_tags(objects.repo, [oid for _, oid, kind in roots if kind == "tag"])
    targets: list[tuple[bytes, str, git_objects.Tag | None]] = []  # (path, blob, tag)
    messages: list[git_objects.Tag] = []
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


def _other_parents(repo: str, hit: Sequence[tuple[int, Commit | None, Change]]
                   ) -> list[list[str | None]]:
    """For a merge, the blobs at the same path in its other parents: a token that one
    of them already had is merged, not introduced."""
    names = [f"{p}:".encode() + change.path
             for _, commit, change in hit if commit for p in commit.parents[1:]]
    ids = iter(git_objects.lookup(repo, names))
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
        scanned = Scanned(hit_findings(found[c.path], "path"))
        new = scanned.secrets - removed.get(commit.oid if commit else "", set()) \
            if c.status == "A" else set()
        places.append(Place(order, commit, c.path, scanned, new))
    return places, renamed
