"""Deprecated: the git entry points live in :mod:`scanner.git.scan` (and the pre-push
protocol in :mod:`scanner.git.protocol`). This name keeps old imports working; use
``scanner.scan_git_staged`` and the other public names instead."""

from __future__ import annotations

import warnings

from scanner.git.protocol import push_revs
from scanner.git.scan import new_since, scan_history, scan_revs, scan_staged

__all__ = ["new_since", "push_revs", "scan_history", "scan_revs", "scan_staged"]

warnings.warn("scanner.gitscan is deprecated: use scanner.git.scan (or the public "
              "scanner.scan_git_* functions)", DeprecationWarning, stacklevel=2)
