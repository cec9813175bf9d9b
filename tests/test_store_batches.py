"""PostgreSQL records a batch with set-based statements, SQLite item by item: the same
batches on both give the same answers and the same trail (issue 16's performance work
must not change a guarantee). Each case is a sequence of steps on a fresh database of
each backend; the trails are compared by token (ids may differ: a PostgreSQL identity
advances on a conflicting insert too)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pgtools import fresh_schema

from scanner.incidents.models import RevokeOutcome, Sighting, Status, TokenRef
from scanner.incidents.store import Store, claim_owner

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

#: A step: ("record", [(token index, sighting fields)], revoke, {false positive indexes})
#: or ("close", {token index: status}) (claimed and answered by the API).
CASES: dict[str, list[tuple[Any, ...]]] = {
    "one token twice, two places, identical sighting twice": [
        ("record", [(0, {"url": "u1"}), (0, {"url": "u2"}), (1, {}), (0, {"url": "u1"})],
         True, set()),
    ],
    "recorded first, then queued, twice in the batch": [
        ("record", [(0, {}), (1, {"path": "a"})], False, set()),
        ("record", [(2, {}), (0, {"url": "x"}), (0, {"url": "x"}), (1, {"path": "a"})],
         True, set()),
    ],
    "false positives: new, pending, twice, beside queued ones": [
        ("record", [(0, {}), (1, {})], True, set()),
        ("record", [(1, {"url": "again"}), (2, {}), (1, {}), (3, {}), (2, {"path": "p"})],
         True, {1, 2}),
    ],
    "closed tokens stay closed": [
        ("record", [(0, {}), (1, {}), (2, {})], True, set()),
        ("close", {0: Status.REVOKED, 1: Status.NOT_FOUND}),
        ("record", [(0, {"url": "later"}), (1, {}), (2, {"url": "later"}), (0, {})], True,
         {1}),
    ],
    "sighting times out of order": [
        ("record", [(0, {"at": 5}), (0, {"at": -3, "url": "b"}), (1, {"at": 2})], True,
         set()),
        ("record", [(0, {"at": -10, "url": "c"}), (1, {"at": 20, "url": "d"})], False, set()),
    ],
    "a token in a url is scrubbed, then still one sighting": [
        ("record", [(0, {"url": "https://x/?t={token1}"}), (0, {"url": "https://x/?t={token1}"}),
                    (1, {"delivery_id": "d1", "commit": "c", "line": 7, "author": "a <b>"})],
         True, set()),
    ],
    "many distinct tokens": [
        ("record", [(n, {"line": n}) for n in range(40)], True, {3, 17}),
        ("record", [(n, {"line": n}) for n in range(0, 60, 3)], False, set()),
    ],
}


def _run(store: Store, steps: list[tuple[Any, ...]], tokens: list[str]) -> list[Any]:
    refs = [TokenRef.from_token(t) for t in tokens]
    answers: list[Any] = []
    for step in steps:
        if step[0] == "close":
            entries = store.claim_batch(100, owner=claim_owner("t"), lease=60)
            shas = [r.sha256 for r in refs]
            chosen = [e for e in entries if shas.index(e.sha256) in step[1]]
            outcomes = [RevokeOutcome(sha256=e.sha256, status=step[1][shas.index(e.sha256)])
                        for e in chosen]
            store.attempt_failed([e for e in entries if e not in chosen], "later",
                                 answered=True)
            answers.append(store.apply_outcomes(chosen, outcomes, notify_owner=True))
            continue
        _, spec, revoke, fps = step
        items = []
        for index, fields in spec:
            fields = dict(fields)
            at = T0 + timedelta(seconds=fields.pop("at", 0))
            if "url" in fields:
                fields["url"] = fields["url"].replace("{token1}", tokens[1])
            items.append((refs[index], Sighting(source="github", received_at=at, **fields)))
        recorded = store.record(items, revoke=revoke,
                                false_positive={refs[i].sha256 for i in fps})
        answers.append([(r.sha256, r.status, r.new_incident, r.new_sighting)
                        for r in recorded])
    return answers


def _trail(store: Store) -> dict[str, Any]:
    """The whole trail, with ids replaced by the token they belong to."""
    incidents = store.dump("incidents")
    sha_of = {row["id"]: row["sha256"] for row in incidents}
    return {
        "incidents": sorted((r["sha256"], r["status"], r["first_seen"], r["last_seen"],
                             r["revoke_attempts"], r["updated_at"]) for r in incidents),
        "order": [r["sha256"] for r in incidents],
        "sightings": [(sha_of[r["incident_id"]], r["source"], r["url"], r["commit"],
                       r["path"], r["line"], r["author"], r["delivery_id"], r["received_at"])
                      for r in store.dump("sightings")],
        "events": [(sha_of[r["incident_id"]], r["at"], r["kind"], r["detail"])
                   for r in store.dump("events")],
        "queue": [(r["sha256"], sha_of[r["incident_id"]], r["source"], r["url"],
                   r["attempts"], r["last_error"]) for r in store.dump("revoke_queue")],
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_batch_records_alike_on_both_backends(case: str, tmp_path: Path,
                                                make_token: Callable[[], str]) -> None:
    tokens = [make_token() for _ in range(60)]
    with fresh_schema() as url:
        results = {}
        for name, target in (("sqlite", str(tmp_path / "a.db")), ("postgresql", url)):
            with Store.open(target, now=lambda: T0) as store:
                assert store.backend == name
                results[name] = (_run(store, CASES[case], tokens), _trail(store))
    assert results["postgresql"][0] == results["sqlite"][0]
    assert results["postgresql"][1] == results["sqlite"][1]
    assert results["sqlite"][1]["events"]  # the case did write a trail
    assert tokens[1] not in repr(results["postgresql"][1])  # the url's token was scrubbed


@pytest.mark.parametrize("how", ["db migrate", "open"])
def test_a_missing_queue_index_is_created_by_migrate(how: str, cli: Any) -> None:
    """A version-2 PostgreSQL database made before the queue's index existed gets it
    from ``db migrate`` or at the next opening (both migrate); a reader does not."""
    from scanner.incidents.store import open_reader
    from scanner.incidents.store.postgres_schema import INDEXES

    with fresh_schema() as url:
        Store.open(url).close()

        def present() -> set[str]:
            with Store.open(url, migrate=False) as store:
                rows = store.db.execute("SELECT indexname FROM pg_indexes WHERE "
                                        "schemaname = current_schema()").fetchall()
            return {r[0] for r in rows} & set(INDEXES)

        assert present() == set(INDEXES)
        with Store.open(url, migrate=False) as store:
            for name in INDEXES:
                store.db.execute(f"DROP INDEX {name}")
        open_reader(url).close()
        assert present() == set()
        if how == "db migrate":
            assert cli(["db", "migrate", "--db", url]).returncode == 0
        else:
            Store.open(url).close()
        assert present() == set(INDEXES)
