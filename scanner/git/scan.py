"""The git entry points: staged changes, pushes, commit ranges and whole histories.

Only what a change adds is a leak. For each path a commit changed, the tokens it
introduced are those of the new blob less those of the version(s) it replaced; a
token is then reported once per scan, at the earliest commit that introduced it (the
last one in ``--topo-order``, so an ancestor always wins over its descendants), and
every other place that wrote it is counted in ``occurrences``. So a token that stays
in a file for 1,000 commits, a branch merged later, a renamed file or a later commit
that deletes the token never make a second finding.

A whole history is scanned blob-first: every unique blob is read and searched once
(:mod:`scanner.git.scanning`), and only when some blob or commit message holds a token
is the history walked (raw tree diffs, no patches) to find where it came in
(:mod:`scanner.git.history`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import Executor

from scanner.engine.detect import Detector
from scanner.engine.names import ref_findings
from scanner.engine.objects import Batch, unreadable
from scanner.errors import GitError, UsageError
from scanner.git import history
from scanner.git import objects as git_objects
from scanner.git import plumbing as git
from scanner.git.attribution import Attribution
from scanner.git.protocol import push_revs
from scanner.git.scanning import ObjectScans, scan_objects
from scanner.result import ScanIssue, ScanOptions, ScanResult
from scanner.rules import Rule
from scanner.suppress import filter_findings

__all__ = ["new_since", "push_revs", "scan_history", "scan_revs", "scan_staged"]

log = logging.getLogger(__name__)


def _result(repo: git.Repo, found: Attribution, batch: Batch, options: ScanOptions,
            started: float, refs: Sequence[bytes] = (), rules: Sequence[Rule] = ()
            ) -> ScanResult:
    findings = found.findings()
    if refs:  # ref names are pushed and published too
        findings += ref_findings(Detector(list(rules)), refs)
    findings, ignored = filter_findings(findings, options, [] if repo.bare else [repo.path])
    errors = sorted(batch.errors, key=lambda e: (e.message, e.path or ""))
    return ScanResult(findings, found.suppressed, batch.objects, batch.bytes,
                      time.perf_counter() - started, errors, ignored, found.commits)


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
    try:
        found = history.of_staged(objects, repo)
    finally:
        objects.close()
    return _result(repo, found, objects.batch, options, started)


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
        found = history.of_revs(objects, rev_sets)
    finally:
        objects.close()
    return _result(repo, found, objects.batch, options, started, refs, rules)


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
        objs = git_objects.all_objects(repo.path)
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
        _warn_submodules(repo, batch)
    found = Attribution([])
    if batch.hits:
        found = history.of_history(ObjectScans(repo.path, rules, batch=batch, complete=True))
    found.commits = objs.commits
    return _result(repo, found, batch, options, started, git.ref_names(repo.path), rules)


def _warn_submodules(repo: git.Repo, batch: Batch) -> None:
    """A whole-history scan reads this repository's objects only: say which submodules
    (of HEAD) it did not look into."""
    assert repo.head is not None
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
