"""Boot benchmark: vmsim next to QEMU on the same kernel and initramfs.

Prints two figures for each emulator:
- the time from process start to the init's `@vmsim event=init-start` line (median of
  several boots, run alternately so that host load hits both alike); target: vmsim no
  slower than QEMU on riscv64, at most 1.5x QEMU on arm64 (bench/guest_os.py times the
  whole process, to poweroff);
- the host CPU the whole process tree uses while the guest sleeps in wfi for 10 s
  (`vmsim.run=idle`), read from /proc; target: vmsim under 1% of one core.

With --arch arm64 the default arm64 guest runs on vmsim's arm64 board and on
`qemu-system-aarch64 -M virt -cpu cortex-a72`.

Usage: .venv/bin/python bench/boot.py [--runs N] [--idle-seconds S] [--only vmsim|qemu]
                                      [--arch riscv64|arm64]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from vmsim.boards import default_append, for_arch
from vmsim.build.guest import GuestPaths
from vmsim.harness.qemu import qemu_command
from vmsim.harness.results import parse_result_lines
from vmsim.harness.runs import default_guest_for_bench

MARKER = b"@vmsim event=init-start"
BOOT_TARGET_RATIO = {"riscv64": 1.0, "arm64": 1.5}   # vmsim/QEMU, per architecture
IDLE_TARGET_PERCENT = 1.0
IDLE_SETTLE_S = 1.0          # from the marker until the idle program is surely asleep
IDLE_MARGIN_S = 2.0          # the guest sleeps this much longer than the window
CLK_TCK = os.sysconf("SC_CLK_TCK")

Command = Callable[[GuestPaths, str, str], list[str]]


def vmsim_command(paths: GuestPaths, append: str, _arch: str) -> list[str]:
    """The board follows from the kernel file."""
    vmsim = Path(sys.executable).parent / "vmsim"
    return [str(vmsim), "run", "--kernel", str(paths.kernel), "--initrd", str(paths.initrd),
            "--append", append]


def qemu_for(paths: GuestPaths, append: str, arch: str) -> list[str]:
    return qemu_command(paths, append, arch=arch)


EMULATORS: dict[str, Command] = {"qemu": qemu_for, "vmsim": vmsim_command}


class GuestProcess:
    """An emulator process whose console is collected by a thread, noting the marker."""

    def __init__(self, cmd: list[str]) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.output = bytearray()
        self.marker_s: float | None = None
        self.marker = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := os.read(self.proc.stdout.fileno(), 4096):
            self.output += chunk
            if self.marker_s is None and MARKER in self.output:
                self.marker_s = time.monotonic() - self.started
                self.marker.set()
        self.marker.set()            # EOF: wake any waiter, marker or not

    def finish(self, timeout: float) -> int:
        """Wait for poweroff (killing the emulator after `timeout`); return its status."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join()
        return code

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def cpu_seconds(self) -> float:
        """User + system time of the emulator and its descendants (worker processes)."""
        return sum(_stat_cpu_ticks(pid) for pid in _process_tree(self.proc.pid)) / CLK_TCK


def _read_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()    # fields from 3 (state) on


def _stat_cpu_ticks(pid: int) -> int:
    fields = _read_stat(pid)
    return int(fields[11]) + int(fields[12]) if fields else 0    # utime, stime


def _process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _read_stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


class BootFailed(Exception):
    pass


def _failure(name: str, guest: GuestProcess, code: int, why: str) -> BootFailed:
    tail = "\n".join("    " + line for line in guest.text().splitlines()[-8:])
    return BootFailed(f"{name}: {why} (exit status {code})\n{tail}")


def boot_to_marker(name: str, paths: GuestPaths, arch: str, timeout: float = 120.0) -> float:
    """Seconds from process start to the init marker; the guest then powers off."""
    guest = GuestProcess(EMULATORS[name](paths, default_append(for_arch(arch)), arch))
    guest.marker.wait(timeout)
    code = guest.finish(timeout)
    if guest.marker_s is None:
        raise _failure(name, guest, code, "no init marker")
    if code != 0:
        raise _failure(name, guest, code, "the default guest did not pass")
    return guest.marker_s


def idle_cpu_percent(name: str, paths: GuestPaths, arch: str, window_s: float) -> float:
    """Host CPU of the emulator while the guest sleeps, in percent of one core."""
    idle_ms = int((IDLE_SETTLE_S + window_s + IDLE_MARGIN_S) * 1000)
    append = f"{default_append(for_arch(arch))} vmsim.run=idle vmsim.idle_ms={idle_ms}"
    guest = GuestProcess(EMULATORS[name](paths, append, arch))
    guest.marker.wait(120)
    if guest.marker_s is None:
        raise _failure(name, guest, guest.finish(1), "no init marker")
    time.sleep(IDLE_SETTLE_S)
    cpu0, t0 = guest.cpu_seconds(), time.monotonic()
    time.sleep(window_s)
    cpu1, t1 = guest.cpu_seconds(), time.monotonic()
    code = guest.finish(60)
    results = [r for r in parse_result_lines(guest.text()) if r.get("test") == "idle"]
    if code != 0 or not results or results[0].get("result") != "pass":
        raise _failure(name, guest, code, "the idle program did not pass")
    return 100.0 * (cpu1 - cpu0) / (t1 - t0)


def _boot_times(names: list[str], paths: GuestPaths, arch: str,
                runs: int) -> dict[str, list[float]]:
    """Alternate the emulators run by run, so a burst of host load hits both alike."""
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(runs):
        for name in list(times):
            try:
                times[name].append(boot_to_marker(name, paths, arch))
            except BootFailed as failed:
                print(f"  {failed}")
                del times[name]
    return times


def _verdict(met: bool) -> str:
    return "ok" if met else "MISSED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="boots per emulator")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--only", choices=sorted(EMULATORS))
    parser.add_argument("--arch", choices=("riscv64", "arm64"), default="riscv64")
    args = parser.parse_args(argv)
    names = [args.only] if args.only else ["qemu", "vmsim"]
    paths = default_guest_for_bench("bench/boot.py", args.arch)
    if paths is None:
        return 2
    print(f"boot to the init marker (median of {args.runs}, min in brackets)")
    times = _boot_times(names, paths, args.arch, args.runs)
    for name, samples in times.items():
        print(f"  {name:<6} {statistics.median(samples):6.3f} s ({min(samples):.3f})")
    if {"qemu", "vmsim"} <= times.keys():
        ratio = statistics.median(times["vmsim"]) / statistics.median(times["qemu"])
        target = BOOT_TARGET_RATIO[args.arch]
        print(f"  ratio  {ratio:6.2f}x vmsim/qemu "
              f"(target <= {target}x: {_verdict(ratio <= target)})")

    print(f"host CPU while the guest idles in wfi ({args.idle_seconds:g} s window)")
    for name in list(times):
        try:
            percent = idle_cpu_percent(name, paths, args.arch, args.idle_seconds)
        except BootFailed as failed:
            print(f"  {failed}")
            del times[name]
            continue
        target = (f" (target < {IDLE_TARGET_PERCENT}%: {_verdict(percent < IDLE_TARGET_PERCENT)})"
                  if name == "vmsim" else "")
        print(f"  {name:<6} {percent:6.2f}% of one core{target}")
    return 0 if len(times) == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
