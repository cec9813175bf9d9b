"""Hooks for a whole machine: ``install-hook --global`` and ``--template``, and their
``uninstall-hook``.

``--global`` points git's global ``core.hooksPath`` at a folder we manage
(``$XDG_CONFIG_HOME/cendis-scan/hooks``). git then looks for *every* hook there and no
longer in a repository's ``.git/hooks``, so the folder holds a small shim for every hook
git runs on a developer's machine: ``pre-commit`` and ``pre-push`` run cendis-scan first,
and each shim then runs what git would have run without us (the previous global
``core.hooksPath``'s hook if there was one, else the repository's own
``$GIT_COMMON_DIR/hooks/NAME``: the pre-commit framework's, husky v4's, a hand-written
one), with the same arguments and the same stdin (buffered once, given to both).

``--template`` writes the two hooks into git's ``init.templateDir`` (a folder of ours
when unset), so every ``git init`` and ``git clone`` copies them; a hook already there
is kept beside ours (``NAME.before-cendis-scan``) and run after the scan.

What was there before is remembered in ``$XDG_CONFIG_HOME/cendis-scan/state.json`` so
``uninstall-hook`` puts it back exactly. Every function returns the list of changes it
made (empty: nothing to change), so running it twice is harmless and says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from scanner.atomic import write_atomic
from scanner.errors import GitError, UsageError
from scanner.git import plumbing as git
from scanner.hooks import GLOBAL_MARKER, MARKER, executable

TEMPLATE_MARKER = ("# cendis-scan template hook: installed by "
                   "`cendis-scan install-hook --template`")
#: A hook that was in the template folder before ours is kept under this suffix.
BACKUP = ".before-cendis-scan"
#: Which hooks scan, and how.
SCANS = {"pre-commit": "--staged", "pre-push": "--pre-push"}
#: Every hook git runs from the hooks folder, except those whose mere presence changes
#: git's behaviour (push-to-checkout, proc-receive) or that are configured by path
#: (fsmonitor-watchman): a shim for them would not be transparent.
HOOKS = ("applypatch-msg", "pre-applypatch", "post-applypatch", "pre-commit",
         "pre-merge-commit", "prepare-commit-msg", "commit-msg", "post-commit",
         "pre-rebase", "post-checkout", "post-merge", "pre-push", "pre-receive", "update",
         "post-receive", "post-update", "reference-transaction", "pre-auto-gc",
         "post-rewrite", "sendemail-validate", "post-index-change")
#: Hooks git feeds on stdin: the shim keeps a copy so the chained hook reads it too.
STDIN_HOOKS = frozenset({"pre-push", "pre-receive", "post-receive", "post-rewrite",
                         "reference-transaction"})


@dataclass(frozen=True, slots=True)
class Places:
    """Where this user's managed files live, from the environment given (HOME and
    XDG_CONFIG_HOME), so tests point them at a temporary folder."""

    root: str

    @classmethod
    def of(cls, env: Mapping[str, str]) -> Places:
        home = env.get("HOME") or os.path.expanduser("~")
        config = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        return cls(os.path.join(config, "cendis-scan"))

    @property
    def hooks(self) -> str:
        return os.path.join(self.root, "hooks")

    @property
    def template(self) -> str:
        return os.path.join(self.root, "template")

    @property
    def state(self) -> str:
        return os.path.join(self.root, "state.json")


# ------------------------------------------------------------------------ the shims


def _scan_lines(name: str) -> str:
    mode = SCANS.get(name)
    if mode is None:
        return ""
    stdin = ' <"$input"' if name in STDIN_HOOKS else ""
    return (f'CENDIS_SCAN={shlex.quote(executable())}\n'
            'command -v "$CENDIS_SCAN" >/dev/null 2>&1 || CENDIS_SCAN=cendis-scan\n'
            'if [ -z "${CENDIS_SCAN_HOOK_DONE:-}" ]; then\n'
            f'  "$CENDIS_SCAN" git {mode}{stdin} || exit $?\n'
            '  CENDIS_SCAN_HOOK_DONE=1; export CENDIS_SCAN_HOOK_DONE\n'
            'fi\n')


def _run_chained(name: str) -> str:
    """Run ``$next`` (when it is an executable other than this file) with our arguments
    and stdin; its status is the hook's."""
    if name in STDIN_HOOKS:
        return ('[ -n "$next" ] && [ -x "$next" ] && ! [ "$next" -ef "$0" ] || exit 0\n'
                '"$next" "$@" <"$input"\n')
    return ('[ -n "$next" ] && [ -x "$next" ] && ! [ "$next" -ef "$0" ] || exit 0\n'
            'exec "$next" "$@"\n')


def _stdin_lines(name: str) -> str:
    if name not in STDIN_HOOKS:
        return ""
    return ('input=$(mktemp "${TMPDIR:-/tmp}/cendis-scan-hook.XXXXXX") || exit 1\n'
            'trap \'rm -f "$input"\' EXIT\n'
            'cat >"$input" || exit 1\n')


