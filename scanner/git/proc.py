"""How every git process is started: its environment, its error message, and (for the
pre-commit hook's fast path) a runner that needs nothing but ``os``; and the enclosing
work tree, found without starting git at all.

Nothing but ``os`` and :mod:`scanner.errors` (which imports nothing at load time):
:mod:`scanner.cli.fast_staged` answers a clean commit in about the time Python takes to
start, and ``subprocess`` alone costs it more than git does (26 ms of imports).
:mod:`scanner.git.plumbing` builds its ``subprocess`` runner on the same environment
and message.
"""

from __future__ import annotations

import os

from scanner.errors import short  # only __future__ at import: cheap

#: Never wait for a password prompt: a sweep runs from cron, a hook from an editor;
#: nobody is there to answer.
NO_PROMPT = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true",
             "GCM_INTERACTIVE": "never"}
#: Variables that point git at another repository than the folder it runs in (set while
#: a git hook runs, for one).
REPOSITORY_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR",
                  "GIT_OBJECT_DIRECTORY", "GIT_PREFIX")


def environment(*, own_repository: bool = False) -> dict[str, str]:
    """The environment of every git call: this process's, with prompts off. With
    ``own_repository``, git answers for the folder it is run in, whatever repository a
    surrounding hook points it at."""
    env = {**os.environ, **NO_PROMPT}
    if own_repository:
        for name in REPOSITORY_ENV:
            env.pop(name, None)
    return env


def message(stderr: bytes, fallback: str) -> str:
    """git's own complaint, one line: the ``fatal:``/``error:`` line if there is one."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            if "dubious ownership" in line:  # git's remedy is on lines we do not print
                return short(line, 200) + (" (another user owns it; if you trust it: git "
                                           "config --global --add safe.directory PATH)")
            return short(line, 240)
    return short(lines[0], 240) if lines else fallback


Started = tuple[int, int]


def start(repo: str, args: list[str], data: bytes = b"") -> Started:
    """Start ``git -C repo ARGS`` with ``data`` on stdin (it must fit in a pipe) and
    stderr to /dev/null: its pid and the read end of its stdout. posix_spawn and pipes,
    not subprocess, whose imports cost more than git takes."""
    out_r, out_w = os.pipe()
    in_r, in_w = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
               (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
    try:
        pid = os.posix_spawnp("git", ["git", "-C", repo, *args], environment(),
                              file_actions=actions)
    except BaseException:
        for fd in (out_r, out_w, in_r, in_w):
            os.close(fd)
        raise
    os.close(out_w)
    os.close(in_r)
    try:
        if data:
            os.write(in_w, data)
    finally:
        os.close(in_w)
    return pid, out_r


def collect(started: Started) -> tuple[int, bytes]:
    """All of a started git's stdout, then its exit status."""
    pid, out_r = started
    chunks = []
    with os.fdopen(out_r, "rb", buffering=0) as f:
        while chunk := f.read(1 << 20):
            chunks.append(chunk)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return status, b"".join(chunks)


def can_start() -> bool:
    """posix_spawn is there (not on Windows): else callers use :mod:`.plumbing`."""
    return hasattr(os, "posix_spawnp")


def top(directory: str) -> str | None:
    """The enclosing git work tree, found by looking for ``.git`` upwards (no subprocess:
    every file scan asks this, for its fingerprints)."""
    here = os.path.abspath(directory)
    while True:
        if os.path.exists(os.path.join(here, ".git")):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent
