"""Repository discovery and the no-op sweep of an organisation (issue 19 targets).

1. Discovery of an organisation of REPOS repositories (default 2,000) from the forge
   stand-in (scanner/dev/forges.py, real HTTP on loopback) at the real page size (100):
   cold (no saved state) and again with the saved ETags, nothing changed (every page a
   304); GitHub and GitLab (keyset).
2. A no-op sweep of REPOS local bare repositories discovered that way (file:// clone
   URLs, nothing new since the first sweep), through the CLI with the configured
   concurrency, fetch included. Target: <= 60 s.

Needs the package installed (aiohttp). The repositories are copies of one small bare
repository (a few commits), made in a temp dir.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import common

from scanner.dev.forges import Forge, Served, create_app, github_repo, gitlab_project
from scanner.sweep.config import OrgSource
from scanner.sweep.discovery import discover


async def _no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def discovery(repos: int, runs: int, tmp: Path) -> None:
    forge = Forge(limit=10**9, remaining=10**9)
    forge.github["acme"] = [github_repo(i, f"acme/svc-{i}", f"file:///srv/svc-{i}.git")
                            for i in range(1, repos + 1)]
    forge.gitlab = [gitlab_project(i, f"acme/g{i % 7}/svc-{i}", f"file:///srv/p{i}.git")
                    for i in range(1, repos + 1)]
    served = Served(create_app(forge))
    try:
        for kind, api in (("github", f"{served.url}/github"),
                          ("gitlab", f"{served.url}/gitlab/api/v4")):
            org = OrgSource(kind, "acme", api)
            cold, warm = [], []
            for n in range(runs):
                cache = tmp / f"disc-{kind}-{n}"
                forge.calls.clear()
                t0 = time.perf_counter()
                first = discover([org], cache, sleep=_no_sleep, environ={})[0]
                cold.append(time.perf_counter() - t0)
                assert len(first.repos) == repos and not first.errors, first.errors
                cold_calls = len(forge.calls)
                forge.calls.clear()
                t0 = time.perf_counter()
                again = discover([org], cache, sleep=_no_sleep, environ={})[0]
                warm.append(time.perf_counter() - t0)
                assert len(again.repos) == repos
                not_modified = sum(c.status == 304 for c in forge.calls)
            common.report(f"{kind}: discover {repos}, cold", cold)
            common.report(f"{kind}: discover {repos}, ETags", warm)
            print(f"  {cold_calls} requests cold; {not_modified} of {len(forge.calls)} "
                  f"answered 304 with ETags (no quota spent)")
    finally:
        served.close()


def template(tmp: Path) -> Path:
    work = tmp / "template-work"
    common.git("init", "-q", "-b", "main", str(work))
    for j in range(5):
        (work / f"f{j}.txt").write_text(f"file {j}\n" * (j + 1))
        common.git("add", "-A", cwd=work)
        common.git("-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-q",
                   "-m", f"c{j}", cwd=work)
    bare = tmp / "template.git"
    common.git("clone", "-q", "--bare", str(work), str(bare))
    shutil.rmtree(bare / "hooks")  # sample hooks: a dozen files per copy, never run
    common.git("gc", "-q", cwd=bare)  # one pack, not loose objects: fewer files to copy
    return bare


def noop_sweep(cli: list[str], repos: int, runs: int, concurrency: int, tmp: Path) -> None:
    bare = template(tmp)
    server = tmp / "server"
    server.mkdir()
    t0 = time.perf_counter()
    for i in range(1, repos + 1):
        shutil.copytree(bare, server / f"svc-{i}.git", symlinks=True)
    print(f"{repos} bare repositories copied in {time.perf_counter() - t0:.1f} s")
    forge = Forge(limit=10**9, remaining=10**9)
    forge.github["acme"] = [github_repo(i, f"acme/svc-{i}",
                                        (server / f"svc-{i}.git").as_uri())
                            for i in range(1, repos + 1)]
    served = Served(create_app(forge))
    try:
        conf = tmp / "org.toml"
        conf.write_text(f'[settings]\ndatabase = "incidents.db"\ncache = "cache"\n'
                        f'concurrency = {concurrency}\n[[org]]\ngithub = "acme"\n'
                        f'api_url = "{served.url}/github"\n')
        first = common.run([*cli, "sweep", str(conf), "--format", "json"], cwd=tmp)
        data = json.loads(first.stdout)
        print(f"first sweep of {repos} (fetch + whole history, concurrency {concurrency}): "
              f"{first.wall:.1f} s, {len(data['sources']) - 1} repositories")
        timed = common.repeat([*cli, "sweep", str(conf), "--format", "json"], runs,
                              warmup=0, cwd=tmp)
        inner = json.loads(timed[-1].stdout)
        assert inner["new_findings"] == 0 and inner["exit_status"] == 0, inner["exit_status"]
        common.report(f"no-op sweep of {repos} (target <= 60 s)", [r.wall for r in timed])
        per = [s["seconds"] for s in inner["sources"] if s["kind"] == "repo"]
        print(f"  inside the sweep {inner['seconds']:.1f} s; per repository median "
              f"{statistics.median(per) * 1000:.0f} ms (concurrency {concurrency})")
    finally:
        served.close()


def main() -> None:
    parser = common.base_parser(__doc__, runs=5)
    parser.add_argument("--repos", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4,
                        help="the sweep's settings.concurrency (default 4, as shipped)")
    parser.add_argument("--sweep-runs", type=int, default=3)
    parser.add_argument("--discovery-only", action="store_true")
    args = parser.parse_args()
    cli = common.find_cli(args.cli)
    with tempfile.TemporaryDirectory(prefix="bench-discovery-") as name:
        tmp = Path(name)
        discovery(args.repos, args.runs, tmp)
        if not args.discovery_only:
            noop_sweep(cli, args.repos, args.sweep_runs, args.concurrency, tmp)


if __name__ == "__main__":
    main()
