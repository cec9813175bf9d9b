"""cendis-scan: find, block and revoke leaked Cendis personal access tokens.

The public API, for the service half and for users' own scripts::

    import scanner

    rules = scanner.load_rules()                      # built-in rules (+ your files)
    result = scanner.scan_paths(["src", ".env"], rules)
    for f in result.findings:                         # frozen, redacted Finding objects
        print(f.path, f.line, f.redacted, f.secret_sha256)

    scanner.scan_stream(sys.stdin.buffer, rules)      # constant memory
    scanner.scan_bytes(body, rules)
    scanner.scan_git_staged(".", rules)               # what the next commit adds
    scanner.scan_git_revs(repo, scanner.new_since(tips, old_tips), rules)
    scanner.scan_git_history(repo, rules)             # every commit of every ref

Every scan function takes a :class:`ScanOptions` (immutable) and returns a
:class:`ScanResult`; none keeps state between calls, so scans may run concurrently in
threads, in an event loop (``loop.run_in_executor``) or in worker processes. Errors
are :class:`ScanError` subclasses, each with a short ``reason``.

Importing this package is cheap (no typer, no aiohttp, not even RE2): names are loaded
on first use, because the git hooks start a new Python process for every commit.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs the hook a few ms

__version__ = "0.1.0"

if TYPE_CHECKING:
    from typing import Any

    from scanner.errors import ConfigError, GitError, ScanError, SourceError, UsageError
    from scanner.finding import Confidence, Finding, SourceKind
    from scanner.git.scan import new_since
    from scanner.git.scan import scan_history as scan_git_history
    from scanner.git.scan import scan_revs as scan_git_revs
    from scanner.git.scan import scan_staged as scan_git_staged
    from scanner.result import ScanIssue, ScanOptions, ScanResult
    from scanner.rules import Rule
    from scanner.rules import load as load_rules
    from scanner.scan import scan_bytes, scan_paths, scan_stream

_PUBLIC = {
    "load_rules": ("scanner.rules", "load"),
    "Rule": ("scanner.rules", "Rule"),
    "scan_paths": ("scanner.scan", "scan_paths"),
    "scan_stream": ("scanner.scan", "scan_stream"),
    "scan_bytes": ("scanner.scan", "scan_bytes"),
    "scan_git_staged": ("scanner.git.scan", "scan_staged"),
    "scan_git_revs": ("scanner.git.scan", "scan_revs"),
    "scan_git_history": ("scanner.git.scan", "scan_history"),
    "new_since": ("scanner.git.scan", "new_since"),
    "Finding": ("scanner.finding", "Finding"),
    "Confidence": ("scanner.finding", "Confidence"),
    "SourceKind": ("scanner.finding", "SourceKind"),
    "ScanOptions": ("scanner.result", "ScanOptions"),
    "ScanResult": ("scanner.result", "ScanResult"),
    "ScanIssue": ("scanner.result", "ScanIssue"),
    "ScanError": ("scanner.errors", "ScanError"),
    "UsageError": ("scanner.errors", "UsageError"),
    "ConfigError": ("scanner.errors", "ConfigError"),
    "SourceError": ("scanner.errors", "SourceError"),
    "GitError": ("scanner.errors", "GitError"),
}

__all__ = [
    "ConfigError", "Confidence", "Finding", "GitError", "Rule", "ScanError", "ScanIssue",
    "ScanOptions", "ScanResult", "SourceError", "SourceKind", "UsageError", "__version__",
    "load_rules", "new_since", "scan_bytes", "scan_git_history", "scan_git_revs",
    "scan_git_staged", "scan_paths", "scan_stream",
]


def __getattr__(name: str) -> Any:
    import importlib  # here, not above: the hook's quick answer never needs it (~0.5 ms)

    try:
        module, attr = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'scanner' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), attr)


def __dir__() -> list[str]:
    return sorted(__all__)
