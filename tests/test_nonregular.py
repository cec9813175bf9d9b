"""Anything that is not a regular file: character devices, FIFOs, /dev/stdin on a
pipe, process substitutions. Named on the command line they are streamed in constant
memory (measured with RLIMIT_AS in the child, not with timings); inside a directory
they are skipped and counted; as ``--output`` they are written in place, never
replaced. Devices are made here with ``os.mknod`` (the tests run as root): the real
/dev/null and /dev/full are never named as an output."""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import CLI, assert_no_leak

MiB = 1 << 20
#: Address space allowed to the scanner: Python, RE2 and the rules need about 36 MiB.
LIMIT = 64 * MiB
#: More than the limit: a scanner that kept its input would die of MemoryError.
STREAMED = 80 * MiB
ZERO, NULL, FULL = os.makedev(1, 5), os.makedev(1, 3), os.makedev(1, 7)


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def _popen(args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_limited, env={**os.environ, "NO_COLOR": "1"}, **kw)


def _feed(write: Callable[[bytes], object], tail: bytes) -> None:
    block = bytes(MiB)
    for _ in range(STREAMED // MiB):
        write(block)
    write(tail)


def _read_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        return int(f.read().split("rchar:")[1].split()[0])


def test_character_device_streams_in_constant_memory_and_ctrl_c_stops_it(
        tmp_path: Path) -> None:
    """The issue's `mknod ./z c 1 5; scan ./z`: an endless device is read in chunks
    (it grew to 23 GiB before) and Ctrl-C ends it with one line."""
    device = tmp_path / "z"
    os.mknod(device, stat.S_IFCHR | 0o600, ZERO)
    proc = _popen([CLI, "scan", str(device)])
    deadline = time.monotonic() + 60  # a safety net only: the test waits on bytes read
    while _read_bytes(proc.pid) < 3 * LIMIT // 2 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)  # polled: a real process reading
    assert proc.poll() is None, proc.communicate()[1]  # still running: memory held
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err, out) == (130, b"cendis-scan: interrupted\n", b"")
    assert stat.S_ISCHR(device.stat().st_mode)


def test_dev_stdin_on_a_pipe_is_streamed(make_token: Callable[[], str]) -> None:
    token = make_token()
    read_end, write_end = os.pipe()

    def write_pipe() -> None:
        with open(write_end, "wb") as f:
            _feed(f.write, f"\nk={token}\n".encode())

    writer = threading.Thread(target=write_pipe)
    writer.start()
    proc = _popen([CLI, "scan", "/dev/stdin", "--format", "json"], stdin=read_end)
    os.close(read_end)
    out, err = proc.communicate(timeout=120)
    writer.join()
    assert proc.returncode == 1, err
    assert_no_leak(out, err)
    [finding] = json.loads(out)["findings"]
    assert (finding["path"], finding["offset"]) == ("/dev/stdin", STREAMED + 3)


def test_fifo_and_process_substitution_are_streamed(tmp_path: Path,
                                                    make_token: Callable[[], str]) -> None:
    first, second = make_token(), make_token()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def write_fifo() -> None:
        with open(fifo, "wb") as f:
            _feed(f.write, f"\nx={first}\n".encode())

    writer = threading.Thread(target=write_fifo)
    writer.start()
    # bash's <(...) hands the scanner /dev/fd/63, which a worker process could not open.
    script = (f'"$0" scan --format json --jobs 2 "$1" <(head -c {STREAMED} /dev/zero; '
              f'printf "\\ny=%s\\n" "$2")')
    proc = _popen(["bash", "-c", script, CLI, str(fifo), second])
    out, err = proc.communicate(timeout=120)
    writer.join()
    assert proc.returncode == 1, err
    assert_no_leak(out, err)
    report = json.loads(out)
    assert sorted((f["path"] == str(fifo), f["offset"], f["variable"])
                  for f in report["findings"]) == [
        (False, STREAMED + 3, "y"), (True, STREAMED + 3, "x")]


