"""How ``store-v2.db`` was made: run with the schema-2 release (main before issue 17)
on the path, ``PYTHONPATH=<old checkout> python make_store_v2.py store-v2.db``, then
``sqlite3 store-v2.db 'PRAGMA journal_mode=DELETE'`` (one file, no -wal). Kept so the
fixture can be rebuilt; the tests only read the file. Tokens are generated here and
dropped: the file holds hashes and redacted forms only."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from scanner.incidents.models import RevokeOutcome, Sighting, Status, TokenRef
from scanner.incidents.store import SCHEMA_VERSION, Store
from scanner.token import generate


def main(path: str) -> None:
    assert SCHEMA_VERSION == 2, "run with the schema-2 release"
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    clock = [t0]
    store = Store.open(path, now=lambda: clock[0])
    refs = [TokenRef.from_token(generate()) for _ in range(3)]
    store.record([(refs[0], Sighting(source="github", received_at=t0, repository="o/r",
                                     url="https://github.com/o/r/blob/x/.env",
                                     delivery_id="d-1"))], revoke=True)
    store.record([(refs[1], Sighting(source="partner:acme", received_at=t0,
                                     url="https://acme/x", partner="acme"))], revoke=True)
    store.record([(refs[2], Sighting(source="scan:.", received_at=t0, path=".env",
                                     line=3))], revoke=False)
    clock[0] = t0 + timedelta(seconds=42)
    entries = store.claim_batch(1, owner="t", lease=60)
    store.apply_outcomes(entries, [RevokeOutcome(
        sha256=entries[0].sha256, status=Status.REVOKED, owner="alice", token_name="ci",
        org="acme", scopes=("admin:org",))], notify_owner=True)
    store.save_partner_keys("github", [{"key_identifier": "k1", "key": "pem"}], "etag1")
    store.remember_delivery("github", "d-1")
    store.close()


if __name__ == "__main__":
    main(sys.argv[1])
