"""Typed ``web.AppKey``s for what the app shares (no globals): one place, so the views
and the factory agree on names and types."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import aiohttp
from aiohttp import web

from scanner.incidents.revoker import Revoker
from scanner.incidents.store import Store
from scanner.incidents.trail import IncidentTrail
from scanner.notify.dispatch import Dispatcher
from scanner.server.config import ServerConfig
from scanner.server.keys import KeyCache
from scanner.server.metrics import Metrics
from scanner.server.writer import BatchWriter

CONFIG = web.AppKey("config", ServerConfig)
METRICS = web.AppKey("metrics", Metrics)
NOW: web.AppKey[Callable[[], datetime]] = web.AppKey("now")
SESSION = web.AppKey("session", aiohttp.ClientSession)
TRAIL = web.AppKey("trail", IncidentTrail)
STORE = web.AppKey("store", Store)  # the trail's, for the views
WRITER = web.AppKey("writer", BatchWriter)
#: The store's gauges as last read (queue depth, oldest age) and whether a read is
#: under way: /metrics shows them without ever waiting on the database.
STORE_GAUGES: web.AppKey[dict[str, object]] = web.AppKey("store_gauges")
KEY_CACHES: web.AppKey[dict[str, KeyCache]] = web.AppKey("key_caches")
REVOKER: web.AppKey[Revoker | None] = web.AppKey("revoker")
#: Webhook delivery ids this process committed (insertion-ordered, bounded by the view).
DELIVERIES: web.AppKey[dict[tuple[str, str], None]] = web.AppKey("deliveries")
#: The notification dispatcher (None without a [notify] table).
DISPATCHER: web.AppKey[Dispatcher | None] = web.AppKey("dispatcher")
#: Short tasks started from callbacks (a histogram's reads), held until done.
BACKGROUND: web.AppKey[set[asyncio.Future[None]]] = web.AppKey("background")