def global_shim(name: str, previous: str | None) -> str:
    """The managed folder's hook ``name``: scan (pre-commit, pre-push), then what git
    would have run without us. ``previous``: the global core.hooksPath before ours."""
    if previous:
        find = f"next={shlex.quote(previous)}/{name}\n"
    else:  # the repository's own hooks folder (shared by its worktrees)
        find = ('common=$(git rev-parse --git-common-dir 2>/dev/null) || exit 0\n'
                f'next="$common/hooks/{name}"\n')
    what = ("Runs cendis-scan, then " if name in SCANS else "Runs ") + (
        "the previous global hook." if previous else "this repository's own hook.")
    return (f"#!/bin/sh\n{MARKER}\n{GLOBAL_MARKER}\n# {what} Remove with "
            "`cendis-scan uninstall-hook --global`.\n"
            + _stdin_lines(name) + _scan_lines(name) + find + _run_chained(name))


def template_hook(name: str) -> str:
    """A template folder's hook ``name``: scan, then the hook that was there before
    ours (kept beside it, copied into each new repository with it)."""
    return (f"#!/bin/sh\n{MARKER}\n{TEMPLATE_MARKER}\n# Copied into new repositories by "
            "git init/clone. Remove with `cendis-scan uninstall-hook --template`.\n"
            + _stdin_lines(name) + _scan_lines(name)
            + f'next="$(dirname "$0")/{name}{BACKUP}"\n' + _run_chained(name))


# ------------------------------------------------------------------ git config, state


def _config(args: list[str]) -> list[str]:
    """``git config --global ARGS``: the values (none when unset). git finds the global
    file from this process's environment (HOME, XDG_CONFIG_HOME, GIT_CONFIG_GLOBAL)."""
    home = os.environ.get("HOME") or "/"
    status, out = git.run(home if os.path.isdir(home) else "/",
                          ["config", "--global", *args], ok=(0, 1, 5), own_repository=True)
    if status != 0:
        return []
    return [v for v in out.decode("utf-8", "surrogateescape").split("\n") if v]


def global_value(key: str, *, path: bool = False) -> list[str]:
    """Every value of ``key`` in the global git config (``path``: ``~`` expanded)."""
    return _config([*(["--type=path"] if path else []), "--get-all", key])


def _set_global(key: str, values: list[str]) -> None:
    if global_value(key):
        _config(["--unset-all", key])
    for value in values:
        _config(["--add", key, value])
    section = key.split(".", 1)[0]
    if not values and not _config(["--get-regexp", rf"^{section}\."]):
        # The empty [core] our set left behind (newer gits remove it themselves).
        with contextlib.suppress(GitError):
            _config(["--remove-section", section])


def _load_state(places: Places) -> dict[str, object]:
    try:
        with open(places.state, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"{places.state}: cannot read: {exc}") from None
    return data if isinstance(data, dict) else {}


def _save_state(places: Places, state: dict[str, object]) -> None:
    os.makedirs(places.root, exist_ok=True)
    if state:
        write_atomic(places.state, json.dumps(state, indent=2, sort_keys=True) + "\n")
    elif os.path.exists(places.state):
        os.unlink(places.state)


def _write(path: str, text: str, changes: list[str]) -> None:
    """Write a hook unless it already says exactly this (then it is not a change)."""
    try:
        with open(path, encoding="utf-8") as f:
            same = f.read() == text and os.access(path, os.X_OK)
    except OSError:
        same = False
    if same:
        return
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, text, mode=0o755)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write: {exc.strerror or exc}") from None
    changes.append(f"wrote {path}")


