"""Records of a verified delivery → store items, and the feedback array.

The domain half of the receiver (the PyPI split): which record is usable, which is a
Cendis token by format, what a sighting holds, and which label a partner gets back. A raw
token lives only inside :func:`parse_records`: it leaves as a hash and a redacted form.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scanner.incidents.models import Recorded, Sighting, Status, TokenRef
from scanner.scrub import scrub
from scanner.server.errors import Rejected
from scanner.token import (
    ENTROPY_FLOOR,
    PREFIX,
    redact,
    run_is_checksummed,
    secret_sha256,
    shannon_entropy,
)

_TRUE = {Status.REVOKED, Status.ALREADY_REVOKED}
_FALSE = {Status.NOT_FOUND, Status.FALSE_POSITIVE}
_MAX_TEXT = 2048  # url, type and source are stored scrubbed, and not without bound
_ASCII_SPACE = " \t\n\r\x0b\x0c"
_SHAPE = re.compile(r"cendis_pat_[0-9A-Za-z]{36}")


def is_cendis_token(token: str) -> bool:
    """The same verdict as ``scanner.token.check(token) is VALID`` for a token exactly as
    a partner matched it, in a fraction of the time (this runs once per record): shape,
    then checksum, and the placeholder entropy test only for what passed both."""
    if not _SHAPE.fullmatch(token):
        return False
    run = token[len(PREFIX):]
    return run_is_checksummed(run.encode("ascii")) and shannon_entropy(run) >= ENTROPY_FLOOR


@dataclass(slots=True)
class ParsedReport:
    items: list[tuple[TokenRef, Sighting]] = field(default_factory=list)
    token_types: list[str] = field(default_factory=list)   # per item, for the feedback
    false_positive: set[str] = field(default_factory=set)  # sha256s not Cendis by format
    malformed: int = 0
    malformed_reasons: dict[str, int] = field(default_factory=dict)  # reason -> records

    def skip(self, reason: str) -> None:
        """Count a malformed record (a metric label each); it is not stored."""
        self.malformed += 1
        self.malformed_reasons[reason] = self.malformed_reasons.get(reason, 0) + 1


class _Malformed(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def storable(text: str) -> bool:
    """False for text SQLite cannot store: a lone surrogate (JSON's ``"\\ud800"``
    decodes to one, and UTF-8 has no form for it)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _field(record: dict[str, Any], key: str) -> str | None:
    """An optional text field of a record: a string or absent/null, storable, else the
    record is malformed (never stringified, never a failure of the whole delivery)."""
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Malformed("bad_type")
    if not storable(value):
        raise _Malformed("bad_text")
    return value


def _text(value: Any) -> str | None:
    """A record's url, type or source, scrubbed where it enters: a partner may quote the
    token it found in any of them (a ``?access_token=`` query, its base64), and what is
    stored, served, echoed in the feedback and forwarded to Cendis must not hold it.
    Cut before the scrub too (bounded work per record), far enough out that what the cut
    leaves of a token is only ever its first characters, which stay redacted."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    return scrub(text[:_MAX_TEXT * 4], _MAX_TEXT)


def token_ref(token: str) -> TokenRef:
    """Hash and redact on arrival. A string that is not ours is redacted without our
    prefix (``so…``), so its redacted form does not pretend to be a Cendis token."""
    raw = token.encode("utf-8", "surrogatepass")
    shown = redact(token) if token.startswith(PREFIX) else redact(token, prefix="")
    return TokenRef(sha256=secret_sha256(raw), redacted=shown)


def parse_records(body: bytes, *, partner: str, source: str, received_at: datetime,
                  delivery_id: str | None = None,
                  max_records: int | None = None) -> ParsedReport:
    """Parse a verified body. Malformed JSON, a non-array, or more than ``max_records``
    records (413) is the sender's error for the whole delivery; a malformed record (not
    an object, no token, a field of the wrong type or with text SQLite cannot store) is
    counted with its reason and skipped, never failing the rest: everything that joins
    the group commit has been checked here, so no record can fail another delivery."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[...
        raise Rejected("malformed_json", "the body is not JSON") from None
    if not isinstance(data, list):
        raise Rejected("not_an_array", "the body must be a JSON array of records")
    if max_records is not None and len(data) > max_records:
        raise Rejected("too_many_records", f"over {max_records} records in one delivery",
                       status=413)
    report = ParsedReport()
    for record in data:
        if not isinstance(record, dict):
            report.skip("not_an_object")
            continue
        token = record.get("token")
        if not isinstance(token, str) or not token.strip():
            report.skip("no_token")
            continue
        # A partner's match with a line break or spaces around it is still the token
        # (it would otherwise be a false positive, never revoked); inner garbage is not.
        token = token.strip(_ASCII_SPACE)
        try:
            if not storable(token):
                raise _Malformed("bad_text")
            url, kind, origin = (_field(record, "url"), _field(record, "type"),
                                 _field(record, "source"))
        except _Malformed as exc:
            report.skip(exc.reason)
            continue
        ref = token_ref(token)
        if not is_cendis_token(token):
            report.false_positive.add(ref.sha256)
        token_type = _text(kind)
        report.items.append((ref, Sighting(
            source=source, received_at=received_at, partner=partner,
            url=_text(url) or None, record_type=token_type,
            record_source=_text(origin), delivery_id=delivery_id)))
        report.token_types.append(token_type or "")
    return report


def feedback(report: ParsedReport, recorded: list[Recorded]) -> list[dict[str, str]]:
    """One entry per record whose outcome is known now (never the raw token)."""
    answer = []
    for (ref, _), token_type, result in zip(report.items, report.token_types, recorded,
                                            strict=True):
        if result.status in _TRUE:
            label = "true_positive"
        elif result.status in _FALSE:
            label = "false_positive"
        else:
            continue
        answer.append({"token_hash": ref.sha256, "token_type": token_type, "label": label})
    return answer
