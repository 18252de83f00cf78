"""GDB stub benchmark: an idle stub must leave the guest at full speed.

Boots the default guest to its init's `@vmsim event=init-start` line, alternating:
- `plain`: no stub;
- `listening`: `--gdb 0`, nobody connects;
- `attached`: `--gdb 0 --wait`, a client connects, asks what GDB asks first and
  continues (the stub then installs no hook);
- `breakpoint`: attached as above with one breakpoint set where the guest never goes
  (one code hook on that address: only blocks containing it are instrumented).

Prints every run, the median per mode and its ratio to `plain`. The stub's hooks exist
only while breakpoints, watchpoints or a step need them, so the first three should
match within noise.

Usage: .venv/bin/python bench/gdb_idle.py [--runs N]
"""
from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from vmsim.gdb.packets import Reader, frame
from vmsim.harness.runs import default_guest_for_bench

MARKER = b"@vmsim event=init-start"
UNUSED_ADDRESS = 0x1000          # below RAM: never executed
MODES = ("plain", "listening", "attached", "breakpoint")


def _ask(sock: socket.socket, reader: Reader, command: bytes) -> bytes:
    """One command in ack mode; returns the reply's payload."""
    sock.sendall(frame(command))
    while True:
        for item in reader.feed(sock.recv(65536)):
            if not isinstance(item, str):
                sock.sendall(b"+")
                return item.data


def boot(mode: str, kernel: Path, initrd: Path) -> float:
    """Seconds from process start to the init marker."""
    cmd = [str(Path(sys.executable).parent / "vmsim"), "run", "--kernel", str(kernel),
           "--initrd", str(initrd), "--append", "console=ttyS0 vmsim.run=idle"]
    if mode != "plain":
        cmd += ["--gdb", "0"] + (["--wait"] if mode != "listening" else [])
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    sock = None
    try:
        if mode != "plain":
            line = proc.stderr.readline().decode()
            port = int(re.search(r"localhost:(\d+)", line).group(1))
            if mode != "listening":
                sock = socket.create_connection(("127.0.0.1", port))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # as GDB does
                reader = Reader()
                _ask(sock, reader, b"qSupported:swbreak+")
                _ask(sock, reader, b"?")
                if mode == "breakpoint":
                    _ask(sock, reader, b"Z0,%x,4" % UNUSED_ADDRESS)
                sock.sendall(frame(b"vCont;c"))
        seen = b""
        while MARKER not in seen:
            chunk = proc.stdout.read1(65536)
            if not chunk:
                raise RuntimeError(f"{mode}: vmsim ended before the init started")
            seen = seen[-len(MARKER):] + chunk
        return time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
        if sock is not None:
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    paths = default_guest_for_bench("gdb_idle")
    if paths is None:
        sys.exit(1)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for run in range(args.runs):
        for mode in MODES:
            seconds = boot(mode, paths.kernel, paths.initrd)
            times[mode].append(seconds)
            print(f"run {run + 1} {mode:<11} {seconds:6.2f} s", flush=True)
    base = statistics.median(times["plain"])
    print()
    print(f"{'mode':<11} {'median':>8} {'vs plain':>9}")
    for mode in MODES:
        median = statistics.median(times[mode])
        print(f"{mode:<11} {median:7.2f}s {median / base:8.2f}x")


if __name__ == "__main__":
    main()
