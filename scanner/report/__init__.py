"""Reports: one module per format, each a single ``render(result) -> str`` function."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scanner.scan import Result

FORMATS = ("text", "json", "sarif")


def render(fmt: str, result: Result, *, color: bool = False) -> str:
    if fmt == "json":
        from scanner.report import json as report
    elif fmt == "sarif":
        from scanner.report import sarif as report
    else:
        from scanner.report import text as report
    return report.render(result, color=color)
