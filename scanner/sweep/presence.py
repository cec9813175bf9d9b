"""Presence checks: after a repository is swept, is each open incident's token still at
the tip of its default branch (and at which paths), or which commit removed it?

Tokens are matched by their SHA-256 as the engine reports them, so a token that is
base64'd, gzipped or inside an archive is found as the scan found it (a plain
``git log -S`` would miss those). Two pieces of work, each as small as the change:

- **The tip.** What the default branch's tip holds is kept in the mirror beside the
  sweep state (:data:`STATE_FILE`: for each path holding a token, the token hashes;
  the path itself only as a hash and a scrubbed display form, never a raw name). A
  new tip is diffed against the one last checked (``diff-tree``), and only the blobs
  that changed are scanned; the first check scans the whole tip tree once.
- **The removal.** A token absent from the tip is looked for backwards along the
  default branch's first-parent history, one commit's raw diff at a time: the first
  commit (from the tip) whose replaced blobs held the token is the commit that removed
  it for good (the last removal, if it came and went). Only the replaced blobs of each
  commit are scanned. The walk is bounded (:data:`BUDGET` seconds, :data:`MAX_COMMITS`
  commits); past it, the row says the token is absent and that the removing commit was
  not found in time. A walk that reaches the first commit without finding it says the
  token was never on that branch (it was only on other branches).

A sweep where nothing moved costs one query (the repository's open incidents) and one
file read: every incident's row already names the current tip.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Protocol

from scanner.atomic import write_atomic
from scanner.errors import GitError
from scanner.git import plumbing
from scanner.git.commits import changes as raw_changes
from scanner.git.commits import walk
from scanner.git.scanning import ObjectScans
from scanner.incidents.store.presence import Presence, Target
from scanner.rules import Rule
from scanner.scrub import scrub

log = logging.getLogger(__name__)

STATE_FILE = "cendis-scan-presence.json"
#: Seconds one repository's removal search may take per sweep.
BUDGET = 30.0
#: Commits one removal search may walk back.
MAX_COMMITS = 20_000
#: Commits whose replaced blobs are scanned together.
WINDOW = 200
_BLOB_MODES = ("100644", "100755", "120000")


class PresenceBook(Protocol):
    """Where the answers go: the incident store (both backends implement it)."""

    def presence_targets(self, repository: str) -> list[Target]: ...
    def set_presence(self, incident_id: int, presence: Presence) -> bool: ...


@dataclass(slots=True)
class TipState:
    """What the default branch's tip held when last checked: path key -> (display
    path, token hashes). Only paths that hold a token are kept."""

    branch: str
    tip: str
    files: dict[str, tuple[str, list[str]]] = field(default_factory=dict)

    def where(self, sha256: str) -> list[str]:
        return sorted(shown for shown, hashes in self.files.values() if sha256 in hashes)


@dataclass(slots=True)
class Checked:
    """What one repository's check did, for the sweep's report."""

    checked: int = 0
    present: int = 0
    removed: int = 0
    unknown: int = 0
    changed: int = 0
    blobs: int = 0  # blobs scanned (tip and history)
    commits: int = 0  # commits walked back

    def to_dict(self) -> dict[str, int]:
        return {"checked": self.checked, "present": self.present, "removed": self.removed,
                "unknown": self.unknown, "changed": self.changed, "blobs": self.blobs,
                "commits": self.commits}


def _key(path: bytes) -> str:
    return hashlib.sha256(path).hexdigest()[:32]


def _shown(path: bytes) -> str:
    return scrub(plumbing.display(path), 500)


def load_state(mirror: Path) -> TipState | None:
    try:
        data = json.loads((mirror / STATE_FILE).read_text(encoding="utf-8"))
        return TipState(str(data["branch"]), str(data["tip"]),
                        {str(k): (str(v[0]), [str(h) for h in v[1]])
                         for k, v in data["files"].items()})
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None  # none yet, or damaged: the next check scans the whole tip


def save_state(mirror: Path, state: TipState) -> None:
    write_atomic(mirror / STATE_FILE, json.dumps(
        {"branch": state.branch, "tip": state.tip,
         "files": {k: [v[0], v[1]] for k, v in sorted(state.files.items())}}))


def _scan(scans: ObjectScans, oids: Sequence[str], stats: Checked) -> None:
    todo = [o for o in dict.fromkeys(oids) if o not in scans.seen]
    stats.blobs += len(todo)
    scans.ensure(todo)


def tip_state(repo: str, branch: str, tip: str, previous: TipState | None,
              scans: ObjectScans, stats: Checked) -> TipState:
    """The tokens at ``tip``: the previous state moved along the diff of what changed
    since its tip (only the changed blobs scanned), else the whole tree scanned."""
    if previous is not None and previous.tip == tip:
        return TipState(branch, tip, dict(previous.files))
    if previous is not None and plumbing.has_commit(repo, previous.tip):
        _, out = plumbing.run(repo, ["diff-tree", "-r", "-z", "--no-abbrev", "--no-renames",
                                     "--no-ext-diff", previous.tip, tip, "--"])
        changed = list(raw_changes(iter(out.split(b"\0"))))
        _scan(scans, [c.new_oid for c in changed if c.new_mode in _BLOB_MODES], stats)
        files = dict(previous.files)
        for change in changed:
            files.pop(_key(change.path), None)
            if change.new_mode in _BLOB_MODES:
                found = scans.secrets(change.new_oid)
                if found:
                    files[_key(change.path)] = (_shown(change.path), sorted(found))
        return TipState(branch, tip, files)
    blobs = plumbing.tree_blobs(repo, tip)
    _scan(scans, [oid for _, oid in blobs], stats)
    files = {}
    for path, oid in blobs:
        found = scans.secrets(oid)
        if found:
            files[_key(path)] = (_shown(path), sorted(found))
    return TipState(branch, tip, files)


def find_removals(repo: str, tip: str, wanted: set[str], scans: ObjectScans,
                  stats: Checked, *, budget: float = BUDGET, max_commits: int = MAX_COMMITS,
                  clock: Callable[[], float] = time.monotonic
                  ) -> tuple[dict[str, tuple[str, str]], str]:
    """For each token hash in ``wanted`` (all absent at ``tip``): the (commit, date)
    that removed it, walking back along the first parents. Also how the walk ended:
    ``done`` (all found), ``root`` (the history ended: the rest were never on this
    branch) or ``stopped`` (the budget or the commit limit came first).

    At a commit where the token is absent, its parent held it exactly when one of the
    blobs the commit replaced did (every other path is the same in both), so only the
    replaced blobs are scanned, :data:`WINDOW` commits' worth at a time (one scan each:
    a scan's set-up costs more than a small blob)."""
    found: dict[str, tuple[str, str]] = {}
    if not wanted:
        return found, "done"
    started = clock()
    commits = walk(repo, ["--first-parent", tip])
    try:
        while True:
            window = list(islice(commits, max(1, min(WINDOW, max_commits - stats.commits))))
            if not window:
                return found, "root"
            olds = [[c.old_oid for c in changed if c.old_mode in _BLOB_MODES
                     and not plumbing.is_zero(c.old_oid)] for _, changed in window]
            _scan(scans, [o for group in olds for o in group], stats)
            for (commit, _), group in zip(window, olds, strict=True):
                stats.commits += 1
                held = set().union(*(scans.secrets(o) for o in group)) if group else set()
                for sha in (wanted - found.keys()) & held:  # its parent held it
                    found[sha] = (commit.oid, commit.date)
                if len(found) == len(wanted):
                    return found, "done"
                if stats.commits >= max_commits or clock() - started > budget:
                    return found, "stopped"
    finally:
        close = getattr(commits, "close", None)
        if close is not None:
            close()  # stops the git log


