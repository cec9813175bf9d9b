"""A progress bar that only appears when a scan turns out to be slow.

rich costs ~50 ms to import, more than a one-file scan takes, so it is imported only
once a scan has run for a second, and only when stderr is a terminal.
"""

from __future__ import annotations

import sys
import time
from typing import Any

DELAY = 1.0


class Progress:
    def __init__(self, *, clock: Any = time.monotonic):
        self.clock = clock
        self.started = clock()
        self.bar: Any = None
        self.task: Any = None

    def __call__(self, files: int, nbytes: int) -> None:
        if self.bar is None:
            if self.clock() - self.started < DELAY:
                return
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            self.bar = Bar(
                TextColumn("scanning"), BarColumn(),
                TextColumn("{task.fields[files]} files, {task.fields[mb]:.1f} MB"),
                TimeElapsedColumn(), console=Console(file=sys.stderr), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("scan", total=None, files=0, mb=0.0)
        self.bar.update(self.task, files=files, mb=nbytes / 1e6)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def wanted(fmt: str) -> bool:
    return fmt == "text" and sys.stderr.isatty()
