"""GitLab (gitlab.com and self-managed): a group's projects, its subgroups' included.

``GET /groups/{id}/projects?include_subgroups=true&per_page=100&pagination=keyset&
order_by=id&sort=asc`` (the id is the URL-encoded full path), pages by ``Link`` (keyset
pagination: a cursor, so a project added meanwhile neither shifts nor repeats a page);
fields as documented for "List a group's projects": ``id``, ``path_with_namespace``,
``http_url_to_repo``, ``archived``, ``forked_from_project`` (present for a fork),
``visibility``, ``topics`` (``tag_list`` before GitLab 14), ``default_branch``.
Projects shared into the group from elsewhere are not the group's (``with_shared=false``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from scanner.sweep.discovery.http import GITLAB, Fetcher, Limits
from scanner.sweep.discovery.listing import Page, Repository, record, walk

LIMITS: Limits = GITLAB
#: The user name GitLab documents for cloning with a personal or group access token.
CLONE_USER = "oauth2"


def headers(token: str | None) -> dict[str, str]:
    out = {"Accept": "application/json", "User-Agent": "cendis-scan"}
    if token:
        out["PRIVATE-TOKEN"] = token
    return out


def first_url(api_url: str, group: str, *, subgroups: bool = True) -> str:
    return (f"{api_url}/groups/{quote(group, safe='')}/projects?"
            f"include_subgroups={'true' if subgroups else 'false'}&with_shared=false"
            f"&per_page=100&pagination=keyset&order_by=id&sort=asc")


def parse(item: Any) -> Repository | None:
    return record(item, name="path_with_namespace", clone_url="http_url_to_repo",
                  fork=lambda i: bool(i.get("forked_from_project")),
                  topics=lambda i: i.get("topics", i.get("tag_list")))


async def list_pages(fetcher: Fetcher, api_url: str, group: str,
                     saved: Mapping[str, Page], *, subgroups: bool = True) -> list[Page]:
    return await walk(fetcher, first_url(api_url, group, subgroups=subgroups), saved, parse)
