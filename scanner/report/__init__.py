"""Reports: one module per format, each a single ``render(result) -> str`` function."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scanner.result import ScanResult as Result


class Format(StrEnum):
    """The report formats, one module each (``scanner/report/<format>.py``): the CLI's
    ``--format`` choices are these."""

    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"
    GITLAB = "gitlab"


FORMATS = tuple(f.value for f in Format)


def render(fmt: str, result: Result, *, color: bool = False, advice: bool = True) -> str:
    """``result`` in format ``fmt``. ``advice=False`` leaves out the text report's "what
    to do" lines (a blocking hook says them once in its own message)."""
    import importlib

    name = fmt if fmt in FORMATS else "text"
    report = importlib.import_module(f"scanner.report.{name}")
    if name == "text":
        return str(report.render(result, color=color, advice=advice))
    return str(report.render(result, color=color))
