"""Shared helpers for the benchmark scripts: timing, peak RSS, token and log generation.

Stdlib only, so a bench runs in any venv that has ``cendis-scan`` on PATH. Tokens are
generated at run time and written only into corpora outside the repository: no whole token
ever lives in a committed file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shlex
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

GB = 10**9  # throughput is reported in decimal GB/s
MIB = 1 << 20
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
PREFIX = "cendis_pat_"
GNU_TIME = "/usr/bin/time"

# Fallback when /usr/bin/time is missing: a fresh interpreter whose only child is the
# measured command, so RUSAGE_CHILDREN's maximum is that child's (and its waited-for
# descendants') peak, not the maximum over everything this bench has run so far.
_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1], 'w').write(str(kb))\n"
    "sys.exit(rc)\n"
)


# --------------------------------------------------------------------------- tokens


def make_token(rng: random.Random) -> str:
    """A confirmed v1 token, generated at run time (never stored)."""
    from scanner.token import generate

    return generate(rng)


def token_sha256(token: str) -> str:
    """What may be recorded about a generated token: its identity, never the token."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


# --------------------------------------------------------------------------- log lines

_PATHS = [
    "/api/v2/projects/{n}/builds",
    "/api/v2/users/{n}",
    "/api/v2/repos/{n}/pulls?page={m}",
    "/static/js/app.{h8}.js",
    "/healthz",
    "/login",
    "/api/v2/orgs/{n}/members?per_page=100",
    "/webhooks/cendis/{h8}",
]
_AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Go-http-client/2.0",
    "cendis-cli/1.4.2 (linux; amd64)",
]
_SERVICES = ["cendis-gateway", "billing", "auth", "scheduler", "worker", "search-indexer"]
_LEVELS = ["INFO", "INFO", "INFO", "DEBUG", "DEBUG", "WARN", "ERROR"]
_MESSAGES = [
    "upstream ok",
    "cache miss",
    "retrying request",
    "connection reset by peer",
    "token refreshed for session",
    "rate limit exceeded",
    "job finished",
    "slow query detected",
]
# Placeholders the scanner must not report; they exercise its candidate path.
_PLACEHOLDERS = [
    "cendis_pat_...",
    "cendis_pat_<your-token>",
    "cendis_pat_****",
    "cendis_pat_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "cendis_pat_${CENDIS_TOKEN}",
]


class LogLines:
    """Realistic mixed log lines: nginx access lines, key=value app logs, JSON logs, stack
    traces and JWT-like base64 blobs (the scanner decodes base64, so logs must carry some).

    ``placeholder_rate`` lines out of one carry a documentation placeholder (never a real
    token); real tokens are placed by the callers at known offsets.
    """

    def __init__(self, seed: int = 1, placeholder_rate: float = 1 / 50_000) -> None:
        self.rng = random.Random(seed)
        self.placeholder_rate = placeholder_rate
        self.t = 1_741_000_000.0
        self.placeholders = 0

    def _hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def _b64(self, n: int) -> str:
        alphabet = string.ascii_letters + string.digits + "-_"
        return "".join(self.rng.choices(alphabet, k=n))

    def line(self) -> str:
        r = self.rng
        self.t += r.random() * 0.01
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.t)) + f".{r.randrange(1000):03d}Z"
        if r.random() < self.placeholder_rate:
            self.placeholders += 1
            bearer = r.choice(_PLACEHOLDERS)
            return f'{ts} WARN  [auth] rejected Authorization header "Bearer {bearer}"\n'
        kind = r.random()
        if kind < 0.35:
            n, m = r.randrange(100_000), r.randrange(50)
            path = r.choice(_PATHS).format(n=n, m=m, h8=self._hex(8))
            ip = f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(256)}"
            return (
                f"{ip} - - [{time.strftime('%d/%b/%Y:%H:%M:%S +0000', time.gmtime(self.t))}] "
                f'"{r.choice(["GET", "GET", "POST", "PUT"])} {path} HTTP/1.1" '
                f"{r.choice([200, 200, 200, 201, 304, 404, 500])} {r.randrange(100, 90_000)} "
                f'"-" "{r.choice(_AGENTS)}"\n'
            )
        if kind < 0.70:
            return (
                f"{ts} {r.choice(_LEVELS):<5} [{r.choice(_SERVICES)}] request_id={self._hex(16)} "
                f"user_id={r.randrange(1_000_000)} latency_ms={r.randrange(1, 2000)} "
                f'msg="{r.choice(_MESSAGES)}"\n'
            )
        if kind < 0.92:
            record = {
                "ts": ts,
                "level": r.choice(_LEVELS).lower(),
                "svc": r.choice(_SERVICES),
                "trace": self._hex(32),
                "msg": r.choice(_MESSAGES),
                "attempt": r.randrange(5),
            }
            return json.dumps(record, separators=(",", ":")) + "\n"
        if kind < 0.97:
            frame = f"com.example.{r.choice(_SERVICES).replace('-', '')}.Handler"
            return f"\tat {frame}.handle{r.randrange(40)}(Handler.java:{r.randrange(1, 900)})\n"
        jwt = f"eyJ{self._b64(33)}.{self._b64(r.randrange(60, 300))}.{self._b64(43)}"
        return f"{ts} DEBUG [auth] session cookie={jwt}\n"

    def block(self, size: int) -> bytes:
        """At least ``size`` bytes of whole lines."""
        out: list[str] = []
        n = 0
        while n < size:
            line = self.line()
            out.append(line)
            n += len(line)
        return "".join(out).encode("ascii")


