"""Discovery of each ``[[org]]``'s repositories before a sweep, and what changed since.

Each organisation's state is one JSON file in the cache (``<cache>/org:<hash>.json``,
written atomically): the saved pages (URL, ETag, next link, repositories), the
repositories swept last time (by id, with their name) and the retired ones. So:

- a repository is known by the forge's id: renamed (same id, new name) it keeps its
  mirror and its scanned state (the mirror's folder is named after the id), and the
  output says ``renamed``;
- one that is no longer listed (deleted, or moved to another owner), or that the
  filters now exclude (archived, made a fork, another visibility, topics), is
  *retired*: its mirror and state stay in the cache, the output says so once, and if
  it comes back it goes on from where it was;
- when the listing fails (after the retries), the last known list is swept and the
  organisation's row carries the error, so nothing already known goes unswept.

No token is kept here: the state holds what the API listed, and clone URLs as listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scanner.atomic import write_atomic
from scanner.errors import ScanError, short
from scanner.sweep.config import OrgSource, RepoSource, url_problem
from scanner.sweep.discovery import github, gitlab
from scanner.sweep.discovery.http import Clock, DiscoveryError, Fetcher, Sleep
from scanner.sweep.discovery.listing import Page, Repository

log = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass(slots=True)
class OrgResult:
    """One organisation's discovery: what to sweep, and what to say about it."""

    org: OrgSource
    repos: list[RepoSource] = field(default_factory=list)
    listed: int = 0  # repositories the API listed (before the filters)
    new: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old, new)
    retired: list[tuple[str, str]] = field(default_factory=list)  # (name, why)
    errors: list[str] = field(default_factory=list)
    stale: bool = False  # the last known list is swept (no listing this time)
    stats: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"repositories": len(self.repos), "listed": self.listed, "stale": self.stale,
                "new": self.new, "renamed": [{"from": a, "to": b} for a, b in self.renamed],
                "retired": [{"name": n, "why": w} for n, w in self.retired],
                **self.stats}


def _glob(repo: Repository, pattern: str) -> bool:
    """A glob with a ``/`` matches the full name (``acme/api-*``), one without the last
    part of it (``api-*``)."""
    target = repo.name if "/" in pattern else repo.name.rsplit("/", 1)[-1]
    return fnmatch.fnmatchcase(target.lower(), pattern.lower())


def excluded(repo: Repository, org: OrgSource) -> str | None:
    """Why the filters leave ``repo`` out (a few words), or None."""
    if repo.archived and not org.archived:
        return "archived"
    if repo.fork and not org.forks:
        return "a fork"
    if repo.visibility not in org.visibility:
        return f"{repo.visibility}"
    if org.include and not any(_glob(repo, p) for p in org.include):
        return "not included by name"
    if any(_glob(repo, p) for p in org.exclude):
        return "excluded by name"
    if org.topics and not set(t.lower() for t in repo.topics) & {
            t.lower() for t in org.topics}:
        return "no wanted topic"
    return None


