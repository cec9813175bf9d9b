"""Objects read from git and scanned by the engine, each once: a whole store in worker
processes, or a few objects at a time on demand.

Here the git source (:mod:`scanner.git.objects`, which only reads) meets the engine
(:mod:`scanner.engine.objects`, which only scans): each worker runs its own cat-file
over a contiguous run of the pack order and scans what it hands over.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass, field

from scanner.engine import pool as pools
from scanner.engine.detect import Detector
from scanner.engine.objects import Batch, Scanned, scan_items
from scanner.errors import GitError
from scanner.git import objects as git_objects
from scanner.git.batch import OBJECT_REGION
from scanner.result import PARALLEL_BYTES, issue
from scanner.rules import Rule

#: From this many objects on, a range's blobs are read by worker processes.
MANY = 2000


def _scan_share(repo: str, rules: list[Rule], oids: bytes) -> Batch:
    """A worker's share: its own cat-file over a contiguous run of the pack order.
    Self-contained (the rules travel with it), so it runs in any process pool. If git
    fails, its own message is the share's error."""
    batch = Batch()
    try:
        scan_items(Detector(rules), git_objects.read_share(repo, oids), batch)
    except GitError as exc:
        batch.errors = [issue("git cat-file", exc)]
    return batch


def scan_objects(repo: str, rules: list[Rule], objs: git_objects.Objects, jobs: int = 0,
                 executor: Executor | None = None, threshold: int = PARALLEL_BYTES) -> Batch:
    """Scan every object in ``objs`` once, in worker processes when there is enough."""
    if executor is None and not pools.worth_it(jobs, sum(objs.sizes), threshold):
        reader = git_objects.CatFile(repo)
        try:
            return scan_items(Detector(rules), reader.read(objs.ids.decode().split()))
        finally:
            reader.close()
    batch = Batch()
    workers = pools.worker_count(jobs)
    # Four shares per worker balance the load; but no share smaller than a region, so a
    # small set does not start a cat-file per handful of objects.
    parts = max(workers, min(workers * 4, sum(objs.sizes) // OBJECT_REGION))
    with pools.executor(jobs, executor) as pool:
        futures = [pool.submit(_scan_share, repo, rules, share)
                   for share in git_objects.shares(objs, parts)]
        for future in as_completed(futures):
            batch.merge(future.result())
    return batch


@dataclass(slots=True)
class ObjectScans:
    """Scan results by object id, filled on demand through one cat-file process.

    In a whole-history scan every object was scanned up front (``complete``), so an id
    without hits is simply clean.
    """

    repo: str
    rules: list[Rule]
    jobs: int = 0
    executor: Executor | None = None
    threshold: int = PARALLEL_BYTES
    batch: Batch = field(default_factory=Batch)
    seen: set[str] = field(default_factory=set)
    complete: bool = False
    reader: git_objects.CatFile | None = None

    def ensure(self, oids: Iterable[str]) -> None:
        if self.complete:
            return
        todo = list(dict.fromkeys(o for o in oids if o not in self.seen))
        if len(todo) >= MANY:  # a long range (a first push): read them in parallel
            self.batch.merge(scan_objects(self.repo, self.rules,
                                          git_objects.sizes(self.repo, todo),
                                          self.jobs, self.executor, self.threshold))
        elif todo:
            if self.reader is None:
                self.reader = git_objects.CatFile(self.repo)
            self.batch.merge(scan_items(Detector(self.rules), self.reader.read(todo)))
        self.seen.update(todo)

    def get(self, oid: str | None) -> Scanned | None:
        return None if oid is None else self.batch.hits.get(oid)

    def secrets(self, oid: str | None) -> set[str]:
        found = self.get(oid)
        return found.secrets if found else set()

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