def _ours(path: str, marker: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return marker in f.read()
    except OSError:
        return False


def _same_dir(a: str, b: str) -> bool:
    return os.path.realpath(os.path.expanduser(a)) == os.path.realpath(b)


# ---------------------------------------------------------------------- --global


def install_global(env: Mapping[str, str]) -> list[str]:
    """Write the managed folder and point the global core.hooksPath at it."""
    places = Places.of(env)
    state = _load_state(places)
    current = global_value("core.hooksPath")
    changes: list[str] = []
    ours = len(current) == 1 and _same_dir(current[0], places.hooks)
    if ours:  # a second run: what was there before is in the state already
        chain = state.get("previous_chain")
        chain = chain if isinstance(chain, str) else None
    else:
        expanded = global_value("core.hooksPath", path=True)
        chain = expanded[-1] if expanded else None
        if chain and _same_dir(chain, places.hooks):
            chain = None
        state["previous_hooks_path"] = current or None
        state["previous_chain"] = chain
    wrote: list[str] = []
    for name in HOOKS:
        _write(os.path.join(places.hooks, name), global_shim(name, chain), wrote)
    if wrote:
        then = f"{chain}/NAME" if chain else "the repository's own hook"
        changes.append(f"wrote {len(wrote)} hooks in {places.hooks} (pre-commit and "
                       f"pre-push scan; each then runs {then})")
    if not ours:
        _save_state(places, state)
        _set_global("core.hooksPath", [places.hooks])
        was = (f" (was {', '.join(current)}; its hooks still run after the scan)"
               if current else "")
        changes.append(f"set git config --global core.hooksPath {places.hooks}{was}")
    return changes


def uninstall_global(env: Mapping[str, str]) -> list[str]:
    """Put the previous global core.hooksPath back (or unset it) and remove our shims."""
    places = Places.of(env)
    state = _load_state(places)
    current = global_value("core.hooksPath")
    changes: list[str] = []
    previous = state.get("previous_hooks_path")
    prev_list = [str(v) for v in previous] if isinstance(previous, list) else []
    if len(current) == 1 and _same_dir(current[0], places.hooks):
        _set_global("core.hooksPath", prev_list)
        changes.append(f"restored git config --global core.hooksPath {prev_list[-1]}"
                       if prev_list else "unset git config --global core.hooksPath")
    elif current and "previous_hooks_path" in state:
        changes.append(f"left git config --global core.hooksPath {current[-1]} as it is "
                       "(changed since install-hook --global)")
    removed = 0
    for name in HOOKS:
        path = os.path.join(places.hooks, name)
        if _ours(path, GLOBAL_MARKER):
            os.unlink(path)
            removed += 1
    if removed:
        changes.append(f"removed {removed} hooks from {places.hooks}")
    _remove_empty(places.hooks)
    for key in ("previous_hooks_path", "previous_chain"):
        state.pop(key, None)
    _save_state(places, state)
    return changes


def _remove_empty(folder: str) -> None:
    with contextlib.suppress(OSError):  # not empty (someone's files): kept
        os.rmdir(folder)


def global_active(env: Mapping[str, str]) -> bool:
    """The global core.hooksPath is our managed folder."""
    current = global_value("core.hooksPath")
    return len(current) == 1 and _same_dir(current[0], Places.of(env).hooks)


# ---------------------------------------------------------------------- --template


def install_template(env: Mapping[str, str]) -> list[str]:
    """Put pre-commit and pre-push into git's init.templateDir (ours when unset)."""
    places = Places.of(env)
    state = _load_state(places)
    changes: list[str] = []
    configured = global_value("init.templateDir", path=True)
    if configured:
        folder = configured[-1]
    else:
        folder = places.template
        state["template_dir_set"] = True
    hooks = os.path.join(folder, "hooks")
    kept = state.get("template_backups")
    backups = [str(b) for b in kept] if isinstance(kept, list) else []
    for name in SCANS:
        path = os.path.join(hooks, name)
        if os.path.lexists(path) and not _ours(path, TEMPLATE_MARKER):
            backup = path + BACKUP
            if os.path.lexists(backup):
                raise UsageError(f"{path} is not ours and {backup} already exists: move "
                                 "one of them away first")
            try:
                os.replace(path, backup)
            except OSError as exc:
                raise UsageError(f"{path}: cannot move aside: {exc.strerror}") from None
            backups.append(backup)
            changes.append(f"kept {path} as {backup} (it runs after the scan)")
        _write(path, template_hook(name), changes)
    state["template_backups"] = sorted(set(backups))
    state["template_dir"] = folder
    if not configured:
        _set_global("init.templateDir", [folder])
        changes.append(f"set git config --global init.templateDir {folder}")
    if changes:
        _save_state(places, state)
    return changes


def uninstall_template(env: Mapping[str, str]) -> list[str]:
    """Remove our template hooks, put back the ones they replaced, and unset
    init.templateDir if we set it (and nobody changed it since)."""
    places = Places.of(env)
    state = _load_state(places)
    changes: list[str] = []
    folder = state.get("template_dir")
    configured = global_value("init.templateDir", path=True)
    if not isinstance(folder, str):
        folder = configured[-1] if configured else places.template
    for name in SCANS:
        path = os.path.join(folder, "hooks", name)
        if _ours(path, TEMPLATE_MARKER):
            os.unlink(path)
            changes.append(f"removed {path}")
        backup = path + BACKUP
        if os.path.lexists(backup) and not os.path.lexists(path):
            os.replace(backup, path)
            changes.append(f"restored {path}")
    if state.get("template_dir_set") and configured and _same_dir(configured[-1], folder):
        _set_global("init.templateDir", [])
        changes.append("unset git config --global init.templateDir")
    if _same_dir(folder, places.template):
        _remove_empty(os.path.join(folder, "hooks"))
        _remove_empty(folder)
    for key in ("template_dir", "template_dir_set", "template_backups"):
        state.pop(key, None)
    _save_state(places, state)
    return changes
