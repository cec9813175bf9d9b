"""Where tokens hide on a developer's machine, and ``CENDIS_TOKEN`` itself.

Files are scanned with the library (:func:`scanner.scan_paths`): the same detector as
every other scan, base64 in ``~/.docker/config.json`` included. ``~/.config`` can hold
anything (browser profiles, caches, sockets), so it is walked by hand with bounds: no
symlinked folder is followed (no loop), only regular files (never a FIFO or device,
which could block forever), none larger than :data:`MAX_FILE_BYTES` (a huge sparse file
is skipped by its size, never read), at most :data:`MAX_FILES` files and
:data:`MAX_DEPTH` folders deep. What was skipped is counted and said.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping

from scanner.doctor.result import FAIL, OK, WARN, Result
from scanner.finding import Finding
from scanner.report.text import ROTATE
from scanner.token import PREFIX, TokenCheck, check, explain, shannon_entropy

MAX_FILE_BYTES = 8 << 20
MAX_FILES = 20_000
MAX_DEPTH = 12
#: Folders never worth walking for a leftover token (rebuilt caches, dependencies).
SKIP_DIRS = frozenset({".git", "node_modules", "__pycache__", ".venv", "venv", ".tox",
                       "Cache", "cache", "CacheStorage", "GPUCache", "Code Cache"})

#: (path under HOME, what kind of place it is) for the named files.
HISTORY = (".bash_history", ".zsh_history", ".sh_history", ".local/share/fish/fish_history",
           ".python_history", ".node_repl_history", ".psql_history", ".mysql_history")
PROFILES = (".bashrc", ".bash_profile", ".profile", ".zshrc", ".zprofile", ".zshenv",
            ".bash_login", ".config/fish/config.fish")
CREDENTIALS = (".netrc", ".docker/config.json", ".npmrc", ".pypirc", ".git-credentials")

_FIX = {
    "history": "delete the line from the history file (and `history -c` in open shells), "
               "then rotate it: " + ROTATE,
    "profile": "remove it from the profile and load it from a secret manager or a "
               "git-ignored file at run time; rotate it if the file was ever shared: "
               + ROTATE,
    "credentials": "remove it (use a credential helper or CENDIS_TOKEN from a secret "
                   "manager); rotate it if the file was ever shared: " + ROTATE,
    "config": "remove it from the file; rotate it if the file was ever shared or synced: "
              + ROTATE,
}

_PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "token", "your", "xxx",
                      "placeholder", "todo", "secret", "example", "dummy", "fake", "test")


def shown(path: str, home: str) -> str:
    """``~/...`` for a path under HOME, so a fleet's report reads the same everywhere."""
    home = home.rstrip("/")
    return "~" + path[len(home):] if home and path.startswith(home + "/") else path


# --------------------------------------------------------------------- CENDIS_TOKEN


def _looks_placeholder(value: str) -> bool:
    lower = value.lower()
    return (len(value) < 12 or any(c in value for c in "<>{}$*")
            or any(w in lower for w in _PLACEHOLDER_WORDS)
            or shannon_entropy(value) < 3.0)


def check_env_token(env: Mapping[str, str]) -> list[Result]:
    """CENDIS_TOKEN, if set: a whole v1 token, a truncated copy, or a placeholder. The
    value is never shown: only its redacted form, and only when it has the prefix."""
    name = "env.CENDIS_TOKEN"
    if "CENDIS_TOKEN" not in env:
        return [Result(name, OK, "not set")]
    value = env["CENDIS_TOKEN"]
    if not value.strip():
        return [Result(name, FAIL, "set but empty", "set it to the whole token, or unset it")]
    verdict = check(value)
    if verdict is TokenCheck.VALID:
        return [Result(name, OK, explain(verdict, value) + "; a token kept in the "
                       "environment is the right place (if a shell profile exports it, "
                       "that file is reported below)")]
    if verdict is TokenCheck.NO_PREFIX:
        if _looks_placeholder(value.strip()):
            return [Result(name, FAIL, f"a placeholder ({len(value.strip())} characters), "
                           "not a token", f"set it to your whole token ({PREFIX}...)")]
        return [Result(name, FAIL, f"not a Cendis token: it does not start with {PREFIX} "
                       f"({len(value.strip())} characters)",
                       "set it to the whole token, copied again from Cendis")]
    if verdict is TokenCheck.PLACEHOLDER:
        return [Result(name, FAIL, explain(verdict, value),
                       f"set it to your whole token ({PREFIX}...)")]
    return [Result(name, FAIL, explain(verdict, value),
                   "copy the whole token again from Cendis (a truncated copy is the most "
                   "common failure)")]


# -------------------------------------------------------------------------- files


