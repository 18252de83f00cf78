"""In-guest AF_ALG benchmark: vmsim next to QEMU 7.2 on the same kernel and initramfs.

Both emulators boot the default guest running `afalg-bench` (AES-128-CBC encryption
through the virtio_crypto driver, bound by driver name), which times 16 B, 256 B,
4 KiB and 64 KiB requests from one process and from --procs processes with the
guest's coarse clock. QEMU runs with its builtin cryptodev backend. The table shows
ops/s and MB/s for each and the vmsim/QEMU throughput ratio.

Targets: at 4 KiB and 64 KiB vmsim at least matches QEMU; at 16 B at least 0.5x.

Usage: .venv/bin/python bench/guest_crypto.py [--ms 2000] [--procs 4] [--queues 1]
                                              [--only vmsim|qemu]
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vmsim.harness.guest_crypto import BenchPoint, bench_points
from vmsim.harness.results import GuestRun, check_result
from vmsim.harness.runs import run_qemu, run_vmsim
from vmsim.build.guest import GuestPaths
from vmsim.harness.runs import default_guest_for_bench

TARGETS = {16: 0.5, 4096: 1.0, 65536: 1.0}     # size -> minimum vmsim/QEMU ratio
BOOT_SLACK_S = 60.0


def bench_append(ms: int, procs: int) -> str:
    return f"console=ttyS0 vmsim.run=afalg-bench vmsim.bench_ms={ms} vmsim.procs={procs}"


def run_bench(name: str, paths: GuestPaths, ms: int, procs: int,
              queues: int) -> list[BenchPoint]:
    """Boot one emulator through the benchmark; the points, or SystemExit on failure."""
    append = bench_append(ms, procs)
    points_run = 4 * (2 if procs > 1 else 1)
    timeout = BOOT_SLACK_S + points_run * ms / 1000
    if name == "vmsim":
        run: GuestRun = run_vmsim(paths, append, ("--crypto-queues", str(queues)), timeout)
    else:
        run = run_qemu(paths, append, timeout)
    problems = check_result(run, "afalg-bench")
    points = bench_points(run)
    if problems or not points or not all(p.ok for p in points):
        print(f"{name}: the benchmark did not pass: {'; '.join(problems)}\n{run.tail(15)}",
              file=sys.stderr)
        raise SystemExit(1)
    return points


def _cell(point: BenchPoint | None) -> str:
    if point is None:
        return f"{'-':>10} {'-':>9}"
    return f"{point.ops_per_s:10.0f} {point.mb_per_s:9.2f}"


def print_table(results: dict[str, list[BenchPoint]]) -> bool:
    """The side-by-side table; returns whether every target with both figures is met."""
    by_key = {name: {(p.size, p.procs): p for p in points} for name, points in results.items()}
    keys = sorted({key for points in by_key.values() for key in points})
    print(f"{'size':>6} {'procs':>5} | {'vmsim op/s':>10} {'MB/s':>9} | "
          f"{'qemu op/s':>10} {'MB/s':>9} | {'ratio':>6}  target")
    all_met = True
    for size, procs in keys:
        vm = by_key.get("vmsim", {}).get((size, procs))
        qemu = by_key.get("qemu", {}).get((size, procs))
        ratio_text, verdict = f"{'-':>6}", ""
        if vm and qemu and qemu.ops_per_s > 0:
            ratio = vm.ops_per_s / qemu.ops_per_s
            ratio_text = f"{ratio:6.2f}"
            if size in TARGETS:
                met = ratio >= TARGETS[size]
                all_met &= met
                verdict = f">= {TARGETS[size]:g}x {'ok' if met else 'MISSED'}"
        print(f"{size:>6} {procs:>5} | {_cell(vm)} | {_cell(qemu)} | {ratio_text}  {verdict}")
    return all_met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--ms", type=int, default=2000, help="guest time per point")
    parser.add_argument("--procs", type=int, default=4, help="processes in the parallel points")
    parser.add_argument("--queues", type=int, default=1, help="vmsim --crypto-queues")
    parser.add_argument("--only", choices=("vmsim", "qemu"))
    args = parser.parse_args(argv)
    paths = default_guest_for_bench("bench/guest_crypto.py")
    if paths is None:
        return 2
    print(f"afalg-bench: AES-128-CBC encrypt via virtio_crypto_aes_cbc, {args.ms} ms per "
          f"point, vmsim with {args.queues} data queue(s); MB = 10^6 bytes")
    names = [args.only] if args.only else ["vmsim", "qemu"]
    results = {name: run_bench(name, paths, args.ms, args.procs, args.queues)
               for name in names}
    met = print_table(results)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
