"""Which paths git would ignore, for ``scan --respect-gitignore``.

By default every file is scanned, git-ignored ones included (``.env`` files are ignored
precisely because they hold secrets); this module only narrows a walk when asked to.

Inside a git work tree the answer comes from git itself, so it agrees with git by
construction: a child ``.gitignore``'s ``!keep.log`` re-including what a parent's
``*.log`` excluded, ``.git/info/exclude``, ``core.excludesFile``, tracked files that a
pattern would match (git never ignores those). One
``git ls-files --cached --others --exclude-standard -z`` per work tree lists every file
git would consider. It is one process per work tree and git prunes ignored directories
itself: about 10 ms on a 7,000-file tree. ``git check-ignore --stdin -z`` would need every
path fed to it, those in ignored directories included (``node_modules/``), and answers
them one by one: about 0.45 s on the same tree, so it is not used.

Outside a work tree, or where git cannot answer (not installed, a repository git
refuses as unsafe), ``.gitignore`` files are read with pathspec the way git reads them:
patterns are relative to their file's folder, the last matching pattern of a file wins,
the deepest file with a matching pattern decides, and nothing under an ignored directory
is looked at (the walk does not enter it).
"""

from __future__ import annotations

import os
from typing import Any

from scanner.git.plumbing import listing


class _GitListing:
    """Git's own list of the files it considers under one folder of a work tree."""

    __slots__ = ("prefix", "files", "dirs")

    def __init__(self, prefix: str, paths: list[str]) -> None:
        self.prefix = prefix  # the folder, relative to the scan root ("" or "a/b/")
        self.files = {p.rstrip("/") for p in paths}
        # A directory is walked when git lists something in it, or lists the directory
        # itself (an untracked nested repository, "sub/"; a submodule, "sub").
        self.dirs = set(self.files)
        for path in self.files:
            cut = path.rfind("/")
            while cut > 0 and path[:cut] not in self.dirs:
                self.dirs.add(path[:cut])
                cut = path.rfind("/", 0, cut)

    def decide(self, rel: str) -> bool | None:
        if rel.endswith("/"):
            return rel[:-1] not in self.dirs
        return rel not in self.files


class _IgnoreFile:
    """The patterns of one ``.gitignore`` file, for paths under its folder."""

    __slots__ = ("prefix", "spec")

    def __init__(self, prefix: str, spec: Any) -> None:
        self.prefix = prefix
        self.spec = spec

    def decide(self, rel: str) -> bool | None:
        """True: ignored, False: re-included (``!``), None: no pattern matches."""
        include: bool | None = self.spec.check_file(rel).include
        return include


_Rule = _GitListing | _IgnoreFile


class GitIgnore:
    """Answers "would git ignore this path?" for the paths one directory walk meets.

    The walk calls :meth:`enter` for each folder before asking about its entries, a
    parent before its children; paths are relative to the walk's root, with ``/``
    separators and a trailing ``/`` for a directory.
    """

    def __init__(self) -> None:
        # For each folder entered: the rules that judge its entries, deepest first.
        self._chains: dict[str, tuple[_Rule, ...]] = {}

    def enter(self, directory: str, rel: str) -> None:
        parent: tuple[_Rule, ...] = ()
        if rel:
            parent = self._chains.get(rel[: rel.rfind("/", 0, len(rel) - 1) + 1], ())
        if not rel or os.path.lexists(os.path.join(directory, ".git")):
            files = listing(directory)
            if files is not None:  # a work tree (or a part of one) git answers for
                self._chains[rel] = (_GitListing(rel, files),)
                return
        if parent and isinstance(parent[0], _GitListing):
            self._chains[rel] = parent  # git's list already covers this folder
            return
        own = _read_ignore_file(directory, rel)
        self._chains[rel] = parent if own is None else (own, *parent)

    def ignored(self, rel: str) -> bool:
        folder = rel[: rel.rfind("/", 0, len(rel) - 1) + 1]
        for rule in self._chains.get(folder, ()):
            decision = rule.decide(rel[len(rule.prefix):])
            if decision is not None:
                return decision
        return False


def _read_ignore_file(directory: str, rel: str) -> _IgnoreFile | None:
    try:
        with open(os.path.join(directory, ".gitignore"), encoding="utf-8",
                  errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    import pathspec

    try:
        return _IgnoreFile(rel, pathspec.GitIgnoreSpec.from_lines(lines))
    except Exception:  # pathspec raises several types; git skips a bad line, not the file
        good = [ln for ln in lines if _valid(pathspec, ln)]
        return _IgnoreFile(rel, pathspec.GitIgnoreSpec.from_lines(good))


def _valid(pathspec: Any, line: str) -> bool:
    try:
        pathspec.GitIgnoreSpec.from_lines([line])
    except Exception:
        return False
    return True