def token_line(token: str, where: str) -> bytes:
    """A log line that leaks ``token`` the way a debug dump would."""
    return f"2025-03-03T12:00:00.000Z DEBUG [{where}] env CENDIS_TOKEN={token} dumped\n".encode()


# --------------------------------------------------------------------------- running


@dataclass
class Run:
    wall: float
    rc: int
    stdout: bytes
    stderr: bytes
    peak_rss_kb: int | None = None


def find_cli(explicit: str | None = None) -> list[str]:
    """The scanner command: ``--cli``, $CENDIS_SCAN, PATH, or beside this interpreter."""
    if explicit or os.environ.get("CENDIS_SCAN"):
        return shlex.split(explicit or os.environ["CENDIS_SCAN"])
    found = shutil.which("cendis-scan")
    if not found:
        beside = Path(sys.executable).with_name("cendis-scan")
        found = str(beside) if beside.exists() else None
    if not found:
        sys.exit(
            "bench: cendis-scan not found on PATH (nor beside this python). Install the package "
            "(pip install -e .) and activate its venv, or pass --cli / set CENDIS_SCAN."
        )
    return [found]


def cli_python(cli: Sequence[str]) -> str:
    """The interpreter the scanner runs under (from its shebang), for floor references."""
    try:
        first = Path(cli[0]).read_bytes()[:200].split(b"\n", 1)[0]
    except OSError:
        return sys.executable
    words = first[2:].decode().split() if first.startswith(b"#!") else []
    if words and Path(words[0]).name == "env":
        words = words[1:]
    if words and "python" in Path(words[0]).name:
        return words[0]
    return sys.executable


def run(
    cmd: Sequence[str],
    *,
    rss: bool = False,
    stdin: int | None = None,
    cwd: str | Path | None = None,
    ok: Iterable[int] = (0, 1),
    capture: bool = True,
) -> Run:
    """Run ``cmd`` once, timing wall clock; with ``rss`` also its peak RSS (KiB), measured
    on this command only (``/usr/bin/time -f %M`` or a one-child python wrapper).

    Keep ``capture`` for grep references: GNU grep stops at the first match when its
    stdout is /dev/null, which would make it look impossibly fast.
    """
    full = list(cmd)
    rss_file = None
    if rss:
        fd, rss_file = tempfile.mkstemp(prefix="bench-rss-")
        os.close(fd)
        if os.access(GNU_TIME, os.X_OK):
            full = [GNU_TIME, "-f", "%M", "-o", rss_file, *full]
        else:
            full = [sys.executable, "-c", _RSS_WRAPPER, rss_file, *full]
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    t0 = time.perf_counter()
    proc = subprocess.run(full, stdin=stdin, stdout=out, stderr=subprocess.PIPE, cwd=cwd)
    wall = time.perf_counter() - t0
    peak = None
    if rss_file:
        text = Path(rss_file).read_text().strip().splitlines()
        os.unlink(rss_file)
        # GNU time prefixes "Command exited with non-zero status N" when rc != 0.
        peak = int(text[-1]) if text and text[-1].isdigit() else None
    if proc.returncode not in set(ok):
        sys.exit(
            f"bench: {shlex.join(cmd)} exited {proc.returncode}\n"
            + proc.stderr.decode(errors="replace")[-2000:]
        )
    return Run(wall, proc.returncode, proc.stdout or b"", proc.stderr, peak)


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _tree_rss(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) in KiB summed over ``pid`` and its descendants."""
    kids = _children()
    todo, total, anon = [pid], 0, 0
    while todo:
        p = todo.pop()
        todo.extend(kids.get(p, []))
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
            elif line.startswith("RssAnon:"):
                anon += int(line.split()[1])
    return total, anon


def run_tree_sampled(
    cmd: Sequence[str], *, cwd: str | Path | None = None, interval: float = 0.05
) -> tuple[float, int, int]:
    """Wall, and peaks of the process tree's summed RSS and summed anonymous RSS (KiB).

    ``/usr/bin/time`` reports the largest single process; a scanner that runs git beside
    itself uses the sum. File-backed pages (git mmaps its packs) count in RSS but not in
    RssAnon, hence both. Sampling perturbs timing a little: use a separate run.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = peak_anon = 0
    while proc.poll() is None:
        total, anon = _tree_rss(proc.pid)
        peak, peak_anon = max(peak, total), max(peak_anon, anon)
        time.sleep(interval)
    return time.perf_counter() - t0, peak, peak_anon


