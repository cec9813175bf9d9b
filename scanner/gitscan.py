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

from scanner.engine.detect import Detector
from scanner.engine.names import ref_findings
from scanner.errors import GitError, UsageError, short
from scanner.result import ScanIssue, ScanOptions, ScanResult
from scanner.rules import Rule
from scanner.sources import git
from scanner.sources.git_history import (
    ObjectScans,
    Place,
    Walked,
    drop_inherited,
    findings_of,
    path_places,
    places_of,
    tag_places,
)
from scanner.sources.git_objects import (
    Batch,
    Scanned,
    identity_findings,
    scan_objects,
    unreadable,
)
from scanner.suppress import filter_findings

log = logging.getLogger("cendis_scan")
_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
def _result(repo: git.Repo, places: list[Place], suppressed: int, batch: Batch,
            options: ScanOptions, started: float, commits: int,
            renamed: dict[bytes, str] | None = None, refs: Sequence[bytes] = (),
            rules: Sequence[Rule] = ()) -> ScanResult:
    findings = findings_of(places, renamed)
    if refs:  # ref names are pushed and published too
        findings += ref_findings(Detector(list(rules)), refs)
    findings, ignored = filter_findings(findings, options, [] if repo.bare else [repo.path])
    errors = sorted(batch.errors, key=lambda e: (e.message, e.path or ""))
    return ScanResult(findings, suppressed, batch.objects, batch.bytes,
                      time.perf_counter() - started, errors, ignored, commits)


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
    objects = ObjectScans(repo.path, rules)
    walked: Walked = [(0, None, git.staged(repo))]
    try:
        places, suppressed = places_of(objects, walked, staged_parent=repo.head)
        drop_inherited(objects, places, staged=True)
    finally:
        objects.close()
    named, renamed = path_places(rules, walked)
    places += named
    # The identity the commit will carry is published with it: a token there is new.
    idents = identity_findings(Detector(rules), git.next_identities(repo.path))
    if idents:
        scanned = Scanned(idents)
        places.append(Place(0, None, None, scanned, scanned.secrets))
    return _result(repo, places, suppressed, objects.batch, options, started, 0, renamed)


def scan_revs(path: str | os.PathLike[str], rev_sets: Sequence[Sequence[str]],
              rules: list[Rule], options: ScanOptions | None = None, *,
              executor: Executor | None = None, refs: Sequence[bytes] = ()) -> ScanResult:
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
    objects = ObjectScans(repo.path, rules, options.jobs, executor, options.parallel_bytes)
    try:
        walked = _walked(repo.path, rev_sets)
        places, suppressed = places_of(objects, walked)
        drop_inherited(objects, places)
        places += tag_places(objects, _named_tags(repo.path, rev_sets))[0]
    finally:
        objects.close()
    named, renamed = path_places(rules, walked)
    commits = sum(1 for _, commit, _ in walked if commit)
    return _result(repo, places + named, suppressed, objects.batch, options, started,
                   commits, renamed, refs, rules)


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
    objects = ObjectScans(repo.path, rules, batch=batch, complete=True)
    places: list[Place] = []
    suppressed = 0
    renamed: dict[bytes, str] = {}
    if batch.hits:
        tagged, explained = tag_places(objects, git.tag_refs(repo.path))
        walked = _history_walk(repo.path, set(batch.hits), explained)
        places, suppressed = places_of(objects, walked, quiet=True)
        named, renamed = path_places(rules, walked)
        places += named + tagged
    return _result(repo, places, suppressed, batch, options, started, objs.commits,
                   renamed, git.ref_names(repo.path), rules)


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
