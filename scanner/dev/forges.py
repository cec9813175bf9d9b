"""A stand-in for the GitHub and GitLab list APIs (for tests and benchmarks), on loopback.

It speaks each API's documented shapes: GitHub's ``GET /orgs/{org}/repos`` and
``/users/{user}/repos`` (``per_page`` up to 100, ``page``, ``Link`` with ``next``/``last``,
``x-ratelimit-*`` headers, 403 at quota 0), GitLab's ``GET /groups/{id}/projects`` with
keyset pagination (``pagination=keyset&order_by=id&sort=asc``, ``id_after`` in the
``Link`` next, ``RateLimit-*`` headers, subgroups by namespace path); both with weak
ETags and ``304`` for ``If-None-Match`` (a 304 does not count against the quota).
Faults are queued on :class:`Forge` (a 502, a secondary limit with ``Retry-After``...)
and every call is logged. GitHub lives under ``/github``, GitLab under
``/gitlab/api/v4``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web

PER_PAGE_MAX = 100


@dataclass
class Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


@dataclass
class Call:
    path: str
    query: dict[str, str]
    if_none_match: str | None
    status: int
    authorization: str | None


@dataclass
class Forge:
    """The stand-in's data, changed by tests between sweeps."""

    github: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # org -> repos
    users: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    gitlab: list[dict[str, Any]] = field(default_factory=list)  # every project
    faults: list[Fault] = field(default_factory=list)  # served first, in order
    calls: list[Call] = field(default_factory=list)
    token: str | None = None  # when set: required (Bearer / PRIVATE-TOKEN)
    limit: int = 5000
    remaining: int = 5000
    clock: Callable[[], float] = time.time
    window: float = 3600.0
    refill_at: float = 0.0  # the quota comes back then (once spent)

    @property
    def reset(self) -> int:
        return int(self.clock() // self.window * self.window + self.window)


FORGE: web.AppKey[Forge] = web.AppKey("forge", Forge)


def github_repo(ident: int, full_name: str, clone_url: str, **kw: Any) -> dict[str, Any]:
    """An item of "List organization repositories" (the fields a client reads, and a
    few it does not)."""
    owner, _, name = full_name.partition("/")
    visibility = kw.get("visibility", "public")
    return {"id": ident, "node_id": f"R_{ident}", "name": name, "full_name": full_name,
            "owner": {"login": owner, "type": "Organization"},
            "private": visibility != "public", "html_url": f"https://github.test/{full_name}",
            "clone_url": clone_url, "ssh_url": f"git@github.test:{full_name}.git",
            "fork": kw.get("fork", False), "archived": kw.get("archived", False),
            "disabled": False, "visibility": visibility, "topics": kw.get("topics", []),
            "default_branch": kw.get("default_branch", "main"),
            "pushed_at": "2026-03-01T00:00:00Z"}


def gitlab_project(ident: int, path_with_namespace: str, http_url: str,
                   **kw: Any) -> dict[str, Any]:
    """An item of "List a group's projects"."""
    namespace, _, path = path_with_namespace.rpartition("/")
    item = {"id": ident, "name": path, "path": path,
            "path_with_namespace": path_with_namespace,
            "namespace": {"full_path": namespace, "kind": "group"},
            "http_url_to_repo": http_url, "ssh_url_to_repo": f"git@gitlab.test:"
            f"{path_with_namespace}.git", "web_url": f"https://gitlab.test/"
            f"{path_with_namespace}", "archived": kw.get("archived", False),
            "visibility": kw.get("visibility", "private"), "topics": kw.get("topics", []),
            "tag_list": kw.get("topics", []), "default_branch": kw.get("default_branch",
                                                                        "main")}
    if kw.get("fork"):
        item["forked_from_project"] = {"id": ident + 100000}
    return item


def _etag(body: bytes) -> str:
    return 'W/"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _answer(request: web.Request, forge: Forge, items: list[dict[str, Any]],
            links: dict[str, str], headers: dict[str, str]) -> web.Response:
    body = json.dumps(items).encode()
    etag = _etag(body)
    link = ", ".join(f'<{url}>; rel="{rel}"' for rel, url in links.items())
    out = {**headers, "ETag": etag, **({"Link": link} if link else {})}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=out)
    return web.Response(body=body, content_type="application/json", headers=out)


def _rate_headers(forge: Forge, gitlab: bool) -> dict[str, str]:
    if gitlab:
        return {"RateLimit-Limit": str(forge.limit),
                "RateLimit-Remaining": str(forge.remaining),
                "RateLimit-Reset": str(forge.reset)}
    return {"x-ratelimit-limit": str(forge.limit),
            "x-ratelimit-remaining": str(forge.remaining),
            "x-ratelimit-reset": str(forge.reset), "x-ratelimit-resource": "core"}


