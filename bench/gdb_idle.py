"""GDB stub benchmark: an idle stub must leave the guest at full speed.

Boots the default guest to its init's `@vmsim event=init-start` line, alternating:
- `plain`: no stub;
- `listening`: `--gdb 0`, nobody connects;
- `attached`: `--gdb 0 --wait`, a client connects, asks what GDB asks first and
  continues (the stub then installs no hook);
- `breakpoint`: attached as above with one breakpoint set where the guest never goes
  (one code hook on that address: only blocks containing it are instrumented).

Prints every run (wall clock and vmsim's CPU time, which is steadier on a loaded host),
the medians per mode and their ratios to `plain`. The stub's hooks exist
only while breakpoints, watchpoints or a step need them, so the first three should
match within noise.

Usage: .venv/bin/python bench/gdb_idle.py [--runs N]
"""
from __future__ import annotations

import argparse
import os
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
CLK_TCK = os.sysconf("SC_CLK_TCK")
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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def boot(mode: str, kernel: Path, initrd: Path) -> tuple[float, float]:
    """Seconds from process start to the init marker, wall clock and vmsim's CPU time
    (the CPU figure is steadier on a loaded host)."""
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
        return time.monotonic() - started, _cpu_seconds(proc.pid)
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
    wall: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    for run in range(args.runs):
        for mode in MODES:
            seconds, cpu_seconds = boot(mode, paths.kernel, paths.initrd)
            wall[mode].append(seconds)
            cpu[mode].append(cpu_seconds)
            print(f"run {run + 1} {mode:<11} {seconds:6.2f} s wall {cpu_seconds:6.2f} s CPU",
                  flush=True)
    base_wall, base_cpu = statistics.median(wall["plain"]), statistics.median(cpu["plain"])
    print()
    print(f"{'mode':<11} {'wall':>7} {'vs plain':>9} {'CPU':>7} {'vs plain':>9}")
    for mode in MODES:
        w, c = statistics.median(wall[mode]), statistics.median(cpu[mode])
        print(f"{mode:<11} {w:6.2f}s {w / base_wall:8.2f}x {c:6.2f}s {c / base_cpu:8.2f}x")


if __name__ == "__main__":
    main()
