"""cendis-scan: find, block and revoke leaked Cendis personal access tokens.

The public API is small and importing it is cheap (no typer, no aiohttp), because the
scan path and the git hooks start a new Python process for every run.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