def _load(path: Path) -> dict[str, Any]:
    """The saved state; an unreadable one is set aside (``.corrupt``) and the
    discovery starts afresh (mirrors are kept: they are found again by id)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError("not a discovery state")
        data["pages"] = [Page.from_dict(p) for p in data.get("pages", [])]
        for key in ("active", "retired"):
            if not isinstance(data.get(key, {}), dict):
                raise ValueError(key)
        return data
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        with contextlib.suppress(OSError):
            path.replace(path.with_suffix(".corrupt"))
        log.warning("discovery state %s is unreadable; set aside, listing afresh", path)
        return {}


def _save(path: Path, state: Mapping[str, Any]) -> None:
    data = {**state, "version": STATE_VERSION,
            "pages": [p.to_dict() for p in state.get("pages", [])]}
    write_atomic(path, json.dumps(data, separators=(",", ":")))


def _source(org: OrgSource, repo: Repository, host: str) -> RepoSource:
    try:
        parts = urlsplit(repo.clone_url)
        web = parts.hostname if parts.scheme in ("https", "http", "ssh", "git") else None
    except ValueError:
        web = None
    user = github.CLONE_USER if org.forge == "github" else gitlab.CLONE_USER
    return RepoSource(url=repo.clone_url, name=f"{web or host.split(':')[0]}/{repo.name}",
                      branches=org.branches, auto_revoke=org.auto_revoke,
                      ident=f"{org.forge}:{host}:{repo.id}",
                      credential=(org.token_env, user) if org.token_env else None,
                      default_branch=repo.default_branch)


async def _list(org: OrgSource, session: Any, saved: Mapping[str, Page], token: str | None,
                sleep: Sleep, clock: Clock) -> tuple[list[Page], dict[str, Any]]:
    forge = github if org.forge == "github" else gitlab
    fetcher = Fetcher(session, org.api_url, forge.headers(token), forge.LIMITS,
                      sleep=sleep, clock=clock)
    try:
        if org.forge == "github":
            pages = await github.list_pages(fetcher, org.api_url, org.account, saved)
        else:
            pages = await gitlab.list_pages(fetcher, org.api_url, org.account, saved,
                                            subgroups=org.include_subgroups)
    except DiscoveryError as exc:
        exc.stats = fetcher.stats.to_dict()  # type: ignore[attr-defined]
        raise
    return pages, fetcher.stats.to_dict()


def _changes(result: OrgResult, state: dict[str, Any], listed: Sequence[Repository],
             kept: Sequence[Repository]) -> None:
    """Compare with the last sweep: new, renamed, retired (and back from retirement)."""
    org = result.org
    active: dict[str, str] = state.get("active", {})
    retired: dict[str, Any] = state.get("retired", {})
    by_id = {r.id: r for r in listed}
    now = {r.id: r.name for r in kept}
    for ident, name in now.items():
        if ident in active and active[ident] != name:
            result.renamed.append((active[ident], name))
        elif ident not in active and active:  # the first listing is not "new"
            result.new.append(name)
        retired.pop(ident, None)
    for ident, name in active.items():
        if ident in now:
            continue
        repo = by_id.get(ident)
        why = excluded(repo, org) if repo is not None else "deleted or moved away"
        shown = repo.name if repo is not None else name
        result.retired.append((shown, why or "not listed"))
        retired[ident] = {"name": shown, "why": why or "not listed"}
    state["active"], state["retired"] = now, retired


async def _one(org: OrgSource, cache: Path, session: Any, *, fetch: bool,
               environ: Mapping[str, str], sleep: Sleep, clock: Clock) -> OrgResult:
    result = OrgResult(org)
    started = time.perf_counter()
    path = cache / f"{org.key}.json"
    state = _load(path)
    saved = {p.url: p for p in state.get("pages", [])}
    token = environ.get(org.token_env) if org.token_env else None
    pages: list[Page] | None = None
    if not fetch:
        result.stale = True  # --no-fetch: the cache as it is
    elif org.token_env and not token:
        result.errors.append(f"config: ${org.token_env} is not set (token_env)")
    else:
        try:
            pages, result.stats = await _list(org, session, saved, token, sleep, clock)
        except DiscoveryError as exc:
            result.stats = getattr(exc, "stats", {})
            result.errors.append(f"{exc.reason}: {short(str(exc), 200)}")
    if pages is None:
        pages = list(state.get("pages", []))
        result.stale = True
        if result.errors:
            result.errors[-1] += (f"; swept the last known list ({len(state.get('active', {}))}"
                                  " repositories)" if state else "; no list known yet")
    listed = [r for p in pages for r in p.repos]
    result.listed = len(listed)
    unique = {r.id: r for r in listed}
    kept = [r for r in unique.values() if excluded(r, org) is None]
    if result.stale:
        active = state.get("active", {})
        kept = [r for r in kept if r.id in active] if state else []
    else:
        _changes(result, state, listed, kept)
        state["pages"] = pages
        state["listed_at"] = clock()
        _save(path, state)
    host = urlsplit(org.api_url).netloc
    for repo in kept:
        problem = url_problem(repo.clone_url)
        if problem is not None:
            result.errors.append(f"{repo.name}: clone URL {problem}"[:300])
            continue
        result.repos.append(_source(org, repo, host))
    result.seconds = time.perf_counter() - started
    return result


async def _all(orgs: Sequence[OrgSource], cache: Path, fetch: bool,
               environ: Mapping[str, str], sleep: Sleep, clock: Clock) -> list[OrgResult]:
    import aiohttp

    from scanner.sweep.mirrors import exclusive

    async with aiohttp.ClientSession() as session:
        async def guarded(org: OrgSource) -> OrgResult:
            try:
                with exclusive(cache / f"{org.key}.lock"):
                    return await _one(org, cache, session, fetch=fetch, environ=environ,
                                      sleep=sleep, clock=clock)
            except ScanError as exc:  # another sweep is listing it: use the saved list
                result = await _one(org, cache, session, fetch=False, environ=environ,
                                    sleep=sleep, clock=clock)
                result.errors.append(f"{getattr(exc, 'reason', 'error')}: "
                                     f"{short(str(exc), 200)}")
                return result

        return list(await asyncio.gather(*(guarded(o) for o in orgs)))


def discover(orgs: Sequence[OrgSource], cache: str | os.PathLike[str], *, fetch: bool = True,
             environ: Mapping[str, str] | None = None, sleep: Sleep | None = None,
             clock: Clock | None = None) -> list[OrgResult]:
    """List every organisation (concurrently), in an event loop of its own: the sweep
    runs in threads, and this is its one asynchronous step."""
    if not orgs:
        return []
    folder = Path(cache)
    folder.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_all(orgs, folder, fetch, os.environ if environ is None else environ,
                            sleep or asyncio.sleep, clock or time.time))
