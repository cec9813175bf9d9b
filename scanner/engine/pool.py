"""Process pools, owned in one place and safe for any caller.

A scan is called from the CLI, from threads of a service, from an asyncio loop (through
``run_in_executor``) and from processes that are themselves workers. So:

- nothing lives in module globals: every task carries what a worker needs (the rules,
  which pickle, and the work), and a worker builds its own detector;
- ``fork`` is used only when the calling process has a single thread (it is the fastest
  start, and safe there); with other threads running, ``forkserver`` starts workers from
  a clean process, so no lock held by another thread is copied into a child;
- a process that is itself a multiprocessing child works in-process instead of nesting
  pools (a daemonic worker may not have children at all);
- a caller may pass its own executor; it is used as is and never shut down here.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # multiprocessing costs ~12 ms to import: only a pool pays for it
    from concurrent.futures import Executor, ProcessPoolExecutor

#: From this many files on, a scan uses workers whatever their size.
PARALLEL_FILES = 400


def worker_count(jobs: int) -> int:
    """``jobs``, or one per core when 0."""
    return jobs if jobs > 0 else (os.cpu_count() or 1)


def in_worker() -> bool:
    """True inside a multiprocessing child (a pool worker of ours or of a caller's)."""
    mp = sys.modules.get("multiprocessing")
    if mp is None:  # every pool's worker has imported it (fork, spawn or forkserver)
        return False
    return mp.parent_process() is not None or mp.current_process().daemon


def worth_it(jobs: int, nbytes: int, threshold: int, items: int = 0) -> bool:
    """Whether a scan of ``nbytes`` (``items`` inputs) should use worker processes;
    ``threshold`` is ScanOptions.parallel_bytes."""
    return (worker_count(jobs) >= 2 and not in_worker()
            and (nbytes >= threshold or items >= PARALLEL_FILES))


@contextmanager
def executor(jobs: int, given: Executor | None = None) -> Iterator[Executor]:
    """A pool of ``jobs`` worker processes for the duration of a scan, or ``given``."""
    if given is not None:
        yield given
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if threading.active_count() == 1 else "forkserver"
    if method not in multiprocessing.get_all_start_methods():
        method = "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        # Workers forked from a server that already imported the scanner start in
        # milliseconds instead of importing it again each.
        context.set_forkserver_preload(["scanner.scan", "scanner.git.scan"])
    pool = ProcessPoolExecutor(worker_count(jobs), mp_context=context,
                               initializer=_quiet_worker)
    try:
        yield pool
    except BaseException:
        stop(pool)
        raise
    else:
        pool.shutdown(wait=True)


def stop(pool: ProcessPoolExecutor) -> None:
    """End a pool now (Ctrl-C, SIGTERM, an error): queued work is dropped and running
    workers are terminated rather than waited for."""
    workers = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in workers:
        if proc.is_alive():
            proc.terminate()
    for proc in workers:
        proc.join(5)
    # The pool's manager thread closes its wake-up pipe on its way out; joined here, the
    # interpreter's exit hook no longer races it (on 3.11 that race printed an "Exception
    # ignored ... Bad file descriptor" traceback after a SIGTERM, rarely).
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None:
        manager.join(5)


def _quiet_worker() -> None:
    """Workers leave Ctrl-C and SIGTERM to the parent, which stops them: one line on
    the terminal instead of a traceback from every worker. A forked worker inherits the
    parent's Python handlers, so SIGTERM (what ``stop`` sends) is given back its
    default: the worker ends at once, silently."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
