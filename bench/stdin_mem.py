"""Peak memory of ``cendis-scan scan -`` on a large stream (issue target: 5 GB in <= 100 MB).

A generator process writes realistic log blocks to a pipe (one fresh confirmed token every
``--token-every-mb``) and the scanner reads the pipe. Peak RSS is measured around the
scanner only (``/usr/bin/time -f %M``), never around the generator. The generator prepares
its blocks before the scanner starts and is timed alone into a pipe as a ceiling reference.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import random
import subprocess
import sys
import time

import common

BLOCKS = 8  # distinct 1 MiB blocks cycled by the generator


def emit(size: int, token_every: int) -> None:
    """Generator mode: write ``size`` bytes to stdout, say "ready" on stderr first."""
    lines = common.LogLines(seed=7)
    pool = [lines.block(common.MIB) for _ in range(BLOCKS)]
    rng = random.Random()
    out = sys.stdout.buffer
    sys.stderr.write("ready\n")
    sys.stderr.flush()
    written = tokens = 0
    next_token = token_every // 2
    i = 0
    while written < size:
        block = pool[i % BLOCKS]
        i += 1
        if written >= next_token:
            block = common.token_line(common.make_token(rng), "stdin") + block
            next_token += token_every
            tokens += 1
        out.write(block)
        written += len(block)
    out.flush()
    sys.stderr.write(f"{written} {tokens}\n")


def generator(size: int, token_every_mb: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, __file__, "--emit", str(size), "--token-every-mb", str(token_every_mb)]
    gen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert gen.stderr is not None and gen.stdout is not None
    with contextlib.suppress(OSError):  # fewer context switches; best effort
        fcntl.fcntl(gen.stdout.fileno(), fcntl.F_SETPIPE_SZ, common.MIB)
    if gen.stderr.readline().strip() != b"ready":
        sys.exit("bench: generator failed to start")
    return gen


def finish(gen: subprocess.Popen[bytes]) -> tuple[int, int]:
    assert gen.stderr is not None and gen.stdout is not None
    gen.stdout.close()
    tail = gen.stderr.read().split()
    if gen.wait() != 0 or len(tail) != 2:
        sys.exit("bench: generator did not finish (did the scanner stop reading early?)")
    return int(tail[0]), int(tail[1])


def main() -> None:
    parser = common.base_parser(__doc__)
    parser.add_argument("--size-gb", type=float, default=5.0, help="stream size in GB (5)")
    parser.add_argument("--token-every-mb", type=int, default=256, help="MiB between tokens")
    parser.add_argument("--emit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    token_every = args.token_every_mb * common.MIB
    if args.emit is not None:
        emit(args.emit, token_every)
        return

    size = int(args.size_gb * common.GB)
    cli = common.find_cli(args.cli)

    gen = generator(size, args.token_every_mb)
    t0 = time.perf_counter()
    subprocess.run(["cat"], stdin=gen.stdout, stdout=subprocess.DEVNULL, check=True)
    ceiling = time.perf_counter() - t0
    nbytes, _ = finish(gen)
    common.report("ref: generator | cat > /dev/null", [ceiling], nbytes)

    walls: list[float] = []
    peaks: list[int | None] = []
    for i in range(args.runs):
        gen = generator(size, args.token_every_mb)
        result = common.run([*cli, "scan", "-", "--format", "json"], rss=True, stdin=gen.stdout)
        nbytes, tokens = finish(gen)
        walls.append(result.wall)
        peaks.append(result.peak_rss_kb)
        summ = common.summary(result)
        if i == 0:
            print(f"  summary: {summ}")
        if summ.get("findings") != tokens:
            print(f"  WARNING: run {i}: {tokens} tokens sent, {summ.get('findings')} found")
    common.report("cendis-scan scan - --format json", walls, nbytes)
    common.report_rss("cendis-scan scan -", peaks)


if __name__ == "__main__":
    main()
