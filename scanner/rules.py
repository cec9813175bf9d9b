"""Rules are data: TOML files loaded, validated and compiled here.

A rule names a literal ``prefix`` (what the hot loop searches for, cheaply, in plain,
base64 and UTF-16 form) and an RE2 character class for the body. Keeping the literal
separate from the pattern is what lets a scan run at memory speed: RE2 only ever runs
at the few places where the literal occurs, and a user rule can never make a scan slow
or hang. Every rule carries true and false samples that ``validate_samples`` runs.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scanner import token as tk
from scanner.engine._regex import PatternError, compile_rule
from scanner.engine.detect import Detector
from scanner.errors import ConfigError

if TYPE_CHECKING:
    import random

CHECKSUMS = (tk.CHECKSUM_SCHEME, "none")
_KEYS = {
    "id", "description", "prefix", "body", "min_length", "body_length", "check_length",
    "checksum", "entropy_floor", "true_samples", "false_samples",
}


@dataclass(slots=True)
class Rule:
    """One detection rule, loaded from TOML: a literal prefix the hot loop searches for,
    an RE2 class for the body, and how to classify a run (checksum, entropy floor).
    Pickles, so it travels to worker processes with each task."""

    id: str
    description: str
    prefix: bytes
    body: str
    min_length: int = tk.MIN_RUN
    body_length: int = tk.BODY_LENGTH
    check_length: int = tk.CHECK_LENGTH
    checksum: str = tk.CHECKSUM_SCHEME
    entropy_floor: float = tk.ENTROPY_FLOOR
    true_samples: list[str] = field(default_factory=list)
    false_samples: list[str] = field(default_factory=list)
    run: Any = None  # compiled RE2 matcher for the body run
    alphabet: bytes = b""  # the bytes the body class accepts, for generating samples

    def classify(self, run: bytes) -> tk.Confidence | None:
        """``confirmed``, ``possible`` or None (a placeholder)."""
        if len(run) < self.min_length or tk.shannon_entropy(run) < self.entropy_floor:
            return None
        if self.checksum == tk.CHECKSUM_SCHEME and tk.run_is_checksummed(run, self.body_length):
            return tk.Confidence.CONFIRMED
        return tk.Confidence.POSSIBLE

    def generate(self, rng: random.Random, valid: bool = True) -> str:
        """A token this rule reports: confirmed when ``valid`` (and checksummed)."""
        chars = self.alphabet.decode("latin-1")
        if self.checksum != tk.CHECKSUM_SCHEME:
            return self.prefix.decode() + "".join(rng.choice(chars) for _ in range(32))
        body = "".join(rng.choice(chars) for _ in range(self.body_length))
        check = tk.checksum(body)
        if not valid:
            check = check[:-1] + ("A" if check[-1] != "A" else "B")
        return self.prefix.decode() + body + check


def _fail(source: str, where: str, problem: str) -> ConfigError:
    return ConfigError(f"{source}: {where}: {problem}")


def _compile(raw: dict[str, Any], source: str, index: int) -> Rule:
    if not isinstance(raw, dict):
        raise _fail(source, f"rule #{index + 1}", "must be a table")
    where = f"rule {raw.get('id') or f'#{index + 1}'}"
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise _fail(source, where, f"unknown key {unknown[0]!r}")
    for key in ("id", "prefix", "body"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise _fail(source, where, f"{key!r} is required and must be a non-empty string")
    prefix = raw["prefix"]
    if not prefix.isascii() or not prefix.isprintable() or len(prefix) < 4:
        raise _fail(source, where, "'prefix' must be at least 4 printable ASCII characters")
    body = raw["body"]
    if not (body.startswith("[") and body.endswith("]")):
        raise _fail(source, where, "'body' must be one RE2 character class such as [0-9A-Za-z]")
    try:
        single = compile_rule(body.encode())
        run = compile_rule(b"(?:" + body.encode() + b")*")
    except PatternError as exc:
        raise _fail(source, where, f"'body' is not a valid RE2 class: {exc}") from None
    alphabet = bytes(b for b in range(256) if single.fullmatch(bytes([b])))
    if not alphabet or any(b in b"\n\r\t \"'" for b in alphabet):
        raise _fail(source, where, "'body' must match some characters, and no quotes or spaces")
    # (lowest allowed, default); not getattr(Rule, key): a slots dataclass keeps no
    # class-level defaults, so an omitted key used to be rejected.
    ints = {"min_length": (8, tk.MIN_RUN), "body_length": (0, tk.BODY_LENGTH),
            "check_length": (0, tk.CHECK_LENGTH)}
    for key, (low, default) in ints.items():
        value = raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 256:
            raise _fail(source, where, f"{key!r} must be a whole number from {low} to 256")
    if raw.get("checksum", tk.CHECKSUM_SCHEME) not in CHECKSUMS:
        raise _fail(source, where, f"'checksum' must be one of {', '.join(CHECKSUMS)}")
    if raw.get("checksum", tk.CHECKSUM_SCHEME) == tk.CHECKSUM_SCHEME and raw.get(
            "check_length", tk.CHECK_LENGTH) != tk.CHECK_LENGTH:
        raise _fail(source, where,
                    f"'{tk.CHECKSUM_SCHEME}' checks are {tk.CHECK_LENGTH} characters")
    floor = raw.get("entropy_floor", tk.ENTROPY_FLOOR)
    if not isinstance(floor, int | float) or not 0 <= floor <= 8:
        raise _fail(source, where, "'entropy_floor' must be a number from 0 to 8")
    for key in ("true_samples", "false_samples"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise _fail(source, where, f"{key!r} must be a list of strings")
    return Rule(
        id=raw["id"],
        description=str(raw.get("description", raw["id"])),
        prefix=prefix.encode(),
        body=body,
        min_length=raw.get("min_length", tk.MIN_RUN),
        body_length=raw.get("body_length", tk.BODY_LENGTH),
        check_length=raw.get("check_length", tk.CHECK_LENGTH),
        checksum=raw.get("checksum", tk.CHECKSUM_SCHEME),
        entropy_floor=float(floor),
        true_samples=list(raw.get("true_samples", [])),
        false_samples=list(raw.get("false_samples", [])),
        run=run,
        alphabet=alphabet,
    )


def parse(text: str, source: str) -> list[Rule]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per level of nesting
        raise ConfigError(f"{source}: not valid TOML: nested too deeply") from None
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise ConfigError(f"{source}: no [[rules]] tables")
    rules = [_compile(raw, source, i) for i, raw in enumerate(raw_rules)]
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise ConfigError(f"{source}: rule {rule.id}: duplicate id")
        seen.add(rule.id)
    return rules


def load_file(path: str | os.PathLike[str]) -> list[Rule]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read rules: {getattr(exc, 'strerror', exc)}") from None
    return parse(text, str(path))


def builtin_dir() -> str:
    """Installed wheels carry the rules as ``scanner/rules``; a source checkout has them
    at the top level (hatchling's force-include maps one onto the other)."""
    here = os.path.dirname(os.path.abspath(__file__))
    packaged = os.path.join(here, "rules")
    return packaged if os.path.isdir(packaged) else os.path.join(os.path.dirname(here), "rules")


def load(extra: Sequence[str | os.PathLike[str]] | None = None) -> list[Rule]:
    """The built-in rules plus user rule files (``--rules``); user rules are validated
    and checked against their own true and false samples (ConfigError if not)."""
    folder = builtin_dir()
    names = sorted(n for n in os.listdir(folder) if n.endswith(".toml"))
    rules = [r for name in names for r in load_file(os.path.join(folder, name))]
    for path in extra or []:
        user = load_file(path)
        for rule in user:
            if rule.id in {r.id for r in rules}:
                raise ConfigError(f"{path}: rule {rule.id}: duplicate id")
        problems = validate_samples(user)
        if problems:
            raise ConfigError(f"{path}: {problems[0]}")
        rules.extend(user)
    return rules


def expand_sample(sample: str, rule: Rule, rng: random.Random) -> str:
    valid = rule.generate(rng)
    return (
        sample.replace("{confirmed}", valid)
        .replace("{possible}", rule.generate(rng, valid=False))
        .replace("{upper}", valid.upper()[len(rule.prefix):])
    )


def validate_samples(rules: list[Rule], seed: int = 0) -> list[str]:
    """Run every rule's samples through the real engine; return what went wrong."""
    import random

    rng = random.Random(seed)
    problems = []
    for rule in rules:
        detector = Detector([rule])
        for sample in rule.true_samples:
            text = expand_sample(sample, rule, rng)
            if not [h for h in detector.scan_text(text.encode()) if not h.suppressed]:
                problems.append(f"rule {rule.id}: true sample not found: {sample!r}")
        for sample in rule.false_samples:
            text = expand_sample(sample, rule, rng)
            if [h for h in detector.scan_text(text.encode()) if not h.suppressed]:
                problems.append(f"rule {rule.id}: false sample reported: {sample!r}")
    return problems
