"""Acceptance gate for safe preemption: no atomic may ever run twice across a stop.

A bare-metal riscv64 loop does `amoadd.d` and an LR/SC increment a known number of times
while another thread requests a stop every 100 µs; after each stop the run resumes at pc.
Both counters must equal the iteration count exactly, and many stops must have landed
(docs/engine.md, E14). Each engine is loaded in its own subprocess, because the `unicorn`
binding binds one library per process.

The module doubles as the probe that bench/preempt.py runs:
    python tests/machine/test_preempt_atomics.py --elf prog.elf --iterations N --interval-us 100
(engine chosen by VMSIM_ENGINE; prints one JSON object).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RAM_BASE = 0x8000_0000
RAM_SIZE = 0x10_0000
AMO_COUNTER = RAM_BASE + 0x8_0000   # own page: no stores near translated code
LRSC_COUNTER = AMO_COUNTER + 0x40

# a0 = iterations, a1 = &amo counter, a2 = &lr/sc counter. Ends by reaching `done`.
PROGRAM = """
    .globl _start
_start:
    li      t1, 1
loop:
    amoadd.d zero, t1, (a1)
retry:
    lr.d    t0, (a2)
    addi    t0, t0, 1
    sc.d    t2, t0, (a2)
    bnez    t2, retry
    .globl after_sc
after_sc:
    addi    a0, a0, -1
    bnez    a0, loop
    .globl done
done:
    j       done
"""

INSTRUCTIONS_PER_ITERATION = 7   # when no SC fails, which is always on one hart
ITERATIONS = 3_000_000
STOP_INTERVAL_US = 100
MIN_STOPS = 200


ASSEMBLER, LINKER = "riscv64-linux-gnu-as", "riscv64-linux-gnu-ld"


def missing_tool() -> str | None:
    """Why the program cannot be built here, or None."""
    for tool in (ASSEMBLER, LINKER):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian package binutils-riscv64-linux-gnu)"
    return None


def build_program(workdir: Path) -> Path:
    """Assemble and link PROGRAM at RAM_BASE; returns the ELF path."""
    source, obj, elf = workdir / "atomics.S", workdir / "atomics.o", workdir / "atomics.elf"
    source.write_text(PROGRAM)
    subprocess.run([ASSEMBLER, "-march=rv64imac", "-o", obj, source], check=True)
    subprocess.run([LINKER, f"-Ttext={RAM_BASE:#x}", "-o", elf, obj], check=True)
    return elf


def _load_elf(uc, elf: Path) -> tuple[int, dict[str, int]]:
    """Copy the ELF's allocated sections into the Uc; return (entry, symbol addresses)."""
    from elftools.elf.constants import SH_FLAGS
    from elftools.elf.elffile import ELFFile

    with open(elf, "rb") as f:
        image = ELFFile(f)
        for section in image.iter_sections():
            if section["sh_flags"] & SH_FLAGS.SHF_ALLOC and section["sh_type"] == "SHT_PROGBITS":
                uc.mem_write(section["sh_addr"], section.data())
        symbols = image.get_section_by_name(".symtab")
        names = ("loop", "retry", "after_sc", "done")
        return image.header["e_entry"], {
            name: symbols.get_symbol_by_name(name)[0]["st_value"] for name in names}