def test_non_regular_files_inside_a_directory_are_skipped_and_counted(
        cli: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    os.mkfifo(tree / "sub" / "nobody-writes")  # opening it would block for ever
    os.mknod(tree / "zero", stat.S_IFCHR | 0o600, ZERO)  # reading it would never end
    (tree / "link-to-fifo").symlink_to(tree / "sub" / "nobody-writes")
    (tree / "sub" / "a.env").write_text(f"TOKEN={make_token()}\n")
    proc = cli(["scan", str(tree), "--format", "json"], timeout=30)
    assert proc.returncode == 1, proc.err
    report = json.loads(proc.stdout)
    assert [f["path"].rsplit("/", 1)[-1] for f in report["findings"]] == ["a.env"]
    assert report["summary"]["skipped"] == 3
    assert "skipped 3 not regular file(s) inside directories" in proc.err
    assert "Traceback" not in proc.err


def _scan_to(cli: Any, tree: Path, output: Path) -> subprocess.CompletedProcess:
    return cli(["scan", str(tree), "--format", "json", "-o", str(output)], timeout=30)


def test_output_to_devices_is_written_in_place(cli: Any, tmp_path: Path,
                                               make_token: Callable[[], str]) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "k.env").write_text(f"K={make_token()}\n")
    null, full = tmp_path / "mynull", tmp_path / "myfull"
    os.mknod(null, stat.S_IFCHR | 0o666, NULL)
    os.mknod(full, stat.S_IFCHR | 0o666, FULL)
    (tmp_path / "to-null").symlink_to(null)
    assert _scan_to(cli, tree, null).returncode == 1
    assert _scan_to(cli, tree, tmp_path / "to-null").returncode == 1
    proc = _scan_to(cli, tree, full)
    assert proc.returncode == 2
    assert proc.err.splitlines()[0] == (
        f"cendis-scan: error: cannot write {full}: No space left on device")
    for device in (null, full):
        assert stat.S_ISCHR(device.lstat().st_mode), device
    assert (tmp_path / "to-null").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "myfull", "mynull", "to-null", "tree"]  # no temporary file left anywhere


def test_output_to_a_fifo_is_written_in_place(cli: Any, tmp_path: Path,
                                              make_token: Callable[[], str]) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "k.env").write_text(f"K={make_token()}\n")
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    proc = _scan_to(cli, tree, fifo)
    reader.join(30)
    assert proc.returncode == 1, proc.err
    assert json.loads(got[0])["summary"]["findings"] == 1
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_output_through_symlinks_replaces_the_target_and_keeps_the_link(
        cli: Any, tmp_path: Path, make_token: Callable[[], str]) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "k.env").write_text(f"K={make_token()}\n")
    reports = tmp_path / "reports"
    reports.mkdir()
    target = reports / "latest.json"
    target.write_text("old")
    target.chmod(0o640)
    link, dangling = tmp_path / "report.json", tmp_path / "new.json"
    link.symlink_to(target)
    dangling.symlink_to(reports / "created.json")
    assert _scan_to(cli, tree, link).returncode == 1
    assert _scan_to(cli, tree, dangling).returncode == 1
    assert link.is_symlink() and dangling.is_symlink()
    for report in (target, reports / "created.json"):
        assert stat.S_ISREG(report.lstat().st_mode)
        assert json.loads(report.read_text())["summary"]["findings"] == 1
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # a replaced report keeps its mode
    assert sorted(p.name for p in reports.iterdir()) == ["created.json", "latest.json"]


def test_output_to_dev_stdout_writes_through_stdout(tmp_path: Path,
                                                    make_token: Callable[[], str]) -> None:
    """`-o /dev/stdout >> log`: appended to the log, which is neither truncated nor
    renamed over (its resolved name is a regular file, but it is this process's
    stdout)."""
    (tmp_path / "k.env").write_text(f"K={make_token()}\n")
    log = tmp_path / "ci.log"
    log.write_text("earlier output\n")
    inode = log.stat().st_ino
    with open(log, "ab") as out:
        status = subprocess.run([CLI, "scan", str(tmp_path / "k.env"), "--format", "json",
                                 "-o", "/dev/stdout"], stdout=out, stderr=subprocess.PIPE,
                                timeout=60).returncode
    assert status == 1
    text = log.read_text()
    assert text.startswith("earlier output\n{")
    assert json.loads(text.split("\n", 1)[1])["summary"]["findings"] == 1
    assert log.stat().st_ino == inode
