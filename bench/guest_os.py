"""Guest OS benchmark: vmsim next to QEMU 7.2 on the guest's everyday kernel work.

Two parts, each run on both emulators alternately so that host load hits both alike:

- boot: the whole emulator process, from spawn to exit, booting the default guest to
  its trivial init (`sanity`) and powering off. vmsim runs with its virtio-crypto
  device (as QEMU does) and, for comparison, with --no-crypto. Wall time and the host
  CPU time of the process and its children (crypto workers included).
- os-bench (guests/initramfs/programs/os-bench.c), timed inside the guest: a page fault
  on fresh anonymous memory, mmap/touch/munmap of one page, fork+exit+wait, a trivial
  system call, a pipe round trip between two processes, a vdso clock read, a pure user
  loop iteration and a 64 KiB memcpy.

Every figure is printed for each run (so a pair can be compared directly), with the
median and the vmsim/QEMU ratio of the medians (lower is better for vmsim). Targets:
boot <= 1.0x (arm64: 1.5x); page fault and mmap <= 1.1x; every other point <= 1.0x.
With --arch arm64 the default arm64 guest runs on vmsim's arm64 board and on
`qemu-system-aarch64 -M virt -cpu cortex-a72`.

Usage: .venv/bin/python bench/guest_os.py [--runs N] [--boots N] [--ms MS]
                                          [--points a,b] [--only vmsim|qemu]
                                          [--arch riscv64|arm64]
"""
from __future__ import annotations

import argparse
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vmsim.boards import default_append, for_arch
from vmsim.build.guest import GuestPaths
from vmsim.harness.qemu import qemu_command
from vmsim.harness.results import GuestRun, check_result
from vmsim.harness.runs import default_guest_for_bench, vmsim_command

POINT_TARGETS = {"pagefault": 1.1, "mmap": 1.1}    # every other point: 1.0
DEFAULT_TARGET = 1.0
BOOT_TARGET = {"riscv64": 1.0, "arm64": 1.5}
UNITS = {"memcpy": "64 KiB copy"}


@dataclass(frozen=True)
class ProcessRun:
    """One emulator process to exit: wall seconds, host CPU seconds, its console."""

    wall_s: float
    cpu_s: float
    run: GuestRun


def run_process(cmd: list[str], timeout: float) -> ProcessRun:
    """Spawn to exit; the CPU time counts the process and the children it reaped."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    assert proc.stdout is not None
    out = bytearray()
    deadline = started + timeout
    timed_out = False
    fd = proc.stdout.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            os.killpg(proc.pid, signal.SIGKILL)      # a hung emulator and its workers
            timed_out = True
            out += proc.stdout.read()
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out += chunk
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ProcessRun(wall, usage.ru_utime + usage.ru_stime,
                      GuestRun(proc.returncode, out.decode(errors="replace"), timed_out))


def command(name: str, paths: GuestPaths, options: str, arch: str) -> list[str]:
    """The emulator `name` booting `paths` with the board's console, then `options`."""
    append = f"{default_append(for_arch(arch))} {options}".strip()
    if name == "qemu":
        return qemu_command(paths, append, arch=arch)
    extra = ("--no-crypto",) if name == "vmsim-nocrypto" else ()
    return vmsim_command(paths, append, extra)


class BenchFailed(Exception):
    pass


def boot_once(name: str, paths: GuestPaths, arch: str) -> ProcessRun:
    result = run_process(command(name, paths, "", arch), timeout=120)
    if result.run.status != 0 or check_result(result.run, "sanity"):
        raise BenchFailed(f"{name}: the boot did not pass (status {result.run.status})\n"
                          f"{result.run.tail(10)}")
    return result


def os_bench_once(name: str, paths: GuestPaths, ms: int, points: str | None,
                  arch: str) -> dict[str, float]:
    options = f"vmsim.run=os-bench vmsim.bench_ms={ms}"
    if points:
        options += f" vmsim.points={points}"
    result = run_process(command(name, paths, options, arch), timeout=120 + 10 * ms / 1000)
    run = result.run
    problems = check_result(run, "os-bench")
    lines = run.events("osbench")
    bad = [line for line in lines if line.get("err") != "0" or line.get("ops") in (None, "0")]
    if problems or bad or run.status != 0:
        raise BenchFailed(f"{name}: os-bench did not pass: {problems} {bad}\n{run.tail(10)}")
    return {line["name"]: float(line["ns_per_op"]) for line in lines}


