"""Names are content: file and directory names, git paths and git identities.

A token pasted into a file name (``notes-cendis_pat_….txt``) or a git ``user.email`` is
as leaked as one inside a file: whoever lists the directory or reads the log has it.
Names are scanned here with the same detector as file contents, all of a scan's names
in one buffer (one pass, however many files), and the spans found are what
:func:`redact_names` replaces wherever the name is printed, so a token in a name is
reported once and never shown whole, in any encoding the detector knows (custom rule
prefixes and base64 included, which :func:`~scanner.scrub.scrub` alone does not
cover).
"""

from __future__ import annotations

import os
import re
from bisect import bisect_right
from collections.abc import Sequence

from scanner.engine.detect import Detector, Hit
from scanner.finding import Finding, SourceKind

#: Separates names in the scanned buffer: never part of a token or of base64.
_SEP = b"\n"
#: Splits a shown path into components (kept): folders, and archive members (``!``).
_PARTS = re.compile(r"([/!])")


def name_bytes(name: str | bytes) -> bytes:
    """The real bytes of a name (undecodable bytes kept, as the file system has them)."""
    return name if isinstance(name, bytes) else os.fsencode(name)


def scan_names(detector: Detector, names: Sequence[str | bytes]) -> dict[int, list[Hit]]:
    """The hits in each name that has some, by index (offsets within that name), in one
    detector pass over all of them; where nothing matches (nearly always) this costs
    one join and one search."""
    found: dict[int, list[Hit]] = {}
    if not names:
        return found
    if isinstance(names[0], str):  # callers pass all str (file names) or all bytes (git)
        buf = "\n".join(names).encode("utf-8", "surrogateescape")  # type: ignore[arg-type]
    else:
        buf = _SEP.join(names)  # type: ignore[arg-type]
    hits = detector.scan_text(buf)
    if not hits:
        return found
    raw = [name_bytes(n) for n in names]
    starts = []
    pos = 0
    for data in raw:
        starts.append(pos)
        pos += len(data) + len(_SEP)
    for hit in hits:
        i = bisect_right(starts, hit.offset) - 1
        lo = starts[i]
        hit.offset -= lo
        hit.end = min(hit.end - lo, len(raw[i]))
        found.setdefault(i, []).append(hit)
    return found


def redact_name(name: str | bytes, hits: Sequence[Hit]) -> str:
    """The name with every hit's span replaced by its redacted form, as text
    (undecodable bytes surrogate-escaped; :func:`~scanner.scrub.scrub` escapes
    them when the name is printed)."""
    data = name_bytes(name)
    out, pos = [], 0
    for hit in sorted(hits, key=lambda h: h.offset):
        if hit.offset < pos:
            pos = max(pos, hit.end)
            continue
        shown = hit.redacted if hit.encoding == "plain" else f"[{hit.encoding} of {hit.redacted}]"
        out += [data[pos : hit.offset], shown.encode()]
        pos = hit.end
    out.append(data[pos:])
    return os.fsdecode(b"".join(out))


def redact_path(path: str, renamed: dict[str, str]) -> str:
    """``path`` with each component that holds a token replaced by its redacted form
    (``renamed``: raw component to redacted component)."""
    if not renamed:
        return path
    return "".join(renamed.get(p, p) for p in _PARTS.split(path))


