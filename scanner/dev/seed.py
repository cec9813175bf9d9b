"""What the Cendis stand-in knows at start: from a seed file, or generated for a demo.

A seed is either a JSON file::

    {"service": [{"token": "...", "scopes": ["revoke:tokens"], "username": "...",
                  "org": "...", "expires_at": "2027-01-01T00:00:00Z"}],
     "tokens":  [{"token": "..." or "sha256": "...", "owner": "...", "name": "...",
                  "org": "...", "scopes": ["read:assets"]}]}

or any other file or directory, which is scanned like ``cendis-scan scan`` does (base64,
gzip and all): every confirmed token found there becomes a live token of a demo user.
That is how the README's demo makes the example project's tokens revocable without
writing them anywhere else. Everything is hashed on arrival.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from scanner.dev.cendis_api import REVOKE_SCOPE, ServiceCredential, StandInToken
from scanner.errors import ConfigError, short
from scanner.token import generate

#: Demo owners and scopes, cycled so a demo shows every severity.
DEMO_PROFILES = (
    ("alice", "ci-deploy", ("read:assets", "write:assets")),
    ("bob", "laptop", ("read:assets",)),
    ("carol", "org-admin", ("admin:org", "read:audit")),
    ("dave", "approvals", ("approve:assets",)),
)


@dataclass
class Seed:
    tokens: list[StandInToken] = field(default_factory=list)
    credentials: dict[str, ServiceCredential] = field(default_factory=dict)
    #: Lines to print once (generated secrets), else empty.
    shown: list[str] = field(default_factory=list)
    #: The service credential, when it was generated (not given by the seed file).
    generated_credential: str | None = field(default=None, repr=False)


def _demo_token(sha256: str, index: int) -> StandInToken:
    owner, name, scopes = DEMO_PROFILES[index % len(DEMO_PROFILES)]
    return StandInToken(sha256=sha256, owner=owner, name=name, org="acme", scopes=scopes)


def load(path: str, rng: random.Random | None = None) -> Seed:
    """Read a seed (see the module docstring); a missing credential is generated."""
    where = Path(path)
    if not where.exists():
        raise ConfigError(f"seed file not found: {short(path, 80)}")
    is_json = where.is_file() and where.suffix == ".json"
    seed = _from_json(where) if is_json else _from_scan(path)
    if not seed.credentials:
        _add_generated_credential(seed, rng)
    return seed


def _from_json(path: Path) -> Seed:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not an object")
        seed = Seed()
        for entry in data.get("service", []):
            expires = entry.get("expires_at")
            seed.credentials[str(entry["token"])] = ServiceCredential(
                scopes=[str(s) for s in entry.get("scopes", [REVOKE_SCOPE])],
                username=str(entry.get("username", "cendis-scan-bot")),
                org=str(entry.get("org", "acme")),
                name=str(entry.get("name", "cendis-scan service")),
                expires_at=datetime.fromisoformat(expires.replace("Z", "+00:00"))
                if expires else None)
        for index, entry in enumerate(data.get("tokens", [])):
            meta: dict[str, Any] = {k: entry[k] for k in ("owner", "name", "org")
                                    if k in entry}
            if "scopes" in entry:
                meta["scopes"] = tuple(str(s) for s in entry["scopes"])
            if "token" in entry:
                token = StandInToken.from_token(str(entry["token"]), **meta)
            else:
                token = StandInToken(sha256=str(entry["sha256"]).lower(), **meta)
            if not meta:
                token = _demo_token(token.sha256, index)
            seed.tokens.append(token)
        return seed
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"bad seed file {short(str(path), 60)}: "
                          f"{short(str(exc), 60)}") from None


def _from_scan(path: str) -> Seed:
    import scanner
    from scanner.incidents.findings import revocable

    result = scanner.scan_paths([path], scanner.load_rules())
    hashes = list(dict.fromkeys(f.secret_sha256 for f in result.findings if revocable(f)))
    return Seed(tokens=[_demo_token(sha, i) for i, sha in enumerate(hashes)])


def _add_generated_credential(seed: Seed, rng: random.Random | None) -> None:
    credential = generate(rng)
    seed.credentials[credential] = ServiceCredential(scopes=[REVOKE_SCOPE])
    seed.generated_credential = credential
    seed.shown.append(f"service credential (scope {REVOKE_SCOPE}): {credential}")


def generated(rng: random.Random | None = None, count: int = 4) -> Seed:
    """No seed file: a service credential and ``count`` leakable demo tokens, shown once."""
    seed = Seed()
    _add_generated_credential(seed, rng)
    for index in range(count):
        token = generate(rng)
        seed.tokens.append(_demo_token(StandInToken.from_token(token).sha256, index))
        owner, _, scopes = DEMO_PROFILES[index % len(DEMO_PROFILES)]
        seed.shown.append(f"demo token of {owner} ({', '.join(scopes)}): {token}")
    return seed
