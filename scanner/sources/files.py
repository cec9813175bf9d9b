"""Files and directories: which files a scan reads, and where each one comes from.

Every file is looked at, dotfiles and git-ignored ones included (``.env`` files are
ignored by git precisely because they hold secrets), but never anything inside
``.git/``. This module only walks and names: it yields an
:class:`~scanner.sources.origin.Origin` per file, and the engine reads it. One
unreadable directory or file is an error for it alone: it is reported and the scan
goes on.

Anything that is not a regular file (a FIFO, a device, a socket) could block or never
end: inside a directory it is skipped and counted; named on the command line it is read
as a stream, in the calling process (see :attr:`Origin.local`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from scanner.errors import ConfigError
from scanner.finding import SourceKind
from scanner.git.proc import top as git_top
from scanner.result import ScanIssue
from scanner.sources.origin import Origin

if TYPE_CHECKING:
    from scanner.sources.ignore import GitIgnore


def _display(path: str) -> str:
    return path[2:] if path.startswith("./") else path


def fingerprint_root(root: str) -> str:
    """Fingerprints name paths relative to the git work tree, so they stay the same
    whichever folder a scan starts from; outside git, relative to the scan root."""
    absolute = os.path.abspath(root)
    base = absolute if os.path.isdir(absolute) else os.path.dirname(absolute)
    return git_top(base) or base


def _matcher(patterns: list[str]) -> Any:
    import pathspec

    try:
        return pathspec.GitIgnoreSpec.from_lines(patterns)
    except Exception as exc:  # pathspec raises several types for a bad pattern
        raise ConfigError(f"bad --exclude pattern: {exc}") from None


Names = list[tuple[str, str]]


def walk(roots: list[str], excludes: list[str] | tuple[str, ...], respect_gitignore: bool,
         errors: list[ScanIssue], skipped: list[str] | None = None,
         names: Names | None = None) -> Iterator[Origin]:
    """An origin for every file under ``roots``, in path order; problems go to
    ``errors``, and the FIFOs, devices and sockets met inside directories to
    ``skipped``. ``names`` receives (display path, fingerprint path) of every entry the
    walk saw, directories and special files included, and of each component of the
    roots themselves: names are scanned as content."""
    exclude = _matcher(list(excludes)) if excludes else None
    skipped = [] if skipped is None else skipped
    for root in roots:
        try:
            st = os.stat(root)
        except OSError as exc:
            errors.append(ScanIssue("io", f"{root}: {exc.strerror or exc}", root))
            continue
        fp_root = fingerprint_root(root)
        if names is not None:
            names += _root_names(root, fp_root)
        if not stat.S_ISDIR(st.st_mode):
            rel = os.path.relpath(os.path.abspath(root), fp_root)
            local = not stat.S_ISREG(st.st_mode) or _process_private(root)
            yield _origin(_display(root), root, rel.replace(os.sep, "/"), st.st_size, local)
            continue
        fp_prefix = os.path.relpath(os.path.abspath(root), fp_root).replace(os.sep, "/")
        fp_prefix = "" if fp_prefix == "." else fp_prefix + "/"
        walker = _Walker(exclude, _git_ignore() if respect_gitignore else None, errors, skipped,
                         names, fp_prefix)
        for full, rel, size in walker.files(root):
            yield _origin(_display(full), full, fp_prefix + rel, size)


def _root_names(root: str, fp_root: str) -> Names:
    """Each leading part of a root as given (``a``, ``a/b``, ``a/b/c`` for ``a/b/c``)."""
    out = []
    parts = root.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        if parts[i - 1] in ("", ".", ".."):
            continue
        rel = os.path.relpath(os.path.abspath(prefix), fp_root).replace(os.sep, "/")
        out.append((_display(prefix), rel))
    return out


def _process_private(path: str) -> bool:
    """A name that means something else in another process: /dev/stdin, /dev/fd/N,
    /proc/self/fd/N (a worker has its own file descriptors)."""
    absolute = os.path.abspath(path)
    return (absolute.startswith(("/dev/", "/proc/"))
            or os.path.realpath(path).startswith("/proc/"))


def _origin(path: str, fs_path: str, fingerprint_path: str, size: int,
            local: bool = False) -> Origin:
    return Origin(path, fingerprint_path, SourceKind.FILE, size, fs_path, local=local)


def _error(path: str, message: str | None) -> ScanIssue:
    """An error for one path; a path too long to read (a tree deeper than PATH_MAX)
    loses its middle in the message, so the reason still fits on the line."""
    shown = _display(path)
    short = shown if len(shown) <= 240 else f"{shown[:120]}…{shown[-100:]}"
    return ScanIssue("io", f"{short}: {message}", shown)


class _Walker:
    """A sorted, depth-first walk with os.scandir: relative paths are built by string
    concatenation (``os.path.relpath`` per file cost a third of a tree scan). It keeps
    its own stack instead of recursing, so no depth of directories can exhaust
    Python's recursion limit."""

    def __init__(self, exclude: Any, ignores: GitIgnore | None, errors: list[ScanIssue],
                 skipped: list[str], names: Names | None = None, fp_prefix: str = ""):
        self.exclude = exclude
        self.ignores = ignores
        self.errors = errors
        self.skipped = skipped
        self.names = names
        self.fp_prefix = fp_prefix  # prepended to relative paths for fingerprints

    def files(self, top: str) -> Iterator[tuple[str, str, int]]:
        # Each stack entry: a directory's sorted entries still to visit (reversed, so
        # pop() takes the next name) and its relative path. A subdirectory is opened
        # when reached, so the order is the same as the recursive walk's.
        stack = [(self._entries(top, ""), "")]
        while stack:
            pending, rel = stack[-1]
            if not pending:
                stack.pop()
                continue
            entry = pending.pop()
            name = entry.name
            full = entry.path
            path = rel + name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                if name == ".git" or self._skipped(path + "/"):
                    continue
                if self.names is not None:
                    self.names.append((_display(full), self.fp_prefix + path))
                stack.append((self._entries(full, path + "/"), path + "/"))
                continue
            if self._skipped(path):
                continue
            if self.names is not None:
                self.names.append((_display(full), self.fp_prefix + path))
            try:
                st = entry.stat()
            except OSError as exc:
                reason = "broken symlink" if entry.is_symlink() else exc.strerror
                self.errors.append(_error(full, reason))
                continue
            if stat.S_ISREG(st.st_mode):
                yield full, path, st.st_size
            elif not stat.S_ISDIR(st.st_mode):  # a FIFO, socket or device (a linked
                self.skipped.append(_display(full))  # directory is not followed)

    def _entries(self, directory: str, rel: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name, reverse=True)
        except OSError as exc:
            self.errors.append(_error(directory, exc.strerror or str(exc)))
            return []
        if self.ignores is not None:
            self.ignores.enter(directory, rel)
        return entries

    def _skipped(self, rel: str) -> bool:
        if self.exclude is not None and self.exclude.match_file(rel):
            return True
        return self.ignores is not None and self.ignores.ignored(rel)


def _git_ignore() -> GitIgnore:
    """Imported only for --respect-gitignore: the hook path never pays for it."""
    from scanner.sources.ignore import GitIgnore

    return GitIgnore()
