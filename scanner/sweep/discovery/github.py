"""GitHub (github.com and Enterprise Server): an organisation's repositories, or a
user's when the name is not an organisation.

``GET /orgs/{org}/repos?per_page=100&type=all`` (a 404 means no such organisation: then
``GET /users/{user}/repos``), pages by ``Link``; fields as documented for "List
organization repositories": ``id``, ``full_name``, ``clone_url``, ``archived``,
``fork``, ``visibility``, ``topics``, ``default_branch``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from scanner.sweep.discovery.http import GITHUB, DiscoveryError, Fetcher, Limits
from scanner.sweep.discovery.listing import Page, Repository, record, walk

LIMITS: Limits = GITHUB
#: The user name git gives with the token (GitHub ignores it for tokens).
CLONE_USER = "x-access-token"


def headers(token: str | None) -> dict[str, str]:
    out = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
           "User-Agent": "cendis-scan"}
    if token:
        out["Authorization"] = f"Bearer {token}"
    return out


def first_url(api_url: str, account: str, *, user: bool = False) -> str:
    kind = "users" if user else "orgs"
    return f"{api_url}/{kind}/{quote(account, safe='')}/repos?per_page=100&type=all"


def parse(item: Any) -> Repository | None:
    return record(item, name="full_name", clone_url="clone_url",
                  fork=lambda i: i.get("fork") is True, topics=lambda i: i.get("topics"))


async def list_pages(fetcher: Fetcher, api_url: str, account: str,
                     saved: Mapping[str, Page]) -> list[Page]:
    """The organisation's pages; a user's when GitHub has no such organisation."""
    try:
        return await walk(fetcher, first_url(api_url, account), saved, parse)
    except DiscoveryError as exc:
        if exc.reason != "not_found":
            raise
    return await walk(fetcher, first_url(api_url, account, user=True), saved, parse)
