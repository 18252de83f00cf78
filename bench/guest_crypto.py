"""In-guest AF_ALG benchmark: vmsim next to QEMU 7.2 on the same kernel and initramfs.

Both emulators boot the default guest running `afalg-bench` (AES-128-CBC encryption
through the virtio_crypto driver, bound by driver name), which times 16 B, 256 B,
4 KiB and 64 KiB requests from one process and from --procs processes with the
guest's coarse clock, in two patterns:

- persistent: one operation socket per process, a sendmsg (operation and IV in
  control messages, then the data) and a recvmsg per request;
- oneshot: a new operation socket for every request (accept, sendmsg, recvmsg, close).

QEMU runs with its builtin cryptodev backend. The emulators run alternately, --runs
times each; the table shows each run's ops/s, the medians and the vmsim/QEMU ratio of
the medians (higher is better for vmsim).

Targets: every pattern, size and process count at least 1.2x QEMU on riscv64, at least
1x on arm64.

Usage: .venv/bin/python bench/guest_crypto.py [--ms 2000] [--procs 4] [--queues 1]
                                              [--runs 2] [--pattern both]
                                              [--only vmsim|qemu] [--arch riscv64|arm64]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vmsim.boards import default_append, for_arch
from vmsim.harness.guest_crypto import BenchPoint, bench_points
from vmsim.harness.results import GuestRun, check_result
from vmsim.harness.runs import run_qemu, run_vmsim
from vmsim.build.guest import GuestPaths
from vmsim.harness.runs import default_guest_for_bench

# Every point: vmsim ops/s at least this times QEMU's, per architecture.
TARGET_RATIO = {"riscv64": 1.2, "arm64": 1.0}
BOOT_SLACK_S = 60.0
SIZES = 4

Key = tuple[str, int, int]     # pattern, size, procs


def bench_append(ms: int, procs: int, pattern: str, arch: str = "riscv64") -> str:
    return (f"{default_append(for_arch(arch))} vmsim.run=afalg-bench vmsim.bench_ms={ms} vmsim.procs={procs} "
            f"vmsim.bench_pattern={pattern}")


def run_bench(name: str, paths: GuestPaths, ms: int, procs: int, queues: int,
              pattern: str, arch: str = "riscv64") -> list[BenchPoint]:
    """Boot one emulator through the benchmark; the points, or SystemExit on failure."""
    append = bench_append(ms, procs, pattern, arch)
    points_run = SIZES * (2 if procs > 1 else 1) * (2 if pattern == "both" else 1)
    timeout = BOOT_SLACK_S + points_run * ms / 1000
    if name == "vmsim":
        run: GuestRun = run_vmsim(paths, append, ("--crypto-queues", str(queues)), timeout)
    else:
        run = run_qemu(paths, append, timeout, arch=arch)
    problems = check_result(run, "afalg-bench")
    points = bench_points(run)
    if problems or not points or not all(p.ok for p in points):
        print(f"{name}: the benchmark did not pass: {'; '.join(problems)}\n{run.tail(15)}",
              file=sys.stderr)
        raise SystemExit(1)
    return points


def _by_key(runs: list[list[BenchPoint]]) -> dict[Key, list[float]]:
    """ops/s of each point, one value per run."""
    out: dict[Key, list[float]] = {}
    for points in runs:
        for p in points:
            out.setdefault((p.pattern, p.size, p.procs), []).append(p.ops_per_s)
    return out


def _cell(values: list[float] | None) -> str:
    if not values:
        return f"{'-':>10} {'':<23}"
    each = "/".join(f"{v:.0f}" for v in values)
    return f"{statistics.median(values):10.0f} {each:<23}"


def print_table(results: dict[str, list[list[BenchPoint]]], target: float) -> bool:
    """The side-by-side table; returns whether every point with both figures meets the
    target ratio."""
    by_key = {name: _by_key(runs) for name, runs in results.items()}
    keys = sorted({key for points in by_key.values() for key in points},
                  key=lambda k: (k[0] != "persistent", k[1], k[2]))
    print(f"{'pattern':<10} {'size':>6} {'procs':>5} | {'vmsim op/s':>10} {'(runs)':<23} | "
          f"{'qemu op/s':>10} {'(runs)':<23} | {'ratio':>6}  target")
    all_met = True
    for key in keys:
        pattern, size, procs = key
        vm = by_key.get("vmsim", {}).get(key)
        qemu = by_key.get("qemu", {}).get(key)
        ratio_text, verdict = f"{'-':>6}", ""
        if vm and qemu and statistics.median(qemu) > 0:
            ratio = statistics.median(vm) / statistics.median(qemu)
            ratio_text = f"{ratio:6.2f}"
            met = ratio >= target
            all_met &= met
            verdict = f">= {target:g}x {'ok' if met else 'MISSED'}"
        print(f"{pattern:<10} {size:>6} {procs:>5} | {_cell(vm)} | {_cell(qemu)} | "
              f"{ratio_text}  {verdict}")
    return all_met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--ms", type=int, default=2000, help="guest time per point")
    parser.add_argument("--procs", type=int, default=4, help="processes in the parallel points")
    parser.add_argument("--queues", type=int, default=1, help="vmsim --crypto-queues")
    parser.add_argument("--runs", type=int, default=2, help="runs per emulator, alternated")
    parser.add_argument("--pattern", choices=("persistent", "oneshot", "both"), default="both")
    parser.add_argument("--only", choices=("vmsim", "qemu"))
    parser.add_argument("--arch", choices=("riscv64", "arm64"), default="riscv64",
                        help="the default guest of this architecture, on vmsim's board and "
                        "QEMU's virt for it")
    args = parser.parse_args(argv)
    paths = default_guest_for_bench("bench/guest_crypto.py", args.arch)
    if paths is None:
        return 2
    print(f"afalg-bench: AES-128-CBC encrypt via virtio_crypto_aes_cbc, {args.ms} ms per "
          f"point, vmsim with {args.queues} data queue(s); ops/s medians of {args.runs} "
          f"run(s) each, every run in brackets")
    names = [args.only] if args.only else ["vmsim", "qemu"]
    results: dict[str, list[list[BenchPoint]]] = {name: [] for name in names}
    for i in range(args.runs):
        for name in (names if i % 2 == 0 else names[::-1]):
            results[name].append(run_bench(name, paths, args.ms, args.procs, args.queues,
                                           args.pattern, args.arch))
    met = print_table(results, TARGET_RATIO[args.arch])
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
