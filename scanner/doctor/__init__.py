"""``cendis-scan doctor``: one look at a developer's machine, from Cendis's own advice.

Each check yields :class:`Result` lines (ok, warn or fail, each with its fix): whether
the hooks run for the current repository and for every repository
(:mod:`.hooks`), whether ``CENDIS_TOKEN`` is a whole token, a truncated copy or a
placeholder, and where tokens were left behind: shell history and profiles,
``~/.netrc``, ``~/.docker/config.json``, ``~/.npmrc``, ``~/.config/**``, and ``.env``
files git would commit (:mod:`.places`). Findings come from the normal engine
(:func:`scanner.scan_paths`) and are shown redacted only.

The environment (HOME, XDG_CONFIG_HOME, CENDIS_TOKEN) is a parameter, so tests point
it at a temporary folder and fleets can run it unprivileged.
"""

from __future__ import annotations

from collections.abc import Mapping

from scanner.doctor.result import FAIL, OK, WARN, Report, Result

__all__ = ["FAIL", "OK", "WARN", "Report", "Result", "run"]


def run(path: str, env: Mapping[str, str]) -> Report:
    """Every check, in the order a person fixes them."""
    import os

    from scanner.doctor import hooks, places

    home = env.get("HOME") or os.path.expanduser("~")
    results = [*hooks.check(path, env), *places.check_env_token(env),
               *places.check_home(home, env), *places.check_env_files(path, home)]
    return Report(results, home, path)
