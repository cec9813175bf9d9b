"""Scans from threads, from worker processes and from an event loop.

The service half runs several scans at once in long-lived processes: every result
must be exact whichever way it is called, and a scan inside a worker process must work
(in-process) instead of failing to start a pool of its own.
"""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
from gitrepo import Repo

import scanner
from scanner.token import generate, secret_sha256

#: Force worker processes even for these small repositories.
PARALLEL = scanner.ScanOptions(jobs=2, parallel_bytes=0)


def _repo(tmp_path: Path, name: str, rng: random.Random) -> tuple[Path, set[str]]:
    repo = Repo.make(tmp_path, name)
    hashes = set()
    for i in range(3):
        token = generate(rng)
        hashes.add(secret_sha256(token.encode()))
        repo.commit(f"c{i}", **{f"{name}-{i}.txt": f"filler {i}\n" * 50 + f"k={token}\n"})
    return repo.path, hashes


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, set[str]]]:
    rng = random.Random(7)
    base = tmp_path_factory.mktemp("repos")
    return [_repo(base, f"r{i}", rng) for i in range(4)]


def _history(path: Path) -> set[str]:
    result = scanner.scan_git_history(path, scanner.load_rules(), PARALLEL)
    assert result.complete, result.errors
    return {f.secret_sha256 for f in result.findings}


def test_four_threads_four_repositories_twenty_rounds(
        repos: list[tuple[Path, set[str]]]) -> None:
    with ThreadPoolExecutor(4) as threads:
        for _ in range(20):
            got = list(threads.map(_history, [path for path, _ in repos]))
            assert got == [hashes for _, hashes in repos]


def test_threads_scanning_directories_at_once(tmp_path: Path) -> None:
    rng = random.Random(3)
    trees = []
    for i in range(4):
        tree = tmp_path / f"t{i}"
        tree.mkdir()
        tokens = [generate(rng) for _ in range(5)]
        for j, token in enumerate(tokens):
            (tree / f"f{j}.txt").write_text(f"x\nT={token}\n")
        trees.append((tree, {secret_sha256(t.encode()) for t in tokens}))
    rules = scanner.load_rules()

    def scan(tree: Path) -> set[str]:
        return {f.secret_sha256 for f in scanner.scan_paths([tree], rules, PARALLEL).findings}

    with ThreadPoolExecutor(4) as threads:
        for _ in range(5):
            assert list(threads.map(scan, [t for t, _ in trees])) == [h for _, h in trees]


def test_scan_inside_a_process_pool_worker(repos: list[tuple[Path, set[str]]]) -> None:
    """A daemon-free ProcessPoolExecutor worker and a multiprocessing.Pool (daemonic)
    worker both scan in-process instead of failing to start children."""
    import multiprocessing

    paths = [path for path, _ in repos]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        assert list(pool.map(_history, paths)) == [h for _, h in repos]
    with multiprocessing.get_context("fork").Pool(2) as daemonic:
        assert daemonic.map(_history, paths) == [h for _, h in repos]


def test_scan_with_the_callers_executor(repos: list[tuple[Path, set[str]]]) -> None:
    import multiprocessing

    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        for path, hashes in repos:
            result = scanner.scan_git_history(path, scanner.load_rules(), executor=pool)
            assert {f.secret_sha256 for f in result.findings} == hashes


def test_scan_from_a_running_event_loop(repos: list[tuple[Path, set[str]]]) -> None:
    async def main() -> list[set[str]]:
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(
            *(loop.run_in_executor(None, _history, path) for path, _ in repos)))

    assert asyncio.run(main()) == [hashes for _, hashes in repos]
