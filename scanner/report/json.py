"""The JSON report: an object with a version, the findings and a summary."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scanner.result import ScanResult as Result

VERSION = 1


def render(result: Result, *, color: bool = False) -> str:
    data = {
        "version": VERSION,
        "findings": [f.to_dict() for f in result.findings],
        "summary": result.summary(),
    }
    if result.errors:
        data["errors"] = [e.message for e in result.errors]
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
