"""A forge's listing, forge-neutral: the repository record, the saved pages, and the walk
through the pages that re-asks each one with its ETag.

A page is saved with its URL, ETag, next link and the repositories it listed; the next
discovery asks the same URLs with ``If-None-Match``, and a 304 reuses the saved page
whole (its repositories and its next link). A page that changed is read again, which
also catches repositories moving between pages when one is added or deleted before them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from scanner.sweep.discovery.http import DiscoveryError, Fetcher

#: More pages than this is a loop or a hostile API (100 per page: 1,000,000 repositories).
MAX_PAGES = 10_000


@dataclass(frozen=True, slots=True)
class Repository:
    """One repository as the sweep needs it, in the forge's own terms."""

    id: str  # the forge's repository id: stable across renames and transfers
    name: str  # "acme/api" (GitHub full_name, GitLab path_with_namespace)
    clone_url: str  # https (GitHub clone_url, GitLab http_url_to_repo)
    archived: bool = False
    fork: bool = False
    visibility: str = "public"
    topics: tuple[str, ...] = ()
    default_branch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["topics"] = list(self.topics)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Repository:
        return cls(id=str(data["id"]), name=str(data["name"]),
                   clone_url=str(data["clone_url"]), archived=bool(data["archived"]),
                   fork=bool(data["fork"]), visibility=str(data["visibility"]),
                   topics=tuple(str(t) for t in data["topics"]),
                   default_branch=data.get("default_branch"))


@dataclass(frozen=True, slots=True)
class Page:
    url: str
    etag: str | None
    next: str | None
    repos: tuple[Repository, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "etag": self.etag, "next": self.next,
                "repos": [r.to_dict() for r in self.repos]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Page:
        return cls(str(data["url"]), data.get("etag"), data.get("next"),
                   tuple(Repository.from_dict(r) for r in data["repos"]))


def _bool(value: Any) -> bool:
    return value is True


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def record(item: Any, *, name: str, clone_url: str, fork: Callable[[Mapping[str, Any]], bool],
           topics: Callable[[Mapping[str, Any]], Any]) -> Repository | None:
    """A repository from one item of a page, by the forge's field names; None for an
    item without the fields a sweep needs (it is skipped, the rest of the page is not)."""
    if not isinstance(item, Mapping):
        return None
    ident, full, url = item.get("id"), _text(item.get(name)), _text(item.get(clone_url))
    if isinstance(ident, bool) or not isinstance(ident, int | str) or not full or not url:
        return None
    raw_topics = topics(item)
    visibility = _text(item.get("visibility"))
    if visibility is None:  # older GitHub Enterprise Servers: only "private"
        visibility = "private" if item.get("private") is True else "public"
    return Repository(
        id=str(ident), name=full, clone_url=url, archived=_bool(item.get("archived")),
        fork=fork(item), visibility=visibility.lower(),
        topics=tuple(t for t in raw_topics if isinstance(t, str))
        if isinstance(raw_topics, list) else (),
        default_branch=_text(item.get("default_branch")))


async def walk(fetcher: Fetcher, first: str, saved: Mapping[str, Page],
               parse: Callable[[Any], Repository | None]) -> list[Page]:
    """Every page from ``first`` on, each asked with its saved ETag."""
    pages: list[Page] = []
    url: str | None = first
    seen: set[str] = set()
    while url is not None:
        if url in seen or len(pages) >= MAX_PAGES:
            raise DiscoveryError("bad_link", "the pages' next links loop")
        seen.add(url)
        old = saved.get(url)
        answer = await fetcher.get(url, old.etag if old else None)
        if answer.status == 304 and old is not None:
            pages.append(old)
            url = old.next
            continue
        repos = tuple(r for r in map(parse, answer.items) if r is not None)
        pages.append(Page(url, answer.etag, answer.next, repos))
        url = answer.next
    return pages
