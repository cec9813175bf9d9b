"""Clone credentials for discovered repositories, given to git per command.

The token is never in a URL, a mirror's config, a command line or an output: each fetch
gets, through git's environment-borne configuration (``GIT_CONFIG_COUNT``/``KEY``/
``VALUE``, which no config file keeps and ``ps`` does not show), a credential helper
scoped to the clone URL's origin. The helper is a shell function that answers git's
credential protocol (``get``: ``username=`` and ``password=`` lines) from the variable
named by ``token_env``; its text holds the variable's *name*, and ``echo`` is a shell
built-in, so the value is in no process's arguments either. Helpers from the user's own
configuration are reset for that command, so the token given is the one used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from scanner.sweep.config import is_loopback

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_USER = re.compile(r"[A-Za-z0-9._-]+")


def helper(variable: str, user: str) -> str:
    """The helper's text: ``!`` makes git run it through the shell with the action
    (``get``, ``store``, ``erase``) as its argument; only ``get`` answers."""
    if not _NAME.fullmatch(variable) or not _USER.fullmatch(user):
        raise ValueError("a variable name and a plain user name")
    return (f'!f() {{ test "$1" = get || exit 0; echo "username={user}"; '
            f'echo "password=${{{variable}}}"; }}; f')


def clone_env(url: str, credential: tuple[str, str] | None,
              environ: Mapping[str, str]) -> dict[str, str]:
    """The environment to add to a fetch of ``url``: nothing for a repository without a
    credential or a URL that is not https (http to this machine, for stand-ins)."""
    if credential is None:
        return {}
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return {}
    if not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))):
        return {}
    variable, user = credential
    try:
        start = int(environ.get("GIT_CONFIG_COUNT", "0") or 0)
    except ValueError:
        start = 0
    origin = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
    pairs = [("credential.helper", ""),  # reset: the user's helpers do not answer first
             (f"credential.{origin}.helper", helper(variable, user))]
    env = {"GIT_CONFIG_COUNT": str(start + len(pairs))}
    for i, (key, value) in enumerate(pairs, start):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env
