"""Preemption figures for both engines, side by side (docs/engine.md, E14).

For the patched libunicorn and for the PyPI wheel with the native stop hook (and the
bare wheel as a speed reference, which has no safe stop) it prints:
- the speed of a bare-metal AMO + LR/SC loop, with no stops and under a stop every
  100 µs;
- how many stops per second land when another thread requests them back to back;
- the default guest's boot time, and the speed of its busy user loop under Linux.

Each engine runs in its own interpreter (the binding binds one library per process).
Figures are best of a few runs, since the host is shared. Run from the repository root:
    .venv/bin/python bench/preempt.py [--runs N] [--boots N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.machine import test_preempt_atomics as probe  # noqa: E402
from vmsim.build.unicorn import cached_patched_unicorn  # noqa: E402

LOOP_ITERATIONS = 10_000_000
STOP_ITERATIONS = 3_000_000

# (label, VMSIM_ENGINE, plain emu_stop instead of make_stopper's)
ENGINES = [
    ("patched", "patched", False),
    ("wheel + native hook", "wheel", False),
    ("wheel, no hook (unsafe)", "wheel", True),
]


def best(engine: str, direct: bool, iterations: int, interval_us: float | None,
         elf: Path, runs: int) -> dict:
    """The fastest of `runs` probe runs (least disturbed by other load on the host)."""
    results = [probe.probe_in_subprocess(engine, elf, iterations, interval_us, direct)
               for _ in range(runs)]
    return min(results, key=lambda r: r["seconds"])


def loop_figures(elf: Path, runs: int) -> list[tuple[str, str, str, str]]:
    rows = []
    for label, engine, direct in ENGINES:
        if engine == "patched" and cached_patched_unicorn() is None:
            rows.append((label, "not built (make unicorn)", "", ""))
            continue
        free = best(engine, direct, LOOP_ITERATIONS, None, elf, runs)
        stopped = best(engine, direct, LOOP_ITERATIONS, 100, elf, runs)
        flood = best(engine, direct, STOP_ITERATIONS, 0, elf, runs)
        mips = lambda r: r["iterations"] * probe.INSTRUCTIONS_PER_ITERATION / r["seconds"] / 1e6  # noqa: E731
        rows.append((
            label,
            f"{mips(free):7.0f} M insn/s",
            f"{mips(stopped):7.0f} M insn/s ({stopped['stops'] / stopped['seconds']:6.0f} stops/s)",
            f"{flood['stops'] / flood['seconds']:8.0f} stops/s",
        ))
    return rows


BUSY_APPEND = "console=ttyS0 vmsim.run=busy vmsim.busy_ms=1000"


def linux_figures(engine: str, boots: int) -> str:
    """Median boot times of the default guest, then the guest's busy user loop speed."""
    times = [_boot_in_subprocess(engine, None) for _ in range(boots)]
    if any(isinstance(t, str) for t in times):
        return next(t for t in times if isinstance(t, str))
    to_init = statistics.median(t["init"] for t in times)
    to_off = statistics.median(t["poweroff"] for t in times)
    busy = _boot_in_subprocess(engine, BUSY_APPEND)
    if isinstance(busy, str):
        return busy
    return (f"boot {to_init:.2f} s to init, {to_off:.2f} s to poweroff (median of {boots}); "
            f"user busy loop {busy['batches_per_s']:.0f} batches/s")


def _boot_in_subprocess(engine: str, append: str | None) -> dict | str:
    cmd = [sys.executable, __file__, "--boot-once"] + (["--append", append] if append else [])
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, VMSIM_ENGINE=engine, PYTHONPATH=str(REPO)))
    if out.returncode != 0:
        return "boot failed: " + (out.stderr.strip().splitlines() or ["?"])[-1][:100]
    return json.loads(out.stdout)


INIT_MARKER = b"@vmsim event=init-start"


def boot_once(append: str | None) -> dict:
    """Boot the default guest once and time it from run(); with the busy program, also
    its batches per second (a CPU-bound user loop with AMOs, under Linux)."""
    from vmsim.build.guest import ensure_default_guest
    from vmsim.harness.results import parse_result_lines
    from vmsim.core.machine import Machine, MachineConfig

    paths = ensure_default_guest()
    seen = bytearray()
    marks: dict[str, float] = {}

    def output(data: bytes) -> None:
        seen.extend(data)
        if "init" not in marks and INIT_MARKER in seen:
            marks["init"] = time.perf_counter()

    config = MachineConfig(kernel=paths.kernel, initrd=paths.initrd)
    if append:
        config.append = append
    machine = Machine(config, output=output)
    machine.load()
    started = time.perf_counter()
    try:
        status = machine.run()
    finally:
        machine.close()
    if status != 0 or "init" not in marks:
        raise SystemExit(f"the guest did not boot cleanly (status {status})")
    figures = {"init": marks["init"] - started, "poweroff": time.perf_counter() - started}
    for result in parse_result_lines(seen.decode(errors="replace")):
        if result.get("test") == "busy" and result.get("result") == "pass":
            figures["batches_per_s"] = int(result["batches"]) * 1000 / int(result["ms"])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (best is kept)")
    parser.add_argument("--boots", type=int, default=3, help="boots per engine")
    parser.add_argument("--boot-once", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--append", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.boot_once:
        print(json.dumps(boot_once(args.append)))
        return 0
    if probe.missing_tool():
        print(f"skipped: {probe.missing_tool()}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        elf = probe.build_program(Path(tmp))
        rows = loop_figures(elf, args.runs)
    print("engine                    | loop, no stops   | loop, stop every 100 µs"
          "                | back-to-back stops")
    for label, free, stopped, flood in rows:
        print(f"{label:25} | {free:16} | {stopped:38} | {flood}")
    for label, engine, direct in ENGINES:
        if args.boots <= 0 or direct or (engine == "patched" and cached_patched_unicorn() is None):
            continue
        print(f"Linux, {label}: {linux_figures(engine, args.boots)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
