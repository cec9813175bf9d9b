"""One finding per token, at the change that introduced it.

A :class:`Place` is somewhere a history wrote a token (a commit and a path, a commit
or tag message, a tag's blob or tree, a path name) with what it introduced there; the
walk that finds them is :mod:`scanner.git.history`. A token is reported once, at the
earliest place that introduced it, and every place that wrote it is counted in
``occurrences``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from scanner.engine.objects import Scanned
from scanner.finding import Finding
from scanner.git.commits import Commit
from scanner.git.objects import Tag
from scanner.git.plumbing import display


@dataclass(slots=True)
class Place:
    """A path (or a commit or tag message) that a change wrote, holding a token."""

    order: int  # position in the walk: larger is earlier in history
    commit: Commit | None
    path: bytes | None  # None: a message
    scanned: Scanned
    introduced: set[str]
    tag: Tag | None = None  # the tag whose message this is, or that points here
    #: The commits whose trees were there before (a staged change's is HEAD).
    parents: tuple[str, ...] = ()


@dataclass(slots=True)
class Attribution:
    """What a walk found: the places, the inline-suppressed hits the changes added,
    the printable form of paths that hold a token themselves, and how many commits
    were looked at."""

    places: list[Place]
    suppressed: int = 0
    renamed: dict[bytes, str] | None = None
    commits: int = 0

    def findings(self) -> list[Finding]:
        return findings_of(self.places, self.renamed)


def findings_of(places: list[Place], renamed: dict[bytes, str] | None = None
              ) -> list[Finding]:
    """One finding per secret, at its earliest introduction; ``occurrences`` counts
    every place (commit and path, or message) that wrote it. Oldest first; within one
    place, in the order of the text (never in the order of a set: the output is the
    same whatever the hash seed)."""
    count: dict[str, set[tuple[str, bytes | None]]] = {}
    best: dict[str, tuple[tuple[int, bool, tuple[int, ...]], Place]] = {}
    for place in places:
        where = (_owner(place), place.path)
        for secret in place.scanned.secrets:
            count.setdefault(secret, set()).add(where)
        for secret in place.introduced:
            key = (place.order, place.path is not None, _neg(place.path or b""))
            if secret not in best or key > best[secret][0]:
                best[secret] = (key, place)
    chosen = []
    for secret, (key, place) in best.items():
        first = min((f for f in place.scanned.findings if f.secret_sha256 == secret),
                    key=lambda f: (f.offset, f.secret_sha256))
        chosen.append(((key, -first.offset, _neg(secret.encode())), first, place, secret))
    chosen.sort(key=lambda item: item[0], reverse=True)
    return [_located(first, place, len(count[secret]), renamed or {})
            for _, first, place, secret in chosen]


def _owner(place: Place) -> str:
    if place.commit is not None:
        return place.commit.oid
    return place.tag.oid if place.tag is not None else ""


def _located(first: Finding, place: Place, occurrences: int, renamed: dict[bytes, str]
             ) -> Finding:
    """The engine's finding with where the history put it; ``renamed`` gives the
    printable form of paths that hold a token themselves."""
    path = None if place.path is None else renamed.get(place.path) or display(place.path)
    c, tag = place.commit, place.tag
    location = first.location or ("file" if path is not None else "commit-message")
    who: tuple[str | None, str | None, str | None, str | None]
    if c is not None:
        who = (c.oid, c.author_name, c.author_email, c.date)
    elif tag is not None:
        who = (tag.oid, tag.tagger_name, tag.tagger_email, tag.date)
        location = first.location or ("file" if path is not None else "tag-message")
    else:
        who = (None, None, None, None)
    note = first.note
    if tag is not None:
        note = f"tag {tag.name}" + (f"; {note}" if note else "")
    return replace(first, path=path, fingerprint_path=path, occurrences=occurrences,
                   location=location, commit=who[0], author_name=who[1],
                   author_email=who[2], date=who[3], note=note)


def _neg(path: bytes) -> tuple[int, ...]:
    """Sorts paths descending, so that under ``max`` the first path in order wins."""
    return tuple(-b for b in path) + (1,)
