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
MAX_DEPTH = 64  # containers in one record: deeper is a malformed record ("too_deep")
_MAX_INT_DIGITS = 4000  # under Python's int-digits limit: longer is "huge_number"
_WS = re.compile(r"[ \t\n\r]*")  # JSON's whitespace
_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


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


class _Decoder:
    """Decodes one top-level element at a time, so that a record Python's ``json`` cannot
    turn into objects (an integer over the int-digits limit, nesting past the recursion
    limit or :data:`MAX_DEPTH`) is one malformed record, not a refused delivery."""

    def __init__(self) -> None:
        self.huge = False
        self.decoder = json.JSONDecoder(parse_int=self._int)

    def _int(self, digits: str) -> int | None:
        if len(digits) > _MAX_INT_DIGITS:  # int() would raise ValueError past ~4300
            self.huge = True
            return None
        return int(digits)

    def element(self, text: str, pos: int) -> tuple[Any, int]:
        """The element at ``pos`` (or a :class:`_Malformed` for it) and where it ends."""
        self.huge = False
        try:
            value, end = self.decoder.raw_decode(text, pos)
        except RecursionError:
            return _Malformed("too_deep"), _skip_nested(text, pos)
        except ValueError:
            raise Rejected("malformed_json", "the body is not JSON") from None
        if self.huge:
            return _Malformed("huge_number"), end
        if _depth_over(value, MAX_DEPTH):
            return _Malformed("too_deep"), end
        return value, end


def _depth_over(value: Any, limit: int) -> bool:
    """True if containers nest more than ``limit`` deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (item.values() if isinstance(item, dict)
                    else item if isinstance(item, list) else None)
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return False


def _skip_nested(text: str, pos: int) -> int:
    """Where the container opening at ``pos`` closes, counting brackets outside strings:
    only for an element too deep to decode, which is skipped whole (its inside is not
    checked further; a body that never closes it is not JSON)."""
    depth = 0
    for match in _BRACKETS.finditer(text, pos):
        token = match.group()
        if token in "[{":
            depth += 1
        elif token in "]}":
            depth -= 1
            if depth == 0:
                return match.end()
    raise Rejected("malformed_json", "the body is not JSON")


def _elements(body: bytes) -> list[Any]:
    """The top-level array of a body, element by element (a malformed one as a
    :class:`_Malformed`); a body that is not JSON or not an array fails whole."""
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except (UnicodeDecodeError, LookupError):
        raise Rejected("malformed_json", "the body is not JSON") from None
    pos = _WS.match(text).end()  # type: ignore[union-attr]
    if text.startswith("\ufeff") or pos == len(text):
        raise Rejected("malformed_json", "the body is not JSON")
    if text[pos] != "[":
        _Decoder().element(text, pos)  # not JSON: 400 malformed_json; else not an array
        raise Rejected("not_an_array", "the body must be a JSON array of records")
    decoder, elements = _Decoder(), []
    pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            value, pos = decoder.element(text, pos)
            elements.append(value)
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
            if text.startswith(",", pos):
                pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
            elif text.startswith("]", pos):
                pos += 1
                break
            else:
                raise Rejected("malformed_json", "the body is not JSON")
    if _WS.match(text, pos).end() != len(text):  # type: ignore[union-attr]
        raise Rejected("malformed_json", "the body is not JSON")
    return elements


def parse_records(body: bytes, *, partner: str, source: str, received_at: datetime,
                  delivery_id: str | None = None,
                  max_records: int | None = None) -> ParsedReport:
    """Parse a verified body. Malformed JSON, a non-array, or more than ``max_records``
    records (413) is the sender's error for the whole delivery; a malformed record (not
    an object, no token, a field of the wrong type or with text SQLite cannot store) is
    counted with its reason and skipped, never failing the rest: everything that joins
    the group commit has been checked here, so no record can fail another delivery."""
    data = _elements(body)
    if max_records is not None and len(data) > max_records:
        raise Rejected("too_many_records", f"over {max_records} records in one delivery",
                       status=413)
    report = ParsedReport()
    for record in data:
        if isinstance(record, _Malformed):
            report.skip(record.reason)
            continue
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