def _commit_of(repo: str, ref: str, tips: dict[str, str]) -> str | None:
    if ref in tips:
        return tips[ref]
    status, out = plumbing.run(repo, ["rev-parse", "--verify", "-q", f"{ref}^{{commit}}"],
                               ok=(0, 1, 128))
    return out.decode().strip() or None if status == 0 else None


def check_presence(book: PresenceBook, repository: str, mirror: Path, rules: list[Rule],
                   *, branch: str | None, tips: dict[str, str], budget: float = BUDGET,
                   max_commits: int = MAX_COMMITS,
                   clock: Callable[[], float] = time.monotonic) -> Checked:
    """Check every open incident sighted in ``repository`` against the mirror's default
    branch (``branch``, a full ref; ``tips``: the refs the sweep just read) and keep
    what was found. Nothing moved: nothing read but the incidents."""
    stats = Checked()
    targets = book.presence_targets(repository)
    if not targets:
        return stats
    repo = str(mirror)
    tip = _commit_of(repo, branch, tips) if branch else None
    short = branch.removeprefix("refs/heads/") if branch else None
    if tip is None:  # not mirrored (a branch filter, an empty repository)
        why = (f"the default branch {short} is not in the mirror" if short else
               "the repository names no default branch")
        for target in targets:
            if target.checked and target.present is None and target.detail == why:
                continue
            stats.checked += 1
            stats.unknown += 1
            stats.changed += book.set_presence(target.incident_id, Presence(
                repository, None, short, None, detail=why))
        return stats
    todo = [t for t in targets if not (t.checked and t.tip == tip and t.ref == short)]
    if not todo:
        return stats  # the no-op sweep: every answer is about this very tip
    scans = ObjectScans(repo, rules)
    try:
        previous = load_state(mirror)
        state = tip_state(repo, branch or "", tip, previous, scans, stats)
        answers: dict[int, Presence] = {}
        search: list[Target] = []
        for target in todo:
            paths = state.where(target.sha256)
            if paths:
                answers[target.incident_id] = Presence(repository, True, short, tip,
                                                       tuple(paths))
            elif target.checked and target.present is False:
                answers[target.incident_id] = target.carried(Presence(
                    repository, False, short, tip))
            else:
                search.append(target)
        found, ended = find_removals(repo, tip, {t.sha256 for t in search}, scans, stats,
                                     budget=budget, max_commits=max_commits, clock=clock)
        for target in search:
            removed = found.get(target.sha256)
            if removed is not None:
                answers[target.incident_id] = Presence(repository, False, short, tip,
                                                       removed_in=removed[0],
                                                       removed_at=removed[1])
            else:
                why = (f"never on {short} (only on other branches)" if ended == "root" else
                       f"removed before {tip[:12]}; the removing commit was not found "
                       f"within {budget:g} s / {max_commits} commits")
                answers[target.incident_id] = Presence(repository, False, short, tip,
                                                       detail=why)
        for ident, presence in answers.items():
            stats.checked += 1
            if presence.present:
                stats.present += 1
            elif presence.removed_in:
                stats.removed += 1
            else:
                stats.unknown += 1
            stats.changed += book.set_presence(ident, presence)
        if previous is None or previous.tip != state.tip or previous.branch != state.branch:
            save_state(mirror, state)
    finally:
        scans.close()
    return stats


def presence_error(exc: BaseException) -> str:
    """One line for the sweep's row when a check failed (the sweep itself did not)."""
    reason = getattr(exc, "reason", "git" if isinstance(exc, GitError) else "internal")
    return f"presence {reason}: {scrub(str(exc) or type(exc).__name__, 200)}"


__all__ = ["BUDGET", "MAX_COMMITS", "Checked", "PresenceBook", "TipState",
           "check_presence", "find_removals", "presence_error", "tip_state"]
