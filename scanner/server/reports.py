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
from scanner.redaction import scrub
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
                  delivery_id: str | None = None) -> ParsedReport:
    """Parse a verified body. Malformed JSON or a non-array is the sender's error;
    a malformed record is counted and skipped, never failing the batch."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[...
        raise Rejected("malformed_json", "the body is not JSON") from None
    if not isinstance(data, list):
        raise Rejected("not_an_array", "the body must be a JSON array of records")
    report = ParsedReport()
    for record in data:
        token = record.get("token") if isinstance(record, dict) else None
        if not isinstance(token, str) or not token.strip():
            report.malformed += 1
            continue
        ref = token_ref(token)
        if not is_cendis_token(token):
            report.false_positive.add(ref.sha256)
        token_type = _text(record.get("type"))
        report.items.append((ref, Sighting(
            source=source, received_at=received_at, partner=partner,
            url=_text(record.get("url")) or None, record_type=token_type,
            record_source=_text(record.get("source")), delivery_id=delivery_id)))
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
