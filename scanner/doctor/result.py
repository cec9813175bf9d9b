"""What a doctor check says: one :class:`Result` per line, and the :class:`Report` of
them all (its status, exit status and JSON document). Its own module, so the checks
(:mod:`.hooks`, :mod:`.places`) and the package that runs them import it without a
cycle."""

from __future__ import annotations

from dataclasses import asdict, dataclass

OK, WARN, FAIL = "ok", "warn", "fail"
_RANK = {OK: 0, WARN: 1, FAIL: 2}


@dataclass(frozen=True, slots=True)
class Result:
    """One line of the report. ``redacted`` is the only form of a token shown."""

    check: str  # hooks.repository, hooks.global, env.CENDIS_TOKEN, files.home, files.env
    status: str  # ok | warn | fail
    message: str
    fix: str | None = None
    path: str | None = None
    line: int | None = None
    redacted: str | None = None
    confidence: str | None = None
    secret_sha256: str | None = None

    def text(self) -> str:
        where = f"{self.path}:{self.line}: " if self.path and self.line else (
            f"{self.path}: " if self.path else "")
        fix = f" (fix: {self.fix})" if self.fix else ""
        return f"{self.status:<4}  {self.check}: {where}{self.message}{fix}"


@dataclass(frozen=True, slots=True)
class Report:
    results: list[Result]
    home: str
    path: str

    @property
    def status(self) -> str:
        return max((r.status for r in self.results), key=_RANK.__getitem__, default=OK)

    @property
    def exit_status(self) -> int:
        """1 when something must be fixed; warnings alone are 0."""
        return 1 if self.status == FAIL else 0

    def as_json(self) -> dict[str, object]:
        counts = {s: sum(r.status == s for r in self.results) for s in _RANK}
        return {"version": 1, "status": self.status, "exit_status": self.exit_status,
                "home": self.home, "path": self.path, "counts": counts,
                "checks": [asdict(r) for r in self.results]}
