"""Scheduled sweeps (issue 10 targets), fetch excluded everywhere:

1. a sweep of 10 repositories with no new commits: <= 2 s (the whole CLI run);
2. the first sweep of REPO (git/git) within 10 % of ``cendis-scan git --all`` on the
   same mirror (same refs, same pack);
3. an incremental sweep after one new commit (with a token) on REPO: <= 1 s.

Mirrors are made in a temp dir; the git/git mirror borrows the corpus's objects through
``objects/info/alternates`` (so making it costs no copy), and its source is a ``git clone
--shared`` copy that the new commit goes into (the corpus stays clean). Each mirror is
fetched with git before the timed ``cendis-scan sweep --no-fetch``.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import common

REPOS = 10


def config(path: Path, urls: list[str]) -> Path:
    text = '[settings]\ndatabase = "incidents.db"\ncache = "cache"\n' + "".join(
        f'[[repo]]\nurl = "{u}"\n' for u in urls)
    path.write_text(text)
    return path


def small_repos(cli: list[str], tmp: Path, runs: int) -> None:
    rng = random.Random()
    urls = []
    for i in range(REPOS):
        work = tmp / f"work{i}"
        common.git("init", "-q", "-b", "main", str(work))
        for j in range(30):
            (work / f"f{j % 7}.txt").write_text(f"file {j}\n" * (j + 1))
            if i == 3 and j == 10:
                (work / "leak.env").write_text(f"TOKEN={common.make_token(rng)}\n")
            common.git("add", "-A", cwd=work)
            common.git("commit", "-q", "-m", f"c{j}", cwd=work)
        common.git("clone", "-q", "--bare", str(work), str(tmp / f"r{i}.git"))
        urls.append((tmp / f"r{i}.git").as_uri())
    conf = config(tmp / "small.toml", urls)
    first = common.run([*cli, "sweep", str(conf), "--format", "json"])  # fetch + history
    print(f"first sweep of {REPOS} small repositories (with fetch): {first.wall:.2f} s, "
          f"{json.loads(first.stdout)['new_findings']} new finding(s)")
    timed = common.repeat([*cli, "sweep", str(conf), "--no-fetch", "--format", "json"], runs)
    inner = json.loads(timed[-1].stdout)
    assert inner["new_findings"] == 0, inner
    common.report(f"sweep of {REPOS} repositories, nothing new (target <= 2 s)",
                  [r.wall for r in timed])
    print(f"  (inside the sweep: {inner['seconds']:.3f} s; the rest is Python start-up "
          "and imports)")


def git_git(cli: list[str], corpus: Path, tmp: Path) -> None:
    work = common.shared_clone(corpus, tmp / "work")
    cache = tmp / "big-cache"
    conf = tmp / "big.toml"
    conf.write_text(f'[settings]\ndatabase = "big.db"\ncache = "{cache}"\n'
                    f'[[repo]]\nurl = "{work}"\nname = "git"\n')
    from scanner.sweep.mirrors import Mirror, cache_dir_name

    mirror = Mirror(cache / cache_dir_name("git"), str(work))
    mirror.ensure()
    objects = corpus / ".git" / "objects"
    (mirror.path / "objects" / "info" / "alternates").write_text(f"{objects}\n")
    mirror.fetch()
    refs = common.git("for-each-ref", cwd=mirror.path).count("\n") + 1
    print(f"mirror of {corpus} ready: {refs} refs (branches and tags of the source)")

    ref = common.run([*cli, "git", str(mirror.path), "--all", "--format", "json"])
    summ = json.loads(ref.stdout)["summary"]
    first = common.run([*cli, "sweep", str(conf), "--no-fetch", "--format", "json"])
    data = json.loads(first.stdout)["sources"][0]
    ratio = first.wall / ref.wall
    print(f"cendis-scan git --all on the mirror: {ref.wall:.2f} s "
          f"({summ.get('commits')} commits, {summ['files']} objects)")
    print(f"first sweep (whole history):        {first.wall:.2f} s "
          f"({data['commits']} commits, {data['files']} objects) = {ratio:.2f}x "
          f"(target within 10 %)")

    rng = random.Random()
    note = work / "bench-sweep-note.txt"
    note.write_text(f"a note\nCENDIS_TOKEN={common.make_token(rng)}\n")
    common.git("add", str(note), cwd=work)
    common.git("commit", "-q", "-m", "bench: one new commit", cwd=work)
    mirror.fetch()
    inc = common.run([*cli, "sweep", str(conf), "--no-fetch", "--format", "json"])
    data = json.loads(inc.stdout)
    row = data["sources"][0]
    print(f"incremental sweep after 1 commit:   {inc.wall:.2f} s (target <= 1 s; "
          f"{row['commits']} commit, {data['new_findings']} new finding; inside the sweep "
          f"{data['seconds']:.3f} s)")
    with_fetch = common.run([*cli, "sweep", str(conf), "--format", "json"])
    print(f"  next sweep with its fetch, nothing new: {with_fetch.wall:.2f} s")


def main() -> None:
    parser = common.base_parser(__doc__, runs=5)
    parser.add_argument("repo", type=Path, nargs="?", default=Path("/work/corpora/git"),
                        help="a full clone with a work tree (default /work/corpora/git)")
    parser.add_argument("--small-only", action="store_true",
                        help="only the 10 small repositories")
    args = parser.parse_args()
    cli = common.find_cli(args.cli)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as name:
        tmp = Path(name)
        small_repos(cli, tmp, args.runs)
        if not args.small_only:
            git_git(cli, args.repo, tmp)


if __name__ == "__main__":
    main()