def _fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.2f} ns"


def _verdict(ratio: float, target: float) -> str:
    return f"<= {target:g}x {'ok' if ratio <= target else 'MISSED'}"


def print_boot(samples: dict[str, list[ProcessRun]], boot_target: float) -> bool:
    print("boot to init and poweroff, whole process (wall s / host CPU s per run; median)")
    for name, runs in samples.items():
        each = "  ".join(f"{r.wall_s:.3f}/{r.cpu_s:.2f}" for r in runs)
        wall = statistics.median(r.wall_s for r in runs)
        print(f"  {name:<15} median {wall:6.3f} s   runs: {each}")
    met = True
    if "qemu" in samples:
        qemu = statistics.median(r.wall_s for r in samples["qemu"])
        for name in ("vmsim", "vmsim-nocrypto"):
            if name in samples:
                ratio = statistics.median(r.wall_s for r in samples[name]) / qemu
                target = f"  target {_verdict(ratio, boot_target)}" if name == "vmsim" else ""
                met &= ratio <= boot_target or name != "vmsim"
                print(f"  ratio {name}/qemu {ratio:5.2f}x{target}")
    return met


def print_points(samples: dict[str, list[dict[str, float]]]) -> bool:
    print("os-bench, time per operation inside the guest (each run; median; ratio of medians)")
    names: list[str] = []
    for runs in samples.values():
        for run in runs:
            names += [n for n in run if n not in names]
    met = True
    for point in names:
        unit = UNITS.get(point, "op")
        print(f"  {point} (per {unit})")
        medians = {}
        for name, runs in samples.items():
            values = [run[point] for run in runs if point in run]
            if not values:
                continue
            medians[name] = statistics.median(values)
            each = "  ".join(_fmt_ns(v) for v in values)
            print(f"    {name:<6} median {_fmt_ns(medians[name]):>11}   runs: {each}")
        if "vmsim" in medians and "qemu" in medians and medians["qemu"] > 0:
            ratio = medians["vmsim"] / medians["qemu"]
            target = POINT_TARGETS.get(point, DEFAULT_TARGET)
            met &= ratio <= target
            print(f"    ratio  {ratio:5.2f}x vmsim/qemu  target {_verdict(ratio, target)}")
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="os-bench runs per emulator")
    parser.add_argument("--boots", type=int, default=5, help="boots per emulator")
    parser.add_argument("--ms", type=int, default=500, help="guest time per os-bench point")
    parser.add_argument("--points", help="only these os-bench points (comma-separated)")
    parser.add_argument("--only", choices=("vmsim", "qemu"))
    parser.add_argument("--skip-boot", action="store_true")
    parser.add_argument("--skip-points", action="store_true")
    parser.add_argument("--arch", choices=("riscv64", "arm64"), default="riscv64")
    args = parser.parse_args(argv)
    paths = default_guest_for_bench("bench/guest_os.py", args.arch)
    if paths is None:
        return 2
    emulators = [args.only] if args.only else ["vmsim", "qemu"]
    met = True
    try:
        if not args.skip_boot:
            boot_names = emulators + (["vmsim-nocrypto"] if "vmsim" in emulators else [])
            boots: dict[str, list[ProcessRun]] = {name: [] for name in boot_names}
            for i in range(args.boots):
                order = boot_names if i % 2 == 0 else boot_names[::-1]
                for name in order:
                    boots[name].append(boot_once(name, paths, args.arch))
            met &= print_boot(boots, BOOT_TARGET[args.arch])
        if not args.skip_points:
            points: dict[str, list[dict[str, float]]] = {name: [] for name in emulators}
            for i in range(args.runs):
                order = emulators if i % 2 == 0 else emulators[::-1]
                for name in order:
                    points[name].append(os_bench_once(name, paths, args.ms, args.points,
                                                      args.arch))
            met &= print_points(points)
    except BenchFailed as failed:
        print(failed, file=sys.stderr)
        return 1
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