def run_probe(elf: Path, iterations: int, interval_us: float | None, direct: bool) -> dict:
    """Run the loop in this process under periodic stops; return counters and figures.

    interval_us None means no stopping thread; 0 means request as fast as possible.
    direct=True stops with plain `uc.emu_stop()` (the unsafe way, to prove the test bites).
    """
    from vmsim.core.engine import engine_description, load_unicorn
    from vmsim.core.preempt import make_stopper

    unicorn = load_unicorn()
    from unicorn.riscv_const import (UC_RISCV_REG_A0, UC_RISCV_REG_A1, UC_RISCV_REG_A2,
                                     UC_RISCV_REG_PC)

    uc = unicorn.Uc(unicorn.UC_ARCH_RISCV, unicorn.UC_MODE_RISCV64)
    uc.mem_map(RAM_BASE, RAM_SIZE)
    entry, symbols = _load_elf(uc, elf)
    done_pc = symbols["done"]
    uc.reg_write(UC_RISCV_REG_A0, iterations)
    uc.reg_write(UC_RISCV_REG_A1, AMO_COUNTER)
    uc.reg_write(UC_RISCV_REG_A2, LRSC_COUNTER)
    stopper = None if direct else make_stopper(uc)
    request = uc.emu_stop if stopper is None else stopper.request

    finished = threading.Event()
    requests = 0

    def stop_periodically() -> None:
        nonlocal requests
        while not finished.is_set():
            time.sleep(interval_us / 1e6)
            request()
            requests += 1

    thread = threading.Thread(target=stop_periodically, daemon=True)
    if interval_us is not None:
        thread.start()
    stops = 0
    stop_pcs: set[int] = set()
    pc = entry
    started = time.perf_counter()
    while pc != done_pc:
        uc.emu_start(pc, done_pc)
        pc = uc.reg_read(UC_RISCV_REG_PC)
        if pc != done_pc:
            stops += 1
            stop_pcs.add(pc)
    elapsed = time.perf_counter() - started
    finished.set()
    if interval_us is not None:
        thread.join()
    if stopper is not None:
        stopper.close()
    # Where translation blocks start: the entry, the loop head and the fall-through after
    # the SC's retry branch (never taken with one hart, so `retry` starts no block).
    block_starts = {entry, symbols["loop"], symbols["after_sc"]}
    counter = lambda addr: int.from_bytes(uc.mem_read(addr, 8), "little")  # noqa: E731
    return {
        "engine": engine_description(),
        "iterations": iterations,
        "amo": counter(AMO_COUNTER),
        "lrsc": counter(LRSC_COUNTER),
        "stops": stops,
        "requests": requests,
        "seconds": elapsed,
        "stopped_inside_block": sorted(pc - entry for pc in stop_pcs - block_starts),
    }


def probe_in_subprocess(engine: str, elf: Path, iterations: int, interval_us: float | None,
                        direct: bool = False) -> dict:
    """run_probe with VMSIM_ENGINE=engine in a fresh interpreter."""
    cmd = [sys.executable, __file__, "--elf", str(elf), "--iterations", str(iterations)]
    if interval_us is not None:
        cmd += ["--interval-us", str(interval_us)]
    if direct:
        cmd.append("--direct")
    env = dict(os.environ, VMSIM_ENGINE=engine, PYTHONPATH=str(REPO))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise AssertionError(f"probe failed ({engine}): {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    # Imported here: bench/preempt.py runs this module as a script, without tests/.
    from tests.support.guest import CROSS_AS, CROSS_LD, require_tools

    require_tools(CROSS_AS, CROSS_LD)
    return build_program(tmp_path_factory.mktemp("atomics"))


@pytest.mark.parametrize("engine", ["patched", "wheel"])
def test_no_atomic_runs_twice_under_stops_every_100us(program: Path, engine: str) -> None:
    if engine == "patched":
        from tests.support.guest import require_patched_engine

        require_patched_engine()
    result = probe_in_subprocess(engine, program, ITERATIONS, STOP_INTERVAL_US)
    assert ("patched build" in result["engine"]) == (engine == "patched"), result
    assert result["amo"] == ITERATIONS, result
    assert result["lrsc"] == ITERATIONS, result
    assert result["stops"] >= MIN_STOPS, result
    assert result["stopped_inside_block"] == [], result


def test_the_check_bites_plain_emu_stop_on_the_wheel_reruns_atomics(program: Path) -> None:
    """The same loop with the wheel's own asynchronous emu_stop must show double-applied
    atomics; otherwise the test above would prove nothing."""
    result = probe_in_subprocess("wheel", program, ITERATIONS, STOP_INTERVAL_US, direct=True)
    assert result["stops"] >= MIN_STOPS, result
    assert result["amo"] > ITERATIONS or result["lrsc"] > ITERATIONS, result
    assert result["stopped_inside_block"], result


def _main() -> None:
    sys.path.insert(0, str(REPO))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elf", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=ITERATIONS)
    parser.add_argument("--interval-us", type=float, default=None)
    parser.add_argument("--direct", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run_probe(args.elf, args.iterations, args.interval_us, args.direct)))


if __name__ == "__main__":
    _main()