@web.middleware
async def _gate(request: web.Request, handler: Any) -> web.StreamResponse:
    """Log the call; serve a queued fault first; check the credential; count quota."""
    forge = request.app[FORGE]
    gitlab = request.path.startswith("/gitlab/")
    auth = request.headers.get("PRIVATE-TOKEN" if gitlab else "Authorization")
    response: web.StreamResponse
    if forge.remaining <= 0 and forge.clock() >= forge.refill_at:
        forge.remaining = forge.limit
    if forge.faults:
        fault = forge.faults.pop(0)
        response = web.json_response(fault.body, status=fault.status,
                                     headers={**_rate_headers(forge, gitlab), **fault.headers})
    elif forge.token is not None and auth not in (forge.token, f"Bearer {forge.token}"):
        response = web.json_response({"message": "Bad credentials"}, status=401)
    elif forge.remaining <= 0:
        response = web.json_response({"message": "API rate limit exceeded"},
                                     status=429 if gitlab else 403,
                                     headers=_rate_headers(forge, gitlab))
    else:
        response = await handler(request)
        if response.status == 200:  # a 304 costs no quota
            forge.remaining -= 1
            if forge.remaining == 0:
                forge.refill_at = forge.reset
        response.headers.update(_rate_headers(forge, gitlab))
    forge.calls.append(Call(request.path, dict(request.query),
                            request.headers.get("If-None-Match"), response.status,
                            "set" if auth else None))
    return response


def _per_page(request: web.Request, default: int) -> int:
    try:
        return max(1, min(PER_PAGE_MAX, int(request.query.get("per_page", default))))
    except ValueError:
        return default


async def _github(request: web.Request) -> web.Response:
    forge = request.app[FORGE]
    kind, account = request.match_info["kind"], request.match_info["account"]
    repos = (forge.github if kind == "orgs" else forge.users).get(account)
    if repos is None:
        return web.json_response({"message": "Not Found"}, status=404)
    per_page = _per_page(request, 30)
    page = max(1, int(request.query.get("page", "1")))
    ordered = sorted(repos, key=lambda r: r["id"])
    last = max(1, -(-len(ordered) // per_page))
    base = f"{request.url.with_query(None)}?per_page={per_page}&type=all&page="
    links = {}
    if page < last:
        links = {"next": f"{base}{page + 1}", "last": f"{base}{last}"}
    if page > 1:
        links.update({"prev": f"{base}{page - 1}", "first": f"{base}1"})
    items = ordered[(page - 1) * per_page: page * per_page]
    return _answer(request, forge, items, links, {})


async def _gitlab(request: web.Request) -> web.Response:
    forge = request.app[FORGE]
    group = request.match_info["group"]
    q = request.query
    if q.get("pagination") != "keyset" or q.get("order_by", "id") != "id":
        return web.json_response({"message": "keyset pagination wants order_by=id"},
                                 status=400)
    subgroups = q.get("include_subgroups") == "true"
    projects = [p for p in forge.gitlab if p["namespace"]["full_path"] == group or
                (subgroups and p["namespace"]["full_path"].startswith(group + "/"))]
    if not projects and not any(p["namespace"]["full_path"].startswith(group)
                                for p in forge.gitlab):
        return web.json_response({"message": "404 Group Not Found"}, status=404)
    per_page = _per_page(request, 20)
    after = int(q.get("id_after", "0"))
    ordered = sorted((p for p in projects if p["id"] > after), key=lambda p: p["id"])
    items = ordered[:per_page]
    links = {}
    if len(ordered) > per_page:
        query = {k: v for k, v in q.items() if k != "id_after"}
        tail = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
        links["next"] = f"{request.url.with_query(None)}?{tail}&id_after={items[-1]['id']}"
    return _answer(request, forge, items, links, {})


def create_app(forge: Forge | None = None) -> web.Application:
    app = web.Application(middlewares=[_gate])
    app[FORGE] = forge or Forge()
    app.router.add_get(r"/github/{kind:orgs|users}/{account}/repos", _github)
    app.router.add_get(r"/gitlab/api/v4/groups/{group:.+}/projects", _gitlab)
    return app


class Served:
    """An app served on loopback from a thread of its own (for synchronous callers: a
    sweep, a benchmark); ``close()`` stops it."""

    def __init__(self, app: web.Application, ssl_context: Any = None) -> None:
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._app, self._ssl = app, ssl_context
        self.url = ""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the stand-in did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(self._app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self._ssl)
        self._loop.run_until_complete(site.start())
        port = runner.addresses[0][1]
        self.url = f"{'https' if self._ssl else 'http'}://127.0.0.1:{port}"
        self._runner = runner
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
