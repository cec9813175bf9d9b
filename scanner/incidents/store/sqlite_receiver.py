"""The receiver's own tables on SQLite: the partners' public-key cache and the webhook
delivery ids already committed (a redelivery is recognised, across restarts and
replicas). Mixed into :class:`~scanner.incidents.store.sqlite.SqliteStore`; only the
server side calls these."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import sqlite_utils

from scanner.incidents.store.common import iso


class SqliteReceiver:
    db: sqlite_utils.Database
    _lock: threading.RLock
    _now: Callable[[], datetime]
    _write: Callable[[], AbstractContextManager[sqlite_utils.Database]]

    def save_partner_keys(self, partner: str, keys: list[dict[str, Any]],
                          etag: str | None) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO partner_keys(partner, keys, etag, fetched_at) "
                       "VALUES (?, ?, ?, ?)",
                       [partner, json.dumps(keys), etag, iso(self._now())])

    def load_partner_keys(self, partner: str) -> tuple[list[dict[str, Any]], str | None,
                                                       datetime | None] | None:
        with self._lock:
            row = self.db.execute("SELECT keys, etag, fetched_at FROM partner_keys "
                                  "WHERE partner = ?", [partner]).fetchone()
        if row is None:
            return None
        fetched = datetime.fromisoformat(row[2]) if row[2] else None
        return json.loads(row[0]), row[1], fetched

    def remember_delivery(self, partner: str, delivery_id: str) -> bool:
        """True the first time a delivery id is seen, False for a redelivery."""
        with self._write() as db:
            cursor = db.execute("INSERT OR IGNORE INTO deliveries(partner, delivery_id, "
                                "received_at) VALUES (?, ?, ?)",
                                [partner, delivery_id, iso(self._now())])
            return cursor.rowcount == 1