def path_findings(detector: Detector, entries: Sequence[tuple[str, str]]
                  ) -> tuple[list[Finding], int, dict[str, str]]:
    """Findings for the tokens in the last component of each entry (display path,
    fingerprint path): a directory's name is scanned once, at the directory, not again
    in every path below it. Returns (findings, suppressed hits, ``renamed`` for
    :func:`redact_path`)."""
    if not scan_names(detector, ["\n".join(display for display, _ in entries)]):
        return [], 0, {}  # the usual case: one search over all the paths
    entries = list(dict.fromkeys(entries))
    # The last component: after a "/" or an archive's "!" (``a.tgz!x``: the member
    # ``x``; the archive's own name is scanned where the archive is listed).
    bases = [_PARTS.split(display)[-1] for display, _ in entries]
    hits = scan_names(detector, bases)
    renamed = {bases[i]: redact_name(bases[i], found) for i, found in hits.items()}
    findings: list[Finding] = []
    suppressed = 0
    for i in sorted(hits):
        (display, fp_path), base = entries[i], bases[i]
        skip = len(name_bytes(display)) - len(name_bytes(base))
        for hit in hits[i]:
            if hit.suppressed:
                suppressed += 1
                continue
            findings.append(Finding(
                rule_id=hit.rule_id, confidence=hit.confidence,
                path=redact_path(display, renamed), line=None, column=None,
                offset=skip + hit.offset, encoding=hit.encoding, redacted=hit.redacted,
                secret_sha256=hit.secret_sha256, source=SourceKind.FILE, location="path",
                fingerprint_path=redact_path(fp_path, renamed)))
    return findings, suppressed, renamed


def member_names(path: str, fp_path: str, member: str, folders: set[str]
                 ) -> list[tuple[str, str]]:
    """(display, fingerprint path) for an archive member's name and for each folder
    above it not yet in ``folders``: an archive need not hold its folders as members
    (``dir/<token>/a`` alone) and a folder member ends in ``/``, so without this a
    token in a folder's name inside a tar or zip was never scanned. ``path`` and
    ``fp_path`` are the archive's."""
    trimmed = member.rstrip("/")
    if not trimmed:
        return []
    # Up from the member's own folder until one already seen: ``folders`` always holds
    # every folder above one it holds (an image's layer: 50,000 members, few new
    # folders each).
    missing = []
    folder = trimmed
    while (cut := folder.rfind("/")) >= 0:
        folder = folder[:cut]
        if folder in folders:
            break
        if folder.strip("/"):
            missing.append(folder)
    folders.update(missing)
    out = [(f"{path}!{f}", f"{fp_path}!{f}") for f in reversed(missing)]
    out.append((f"{path}!{trimmed}", f"{fp_path}!{trimmed}"))
    return out


def link_findings(detector: Detector, links: Sequence[tuple[str, str, str]],
                  source: SourceKind) -> tuple[list[Finding], int]:
    """Findings for the tokens in links' targets ((display, fingerprint path, target)
    of each link member): a target is a name written into the archive (``ln -s
    cendis_pat_… x``), as leaked as a member's name, reported at the link, ``location``
    ``link``, with the offset in the target. Returns (findings, suppressed hits)."""
    findings: list[Finding] = []
    suppressed = 0
    for i, hits in sorted(scan_names(detector, [target for _, _, target in links]).items()):
        display, fp, _ = links[i]
        for hit in hits:
            if hit.suppressed:
                suppressed += 1
                continue
            findings.append(Finding(
                rule_id=hit.rule_id, confidence=hit.confidence, path=display, line=None,
                column=None, offset=hit.offset, encoding=hit.encoding,
                redacted=hit.redacted, secret_sha256=hit.secret_sha256, source=source,
                location="link", fingerprint_path=fp))
    return findings, suppressed


def ref_findings(detector: Detector, refs: Sequence[bytes]) -> list[Finding]:
    """Tokens in ref names (branches, tags, a push's remote ref): names are pushed and
    published like content. ``path`` is the redacted ref name, ``location`` ``ref``."""
    out = []
    for i, hits in sorted(scan_names(detector, refs).items()):
        shown = redact_name(refs[i], hits)
        out += [Finding(rule_id=h.rule_id, confidence=h.confidence, path=shown, line=None,
                        column=None, offset=h.offset, encoding=h.encoding,
                        redacted=h.redacted, secret_sha256=h.secret_sha256,
                        source=SourceKind.GIT, fingerprint_path=shown, location="ref")
                for h in hits if not h.suppressed]
    return out
