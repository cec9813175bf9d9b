"""Every workload of issue 11, ours and the peers', in one sitting, as one table.

Peers (one Cendis rule each, like for like; see ../shared/peers/README.md): Kingfisher,
gitleaks and Betterleaks (gitleaks' author's successor, which reads gitleaks' rule file and
decodes layers recursively) from ``$KINGFISHER``/``$GITLEAKS``/``$BETTERLEAKS``
(``source ../shared/peers/install.sh``),
ripgrep from PATH. A tool that is not installed gets "–". Each cell is the median of
``-n`` runs (peers that take tens of seconds: ``--slow-runs``, default 1), after one
untimed warm-up for the fast workloads. The load average is printed with the table:
the machine is shared, so only figures from one sitting compare.

Workloads: a 1 GB log without a token (``big.log`` with its prefix lines removed), the
same log with 3 tokens at ~10/50/97 % (our line numbers are checked against a count of
the file's newlines), the git/git work tree, a 2-file staged change (clean, and with a
token), git/git's whole history, and 5 GB through stdin (peak RSS).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import common

RULES = Path(__file__).resolve().parents[2] / "shared" / "peers"


def _peers() -> dict[str, str | None]:
    rules = Path(os.environ.get("PEER_RULES", RULES))
    kf, gl = os.environ.get("KINGFISHER"), os.environ.get("GITLEAKS")
    bl = os.environ.get("BETTERLEAKS")
    return {
        "kingfisher": kf if kf and os.access(kf, os.X_OK) else None,
        "gitleaks": gl if gl and os.access(gl, os.X_OK) else None,
        "betterleaks": bl if bl and os.access(bl, os.X_OK) else None,
        "rg": shutil.which("rg"),
        "rules": str(rules),
    }


def kingfisher(p: dict[str, str | None], target: str, out: str, *extra: str) -> list[str]:
    return [str(p["kingfisher"]), "scan", *extra, target, "--no-update-check", "-q",
            "--rules-path", f"{p['rules']}/kingfisher-cendis.yml", "--load-builtins=false",
            "-n", "-f", "json", "-o", out]


def gitleaks(p: dict[str, str | None], mode: list[str], target: str, out: str) -> list[str]:
    return [str(p["gitleaks"]), *mode, target, "-c", f"{p['rules']}/gitleaks-cendis.toml",
            "--no-banner", "--exit-code", "0", "-f", "json", "-r", out]


def betterleaks(p: dict[str, str | None], mode: list[str], target: str, out: str
                ) -> list[str]:
    """``betterleaks fs|git TARGET`` with gitleaks' one-rule file (peers/README.md), no size
    limit (it skips big files otherwise), exit 0 whatever it finds."""
    size = ["--max-target-megabytes", "0"] if mode[0] == "fs" else []
    return [str(p["betterleaks"]), *mode, target, "-c", f"{p['rules']}/gitleaks-cendis.toml",
            "--no-banner", "-l", "error", "--exit-code", "0", *size, "-o", out]


def med(cmd: list[str], n: int, warmup: int = 1, **kw: object) -> float:
    runs = common.repeat(cmd, n, warmup=warmup, ok=range(256), **kw)  # type: ignore[arg-type]
    return statistics.median(r.wall for r in runs)


def fmt(seconds: float | None, nbytes: int | None = None) -> str:
    if seconds is None:
        return "–"
    text = f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"
    return text + (f" ({nbytes / common.GB / seconds:.2f} GB/s)" if nbytes else "")


def lines_ok(report: bytes, path: Path) -> str:
    """Whether every finding's line is 1 + the newlines before its offset."""
    findings = json.loads(report)["findings"]
    data = path.read_bytes()
    bad = [f for f in findings if f["line"] != data.count(b"\n", 0, f["offset"]) + 1]
    return f"{len(findings)} findings, lines {'exact' if not bad else 'WRONG'}"


