"""Reports: one module per format, each a single ``render(result) -> str`` function."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scanner.result import ScanResult as Result

FORMATS = ("text", "json", "sarif", "gitlab")


def render(fmt: str, result: Result, *, color: bool = False) -> str:
    import importlib

    name = fmt if fmt in FORMATS else "text"
    report = importlib.import_module(f"scanner.report.{name}")
    return report.render(result, color=color)