def _regular(path: str) -> os.stat_result | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _walk(top: str, skipped: list[str]) -> Iterator[str]:
    """Regular files under ``top``, bounded (see the module's docstring)."""
    stack = [(top, 0)]
    count = 0
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            skipped.append(f"{folder}: {exc.strerror or exc}")
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name in SKIP_DIRS or depth >= MAX_DEPTH:
                        continue
                    stack.append((entry.path, depth + 1))
                    continue
                st = entry.stat()  # a link to a file is read, one to a device is not
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if st.st_size > MAX_FILE_BYTES:
                skipped.append(f"{entry.path}: larger than {MAX_FILE_BYTES >> 20} MiB")
                continue
            count += 1
            if count > MAX_FILES:
                skipped.append(f"{top}: more than {MAX_FILES} files, the rest not read")
                return
            yield entry.path


def _scan(files: list[str]) -> tuple[list[Finding], list[str]]:
    """The library's scan of exactly these files: findings and unreadable files."""
    if not files:
        return [], []
    from scanner import scan_paths
    from scanner.rules import load

    result = scan_paths(files, load())
    return result.findings, [e.message for e in result.errors]


def _finding(check_name: str, f: Finding, home: str, fix: str) -> Result:
    confirmed = f.confidence.value == "confirmed"
    what = "a token" if confirmed else "a possible token (truncated or mistyped)"
    return Result(check_name, FAIL if confirmed else WARN, f"{what}: {f.redacted}",
                  fix, path=shown(f.path or "", home), line=f.line, redacted=f.redacted,
                  confidence=f.confidence.value, secret_sha256=f.secret_sha256)


def check_home(home: str, env: Mapping[str, str]) -> list[Result]:
    """Shell history, profiles, credential files, and everything under ~/.config."""
    kinds: dict[str, str] = {}
    for rel in HISTORY:
        kinds[os.path.join(home, rel)] = "history"
    histfile = env.get("HISTFILE")
    if histfile:
        kinds[os.path.abspath(os.path.expanduser(histfile))] = "history"
    for rel in PROFILES:
        kinds[os.path.join(home, rel)] = "profile"
    for rel in CREDENTIALS:
        kinds[os.path.join(home, rel)] = "credentials"
    skipped: list[str] = []
    files = []
    for path in kinds:
        st = _regular(path)
        if st is None:
            continue
        if st.st_size > MAX_FILE_BYTES:
            skipped.append(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB")
            continue
        files.append(path)
    config = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    if os.path.isdir(config):
        for path in _walk(config, skipped):
            if path not in kinds:
                kinds[path] = "config"
                files.append(path)
    findings, errors = _scan(files)
    results = [_finding("files.home", f, home, _FIX[kinds.get(f.path or "", "config")])
               for f in findings]
    if errors:
        results.append(Result("files.home", WARN, f"{len(errors)} file(s) could not be read "
                              f"(first: {shown(errors[0], home)})",
                              "make them readable to check them, or ignore this"))
    if not findings:
        note = (f"; {len(skipped)} skipped (first: {shown(skipped[0], home)})"
                if skipped else "")
        results.insert(0, Result("files.home", OK, f"no token in {len(files)} file(s): shell "
                                 f"history and profiles, credential files, ~/.config{note}"))
    return results


def _env_files(top: str, skipped: list[str]) -> Iterator[str]:
    for path in _walk(top, skipped):
        name = os.path.basename(path)
        if name in (".env", ".envrc") or name.startswith(".env."):
            yield path


def check_env_files(path: str, home: str) -> list[Result]:
    """``.env``/``.envrc`` files under ``path`` that git would commit (not ignored): a
    token in one is a commit away from a leak, and one without a token still belongs in
    .gitignore (Cendis's advice)."""
    from scanner.git.plumbing import ignored
    from scanner.git.proc import top as git_top

    skipped: list[str] = []
    exposed = []
    for env_file in _env_files(os.path.abspath(path), skipped):
        work_tree = git_top(os.path.dirname(env_file))
        if work_tree is not None and ignored(work_tree, env_file) is False:
            exposed.append(env_file)
    findings, errors = _scan(exposed)
    with_token = {f.path for f in findings}
    results = [_finding("files.env", f, home,
                        "add it to .gitignore and move the token out of it; if it was ever "
                        "committed or pushed, rotate it: " + ROTATE) for f in findings]
    results += [Result("files.env", WARN, "not ignored by git, so `git add .` would commit "
                       "it", "add it to .gitignore", path=shown(p, home))
                for p in exposed if p not in with_token]
    if errors:
        results.append(Result("files.env", WARN, f"{len(errors)} file(s) could not be read "
                              f"(first: {shown(errors[0], home)})", "make them readable"))
    if not results:
        results.append(Result("files.env", OK, f"no .env or .envrc file that git would "
                              f"commit under {shown(os.path.abspath(path), home)}"))
    return results
