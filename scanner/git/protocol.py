"""The pre-push hook's input, read once: what a push sends (as rev-list expressions) and
the ref names it names (scanned too: names are pushed and published like content).

Two callers speak it: git's own pre-push hook (one line per ref on stdin, ``<local ref>
<local sha> <remote ref> <remote sha>``) and the pre-commit framework, which reads
those lines itself and passes refs in ``PRE_COMMIT_*`` variables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scanner.errors import UsageError, short
from scanner.git import plumbing as git

_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
#: The framework's variables that name a ref (scanned as names, like git's lines).
_REF_VARIABLES = ("PRE_COMMIT_LOCAL_BRANCH", "PRE_COMMIT_REMOTE_BRANCH")


@dataclass(frozen=True, slots=True)
class Push:
    rev_sets: list[list[str]]  # what the push sends; empty: nothing (deletions only)
    refs: list[bytes]  # every ref name it names, local and remote


def read_push(path: str, lines: Iterable[str], env: Mapping[str, str]) -> Push:
    """What a push sends and the refs it names, from git's lines and the framework's
    environment (each line split once, for both)."""
    given = [(line, line.rsplit(maxsplit=3)) for line in lines if line.strip()]
    refs = [part.encode("utf-8", "surrogateescape") for _, parts in given
            for part in parts[0::2] if part]
    refs += [env[name].encode("utf-8", "surrogateescape") for name in _REF_VARIABLES
             if env.get(name)]
    return Push(_rev_sets(path, given, env), refs)


def _rev_sets(path: str, given: list[tuple[str, list[str]]], env: Mapping[str, str]
              ) -> list[list[str]]:
    """What a push sends, as rev-list expressions.

    From the pre-commit framework: its from/to refs (a new branch whose root is being
    pushed comes with the local branch only). From git's pre-push hook: one line per
    ref; a deletion sends nothing; a new branch (remote sha all zeros), or one whose
    remote tip is unknown here, sends the commits that no remote-tracking ref has.
    """
    to = env.get("PRE_COMMIT_TO_REF") or env.get("PRE_COMMIT_SOURCE")
    if to:
        start = env.get("PRE_COMMIT_FROM_REF") or env.get("PRE_COMMIT_ORIGIN")
        return [[f"{start}..{to}"]] if start else [[to, "--not", "--remotes"]]
    if env.get("PRE_COMMIT_LOCAL_BRANCH") and env.get("PRE_COMMIT_REMOTE_NAME"):
        return [[env["PRE_COMMIT_LOCAL_BRANCH"], "--not", "--remotes"]]
    sets = []
    for line, parts in given:
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


def push_revs(path: str, lines: Iterable[str], env: Mapping[str, str]) -> list[list[str]]:
    """What a push sends (:func:`read_push` without the ref names)."""
    return read_push(path, lines, env).rev_sets