def main() -> None:
    parser = common.base_parser(__doc__, runs=5)
    parser.add_argument("--corpora", type=Path, default=Path("/work/corpora"))
    parser.add_argument("--slow-runs", type=int, default=1, help="runs of slow peers (1)")
    parser.add_argument("--skip", default="", help="comma list: log,clean,tree,staged,"
                        "history,stdin")
    args = parser.parse_args()
    cli = common.find_cli(args.cli)
    p = _peers()
    skip = set(args.skip.split(","))
    n, slow = args.runs, args.slow_runs
    rows: list[tuple[str, ...]] = []
    tmp = tempfile.mkdtemp(prefix="bench-table-")
    out = os.path.join(tmp, "peer.json")
    log, clean = args.corpora / "big.log", args.corpora / "big.clean.log"
    tree = args.corpora / "git"
    print(f"load average at start: {os.getloadavg()}", flush=True)
    try:
        if "clean" not in skip:
            if not clean.exists():
                with open(clean, "wb") as f:
                    subprocess.run(["grep", "-v", common.PREFIX, str(log)], stdout=f, check=False)
            size = clean.stat().st_size
            common.warm_cache([clean])
            ours = med([*cli, "scan", str(clean), "--format", "json"], n)
            kf = p["kingfisher"] and med(kingfisher(p, str(clean), out, "--max-file-size", "0"), n)
            gl = p["gitleaks"] and med(gitleaks(p, ["dir"], str(clean), out), slow, 0)
            bl = p["betterleaks"] and med(betterleaks(p, ["fs"], str(clean), out), slow, 0)
            rg = p["rg"] and med([str(p["rg"]), "-c", common.PREFIX, str(clean)], n)
            rows.append(("1 GB log, no token", fmt(ours, size), fmt(kf or None),
                         fmt(gl or None), fmt(bl or None), fmt(rg or None),
                         "faster than Kingfisher"))
        if "log" not in skip:
            size = log.stat().st_size
            common.warm_cache([log])
            runs = common.repeat([*cli, "scan", str(log), "--format", "json"], n)
            ours = statistics.median(r.wall for r in runs)
            check = lines_ok(runs[-1].stdout, log)
            kf = p["kingfisher"] and med(kingfisher(p, str(log), out, "--max-file-size", "0"), n)
            gl = p["gitleaks"] and med(gitleaks(p, ["dir"], str(log), out), slow, 0)
            bl = p["betterleaks"] and med(betterleaks(p, ["fs"], str(log), out), slow, 0)
            rg = p["rg"] and med([str(p["rg"]), "-n", common.PREFIX, str(log)], n)
            rows.append((f"1 GB log, 3 tokens at 10/50/97 % ({check})", fmt(ours, size),
                         fmt(kf or None), fmt(gl or None), fmt(bl or None), fmt(rg or None),
                         ">= 1.2 GB/s"))
        if "tree" not in skip:
            common.warm_cache(common.tree_files(tree))
            ours = med([*cli, "scan", str(tree), "--format", "json"], n)
            # Its work tree only: without --git-history none Kingfisher also reads the
            # whole history of a checkout (~60 s here).
            kf = p["kingfisher"] and med(kingfisher(p, str(tree), out, "--git-history", "none"),
                                         n)
            gl = p["gitleaks"] and med(gitleaks(p, ["dir"], str(tree), out), slow, 0)
            bl = p["betterleaks"] and med(betterleaks(p, ["fs"], str(tree), out), slow, 0)
            rg = p["rg"] and med([str(p["rg"]), "-c", common.PREFIX, str(tree)], n)
            rows.append(("git/git work tree", fmt(ours), fmt(kf or None), fmt(gl or None),
                         fmt(bl or None), fmt(rg or None), "<= 0.25 s, faster than Kingfisher"))
        if "staged" not in skip:
            work = common.shared_clone(tree, Path(tmp, "repo"))
            edited = next(x for x in ("README.md", "README") if (work / x).exists())
            with open(work / edited, "a") as fh:
                fh.write("\nSee bench/README.md for how the scanner is measured.\n")
            (work / "deploy.env").write_text("CENDIS_URL=https://api.example\n")
            common.git("add", edited, "deploy.env", cwd=work)
            # The hook as `install-hook` writes it (it starts Python with -S -P); the
            # console script, what the pre-commit framework runs, is a row of its own.
            subprocess.run([*cli, "install-hook"], cwd=work, check=True,
                           stdout=subprocess.DEVNULL)
            hook = ["sh", str(work / ".git" / "hooks" / "pre-commit")]
            for label, content in (("clean", None), ("with a token", "token")):
                if content:
                    token = common.make_token(random.Random())
                    (work / "deploy.env").write_text(f"CENDIS_TOKEN={token}\n")
                    common.git("add", "deploy.env", cwd=work)
                m = max(n, 10)
                ours = med(hook, m, cwd=work)
                console = med([*cli, "git", ".", "--staged"], m, cwd=work)
                kf = p["kingfisher"] and med(kingfisher(p, ".", out, "--staged"), m, cwd=work)
                gl = p["gitleaks"] and med(gitleaks(p, ["git", "--pre-commit", "--staged"],
                                                    ".", out), m, cwd=work)
                bl = p["betterleaks"] and med(betterleaks(p, ["git", "--staged"], ".", out), m,
                                              cwd=work)
                rows.append((f"2-file staged change in git/git, {label}: installed hook",
                             fmt(ours), fmt(kf or None), fmt(gl or None), fmt(bl or None),
                             "–", "<= Kingfisher"))
                rows.append((f"2-file staged change in git/git, {label}: console script",
                             fmt(console), "", "", "", "–", "–"))
            floor = med([common.cli_python(cli), "-c", "pass"], 10)
            print(f"python -c pass: {fmt(floor)}", flush=True)
        if "history" not in skip:
            runs = common.repeat([*cli, "git", str(tree), "--all", "--format", "json"],
                                 max(1, min(n, 3)), warmup=0, rss=True)
            ours = statistics.median(r.wall for r in runs)
            rss = max(r.peak_rss_kb or 0 for r in runs) // 1024
            kf = p["kingfisher"] and med(kingfisher(p, str(tree), out), slow, 0)
            gl = p["gitleaks"] and med(gitleaks(p, ["git"], str(tree), out), slow, 0)
            bl = p["betterleaks"] and med(betterleaks(p, ["git"], str(tree), out), slow, 0)
            rows.append(("git/git full history", f"{fmt(ours)}, {rss} MiB largest process",
                         fmt(kf or None), fmt(gl or None), fmt(bl or None), "–", "<= 15 s"))
        if "stdin" not in skip:
            proc = subprocess.run([sys.executable, str(Path(__file__).with_name("stdin_mem.py")),
                                   "-n", "1"], capture_output=True, text=True, check=False)
            print(proc.stdout, flush=True)
            rows.append(("5 GB through stdin", "see stdin_mem.py above", "–", "–", "–", "–",
                         "<= 100 MB peak"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nload average at end: {os.getloadavg()}\n")
    print("| workload | cendis-scan | Kingfisher | gitleaks | Betterleaks | ripgrep | target |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
