"""Plain git hooks (for people without the pre-commit framework) and what a hook says
when it blocks.

A blocked commit or push is a moment to teach: the message names each place and the
redacted token, then the three ways out, in the order they matter.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Sequence

from scanner.atomic import write_atomic
from scanner.errors import UsageError
from scanner.finding import Finding
from scanner.git import plumbing as git
from scanner.report.text import ROTATE, where

#: Every hook this tool writes carries this line; a hook without it is someone else's.
MARKER = "# cendis-scan hook: installed by `cendis-scan install-hook`"
#: The managed folder's shims (:mod:`scanner.machine_hooks`) carry this line as well:
#: ``install-hook`` for one repository never writes over them.
GLOBAL_MARKER = "# cendis-scan machine hook: installed by `cendis-scan install-hook --global`"
_HOOK = """#!/bin/sh
{marker}
# {what} Delete this file to remove the hook.
# Already scanned by the machine-wide hook that chained to this one: nothing to add.
[ -n "${{CENDIS_SCAN_HOOK_DONE:-}}" ] && exit 0
CENDIS_SCAN={exe}
command -v "$CENDIS_SCAN" >/dev/null 2>&1 || CENDIS_SCAN=cendis-scan
exec "$CENDIS_SCAN" git {mode}
"""


def executable() -> str:
    """The cendis-scan running now, so the hook works outside this virtualenv too."""
    me = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(me).startswith("cendis-scan") and os.access(me, os.X_OK):
        return me
    return shutil.which("cendis-scan") or "cendis-scan"


def install_hook(repo: str, *, pre_push: bool = False, force: bool = False) -> str:
    """Write ``pre-commit`` (or ``pre-push``) where git looks for hooks: ``--git-path
    hooks`` follows ``core.hooksPath`` and, in a worktree, the common directory. A bare
    repository is refused: neither hook ever runs there."""
    name = "pre-push" if pre_push else "pre-commit"
    _, out = git.run(repo, ["rev-parse", "--is-bare-repository", "--git-path", "hooks"])
    bare, hooks_dir = out.decode("utf-8", "surrogateescape").splitlines()[:2]
    if bare == "true":
        raise UsageError(f"{repo}: a bare repository: no commit is made here and pushes "
                         f"arrive here (pre-receive), so a {name} hook would never run; "
                         "install it in the clone you commit and push from")
    hooks = os.path.join(repo, hooks_dir)
    path = os.path.normpath(os.path.join(hooks, name))
    if _has(path, GLOBAL_MARKER):  # the machine-wide folder: it chains to the repo's own
        _, common = git.run(repo, ["rev-parse", "--git-common-dir"])
        hooks = os.path.join(repo, common.decode("utf-8", "surrogateescape").strip(), "hooks")
        path = os.path.normpath(os.path.join(hooks, name))
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            theirs = MARKER not in f.read()
    except FileNotFoundError:
        theirs = False
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if theirs and not force:
        raise UsageError(f"{path} exists and was not written by cendis-scan; call it from "
                         "that hook, or replace it with --force")
    what = ("Blocks pushes of commits that add a Cendis token." if pre_push else
            "Blocks commits that add a Cendis token.")
    text = _HOOK.format(marker=MARKER, what=what, exe=shlex.quote(executable()),
                        mode="--pre-push" if pre_push else "--staged")
    text = with_lean_start(text)
    try:
        os.makedirs(hooks, exist_ok=True)
        write_atomic(path, text, mode=0o755)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return path


def _has(path: str, marker: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return marker in f.read()
    except OSError:
        return False


def uninstall_hook(repo: str, *, pre_push: bool = False) -> str | None:
    """Remove the hook ``install_hook`` wrote (the path removed; None: there was none of
    ours). A hook someone else wrote is never touched."""
    name = "pre-push" if pre_push else "pre-commit"
    _, out = git.run(repo, ["rev-parse", "--git-path", "hooks", "--git-common-dir"])
    hooks_dir, common = out.decode("utf-8", "surrogateescape").splitlines()[:2]
    for folder in (hooks_dir, os.path.join(common, "hooks")):
        path = os.path.normpath(os.path.join(repo, folder, name))
        if _has(path, MARKER) and not _has(path, GLOBAL_MARKER):
            try:
                os.unlink(path)
            except OSError as exc:
                raise UsageError(f"{path}: cannot remove: {exc.strerror or exc}") from None
            return path
    return None


def blocked_message(findings: Sequence[Finding], *, push: bool) -> str:
    """Where, what, and what to do: for stderr when a hook stops a commit or a push."""
    n = len(findings)
    what = "push" if push else "commit"
    lines = [f"cendis-scan: {what} blocked: {n} Cendis token{'s' if n != 1 else ''} "
             f"{'in the commits being pushed' if push else 'in the staged changes'}:"]
    lines += [f"  {where(f)}  {f.redacted}" for f in findings]
    if push:
        remove = ("Remove it from the commits (git rebase -i, or git commit --amend for the "
                  "last one): a later commit that deletes it still pushes the one that "
                  "added it")
    else:
        remove = "Remove it from the change (edit the file, then git add it again)"
    lines += [
        "What to do:",
        f"  1. {remove}; read the token from the environment (CENDIS_TOKEN) instead.",
        "  2. If it was ever pushed or shared anywhere, treat it as leaked and rotate it: "
        f"{ROTATE}.",
        "  3. If it is a deliberate test fixture, put the marker cendis-scan:allow on the "
        "same line.",
    ]
    return "\n".join(lines) + "\n"


#: How a hook's last line runs the console script (the lean start goes before it).
_CONSOLE_EXEC = 'exec "$CENDIS_SCAN" git '
#: The lean start's program: ``-c CODE FOLDER CONSOLE_SCRIPT git MODE``.
_LEAN_MAIN = ("import sys;sys.path.append(sys.argv.pop(1));del sys.argv[0];"
              "from scanner.cli import main;main()")


def lean_exec(mode: str) -> str:
    """The hook's first try: this interpreter run directly with ``-S`` and this
    package's folder on its path (after the standard library, where ``site`` puts it),
    so a commit pays neither for ``site`` (every ``.pth`` file of the environment) nor
    for the console script's ``import re``: a third of a clean hook's time (issue 20).
    The full scan, when it must run, loads ``site`` first (:func:`scanner.cli.dispatch`).
    ``-P``: nothing is imported from the repository being committed (the hook runs in
    its top folder). The console script's path stays ``sys.argv[0]``. When the
    interpreter or the package has moved, the hook goes on to the console script, as
    before."""
    python = os.path.abspath(sys.executable) if sys.executable else ""
    folder = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    init = os.path.join(folder, "scanner", "cli", "__init__.py")
    if not python or not os.path.isfile(init):
        return ""  # a zipped or frozen install: the console script only
    q = shlex.quote
    return (f"[ -x {q(python)} ] && [ -f {q(init)} ] && exec {q(python)} -S -P -c "
            f'{q(_LEAN_MAIN)} {q(folder)} "$CENDIS_SCAN" git {mode}\n')


def with_lean_start(hook: str) -> str:
    """``hook``, whose last line runs the console script (``exec "$CENDIS_SCAN" git
    MODE``), with :func:`lean_exec` tried first; any other script unchanged."""
    head, newline, last = hook.rstrip("\n").rpartition("\n")
    if not last.startswith(_CONSOLE_EXEC):
        return hook
    return f"{head}{newline}{lean_exec(last.removeprefix(_CONSOLE_EXEC))}{last}\n"