def repeat(cmd: Sequence[str], n: int, warmup: int = 1, **kw: object) -> list[Run]:
    """``warmup`` untimed runs, then ``n`` timed ones."""
    for _ in range(warmup):
        run(cmd, **kw)  # type: ignore[arg-type]
    return [run(cmd, **kw) for _ in range(n)]  # type: ignore[arg-type]


def summary(result: Run) -> dict[str, object]:
    """The ``summary`` object of a JSON report ({} when the output is not JSON)."""
    try:
        return json.loads(result.stdout).get("summary", {})
    except (ValueError, AttributeError):
        return {}


def p90(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def report(label: str, walls: Sequence[float], nbytes: int | None = None, p: bool = False) -> None:
    """One line: median, min, max (and p90, GB/s at the median and at the best run)."""
    med = statistics.median(walls)
    line = f"{label:<38} median {med:8.3f} s  min {min(walls):8.3f}  max {max(walls):8.3f}"
    if p:
        line += f"  p90 {p90(walls):8.3f}"
    line += f"  (n={len(walls)})"
    if nbytes:
        line += f"  {nbytes / GB / med:6.2f} GB/s (best {nbytes / GB / min(walls):.2f})"
    print(line, flush=True)


def report_rss(label: str, kbs: Sequence[int | None]) -> None:
    vals = [k for k in kbs if k is not None]
    if not vals:
        print(f"{label:<38} peak RSS unavailable")
        return
    print(
        f"{label:<38} peak RSS median {statistics.median(vals) / 1024:7.1f} MiB  "
        f"max {max(vals) / 1024:7.1f} MiB"
    )


def warm_cache(paths: Iterable[Path]) -> None:
    """Read every file once so that runs measure the scanner, not the disk."""
    for path in paths:
        with open(path, "rb") as fh:
            while fh.read(8 * MIB):
                pass


def tree_files(root: Path) -> list[Path]:
    """Regular files under ``root``, skipping ``.git`` directories."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        paths = (Path(dirpath, f) for f in filenames)
        out.extend(p for p in paths if p.is_file() and not p.is_symlink())
    return out


def base_parser(doc: str | None, runs: int = 5) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=runs, help=f"timed runs ({runs})")
    parser.add_argument("--cli", help="scanner command (default: cendis-scan on PATH)")
    return parser


def git(*args: str, cwd: str | Path | None = None) -> str:
    """Run git with a fixed identity (benches commit into throwaway clones only)."""
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.invalid",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.invalid",
    )
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, stdout=subprocess.PIPE, text=True
    )
    return done.stdout.strip()


def shared_clone(repo: Path, dest: Path) -> Path:
    """A ``git clone --shared`` copy: objects borrowed from ``repo``, which stays clean."""
    git("clone", "-q", "--shared", str(repo), str(dest))
    git("status", "--porcelain", cwd=dest)  # refresh the index once, as a real repo has
    return dest
