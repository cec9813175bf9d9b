"""SARIF 2.1.0 for GitHub code scanning and other SARIF consumers.

``partialFingerprints`` carries our line-independent fingerprint, so code scanning
keeps one alert per leaked secret per file as lines move.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from scanner.report.text import POSSIBLE, ROTATE
from scanner.scrub import unescape_bytes

if TYPE_CHECKING:
    from scanner.finding import Finding
    from scanner.result import ScanResult as Result

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI = "https://github.com/cendis/cendis-scan"


def _rule(rule_id: str) -> dict[str, Any]:
    return {
        "id": rule_id,
        "name": "LeakedCendisToken",
        "shortDescription": {"text": "Cendis personal access token in source"},
        "fullDescription": {"text": "A cendis_pat_ token grants its owner's scopes (up to "
                                    "admin:org) to whoever reads it."},
        "help": {"text": f"Revoke and rotate: {ROTATE}.",
                 "markdown": f"**Revoke and rotate**: {ROTATE}."},
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["security", "secret"], "precision": "very-high",
                       "security-severity": "9.0"},
    }


def _location(f: Finding) -> dict[str, Any]:
    # Paths are scrubbed text (``\\xNN`` for a byte that is not UTF-8); a URI
    # percent-encodes the real bytes of the name instead.
    path = f.path
    inside: str | None = None
    if path and "!" in path:
        # Inside an archive (or an image): the artifact is the file on disk, and the
        # path inside it (members, image reference, layer) a logical location. Never
        # URI path segments: a member named ``../../etc/passwd`` would make
        # ``a.tar%21../../etc/passwd``, which any URI normaliser turns into
        # ``etc/passwd``, another file.
        path, _, inside = path.partition("!")
    uri = quote(unescape_bytes(path), safe="/") if path else ".git/COMMIT_EDITMSG"
    artifact = {"uri": uri, "uriBaseId": "%SRCROOT%"}
    location: dict[str, Any] = {"physicalLocation": {"artifactLocation": artifact}}
    if inside is not None:
        location["logicalLocations"] = [{"fullyQualifiedName": inside, "kind": "resource"}]
    if f.location in ("path", "link", "author", "committer"):  # the name itself, not a place in it
        return location
    region: dict[str, Any]
    if f.line is None:
        region = {"byteOffset": f.offset}
    else:
        region = {"startLine": f.line, "startColumn": f.column or 1}
    location["physicalLocation"]["region"] = region
    return location


def _result(f: Finding, index: dict[str, int]) -> dict[str, Any]:
    what = f"{f.confidence} Cendis token {f.redacted}"
    if f.variable:
        what += f" in {f.variable}"
    if f.encoding != "plain":
        what += f" ({f.encoding}-encoded)"
    text = what + (f". {POSSIBLE}." if f.confidence == "possible" else ".")
    props: dict[str, Any] = {"confidence": f.confidence, "encoding": f.encoding,
                             "secret_sha256": f.secret_sha256, "redacted": f.redacted}
    for key in ("commit", "author_name", "author_email", "date", "location", "occurrences",
                "note"):
        value = getattr(f, key)
        if value is not None:
            props[key] = value
    if f.image is not None:
        props["image"], props["layer"] = f.image
    return {
        "ruleId": f.rule_id,
        "ruleIndex": index[f.rule_id],
        "level": "error" if f.confidence == "confirmed" else "warning",
        "message": {"text": text},
        "locations": [_location(f)],
        "partialFingerprints": {"cendisFingerprint/v1": f.fingerprint,
                                "cendisSecret/v1": f.secret_sha256},
        "properties": props,
    }


def render(result: Result, *, color: bool = False) -> str:
    from scanner import __version__

    ids = sorted({f.rule_id for f in result.findings} | {"cendis-pat"})
    index = {rule_id: i for i, rule_id in enumerate(ids)}
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "cendis-scan", "version": __version__,
                            "informationUri": INFO_URI,
                            "rules": [_rule(rule_id) for rule_id in ids]}},
        "columnKind": "unicodeCodePoints",
        "results": [_result(f, index) for f in result.findings],
        "invocations": [{"executionSuccessful": not result.errors,
                         "toolExecutionNotifications": [
                             {"level": "error", "message": {"text": e.message}}
                             for e in result.errors]}],
    }
    doc = {"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
