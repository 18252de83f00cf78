"""The patched engine's aarch64 pieces, driven directly through the unicorn binding.

Small bare-metal AArch64 programs (assembled by aarch64-linux-gnu-as) run on the engine
with no machine around them, so each test sees exactly what the engine does
(docs/engine.md, P13-P17): the reset state, exceptions to EL1 taken natively, HVC
handed to the hook, the generic timer's stores, ISTATUS and stops, the IRQ line, and
stops from another thread that never replay an exclusive store. On the stock wheel or
a riscv-only build every test fails: the wheel hands every exception to the hook,
drops timer writes and has no pseudo-registers; a riscv-only library has no aarch64.

The module doubles as the probe the atomics test runs in a fresh interpreter per
engine (the binding loads one library per process, docs/engine.md E20):
    python tests/machine/test_arm64_engine.py --elf prog.elf --iterations N [--direct]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

# The engine's pseudo-registers and exception numbers (qemu/target/arm/vmsim.h in the patch).
from vmsim.core.arm64_cpu import (EXCP_DATA_ABORT, EXCP_HVC, EXCP_SWI, EXCP_UDEF, REG_CNTV_CTL,
                                  REG_CNTV_CVAL, REG_COUNTER, REG_IRQ, REG_TIMER_DEADLINE,
                                  REG_TIMER_WRITES, REG_TRAP_REPEATS, REG_TRAPS)

REPO = Path(__file__).resolve().parents[2]
RAM_BASE = 0x4000_0000
RAM_SIZE = 0x20_0000
MMIO_BASE = 0x0900_0000
COUNTER = RAM_BASE + 0x10_0000      # the exclusive counter, on a page of its own
UNMAPPED_VA = 0x8000_1234           # outside the one 1 GiB block the MMU program maps

NEVER = (1 << 64) - 1

# Every vector records its offset in x20 and the exception registers in x21-x25, then
# ends at `done`, where the host's run ends.
PROGRAM = r"""
    .equ MMIO, 0x09000000
    .text
    .globl _start
_start:
    b       done

    .balign 0x800
vectors:
    .irp off, 0x000,0x080,0x100,0x180,0x200,0x280,0x300,0x380,0x400,0x480,0x500,0x580,0x600,0x680,0x700,0x780
    .balign 0x80
    mov     x20, #\off
    b       record
    .endr
record:
    mrs     x21, esr_el1
    mrs     x22, elr_el1
    mrs     x23, far_el1
    mrs     x24, spsr_el1
    mrs     x25, CurrentEL
    .globl done
done:
    b       done

setup:
    adr     x9, vectors
    msr     vbar_el1, x9
    isb
    ret

    .globl svc_el1, svc_el1_insn
svc_el1:
    bl      setup
svc_el1_insn:
    svc     #0x42
    b       done

    .globl svc_el0, svc_el0_insn
svc_el0:
    bl      setup
    adr     x9, svc_el0_insn
    msr     elr_el1, x9
    msr     spsr_el1, xzr           // EL0t, nothing masked
    eret
svc_el0_insn:
    svc     #0x7
    b       done

    .globl abort, abort_insn
abort:                              // the MMU on, one 1 GiB block maps the RAM
    bl      setup
    mov     x9, #0xff
    msr     mair_el1, x9
    ldr     x9, =0x200803519        // T0SZ 25, 4 KiB granule, TTBR1 walks off, 40-bit PA
    msr     tcr_el1, x9
    adr     x9, l1_table
    ldr     x10, =0x40000701        // block at 0x40000000: AF, inner shareable, attr 0
    str     x10, [x9, #8]
    msr     ttbr0_el1, x9
    isb
    mrs     x9, sctlr_el1
    orr     x9, x9, #1
    msr     sctlr_el1, x9
    isb
    ldr     x10, =0x80001234
    mov     x26, #1                 // reached with the MMU on
abort_insn:
    str     x11, [x10]
    b       done

    .globl hvc_call, hvc_insn
hvc_call:
    bl      setup
    mov     x0, #0x84000000         // PSCI_VERSION
hvc_insn:
    hvc     #0
    mov     x26, x0
    b       done

    .globl timer, after_cval, after_ctl
timer:                              // x2 = ticks from now
    mrs     x1, cntvct_el0
    add     x1, x1, x2
    msr     cntv_cval_el0, x1
after_cval:
    mov     x0, #1
    msr     cntv_ctl_el0, x0
after_ctl:
    mrs     x0, cntv_ctl_el0
    mrs     x3, cntvct_el0
    tbz     x0, #2, after_ctl
    b       done

    .globl irq, irq_store, irq_spin_end
irq:                                // x0 = 1: mask IRQs first
    bl      setup
    cbz     x0, 1f
    msr     daifset, #2
    b       2f
1:  msr     daifclr, #2
2:  mov     x9, #MMIO
    mov     x1, #0
irq_store:
    str     x1, [x9]                // the host raises the line from this access
spin:
    add     x1, x1, #1
    cmp     x1, x2
    b.ne    spin
irq_spin_end:
    mov     x20, #0xdead
    b       done

    .globl atomics, loop, after_stxr, atomics_done
atomics:                            // x0 = iterations, x1 = &counter
loop:
    ldxr    x3, [x1]
    add     x3, x3, #1
    stxr    w4, x3, [x1]
    cbnz    w4, loop
after_stxr:
    subs    x0, x0, #1
    b.ne    loop
atomics_done:
    b       atomics_done

    .globl asid_switch, asid_done
asid_switch:                        // two processes with one VA each, switched as Linux does
    bl      setup
    mov     x9, #0xff
    msr     mair_el1, x9
    ldr     x9, =0x2b5593519        // both halves walked, 39-bit VAs, the ASID in TTBR1
    msr     tcr_el1, x9
    ldr     x9, =t1_l1
    mov     x10, #1
    orr     x9, x9, x10, lsl #48    // ASID 1
    msr     ttbr1_el1, x9
    ldr     x9, =a_l1
    msr     ttbr0_el1, x9
    isb
    mrs     x9, sctlr_el1
    orr     x9, x9, #1
    msr     sctlr_el1, x9
    isb
    ldr     x11, =0x80000000        // the per-process page
    add     x12, x11, #0x100        // its code
    ldr     x13, =0xffffff8000000000 + shared   // a global upper-half alias of RAM
    ldr     x1, [x11]
    blr     x12
    mov     x2, x0
    ldr     x3, [x13]
    ldr     x9, =t1_l1              // the switch: a new ASID in TTBR1, then TTBR0
    mov     x10, #2
    orr     x9, x9, x10, lsl #48
    msr     ttbr1_el1, x9
    isb
    ldr     x9, =b_l1
    msr     ttbr0_el1, x9
    isb
    ldr     x4, [x11]
    blr     x12
    mov     x5, x0
    ldr     x6, [x13]
asid_done:
    b       done

    .ltorg
    .data
    .balign 4096
l1_table:
    .skip   4096
// Process A's and B's tables: RAM identity-mapped by a global 1 GiB block, and a
// non-global 4 KiB page of their own at 0x80000000. TTBR1's: RAM at 0xffffff8040000000.
a_l1:
    .quad   0, 0x40000000 + 0x701, a_l2 + 3
    .skip   4096 - 24
a_l2:
    .quad   a_l3 + 3
    .skip   4096 - 8
a_l3:
    .quad   page_a + 0xf03          // page, AF, inner shareable, nG
    .skip   4096 - 8
b_l1:
    .quad   0, 0x40000000 + 0x701, b_l2 + 3
    .skip   4096 - 24
b_l2:
    .quad   b_l3 + 3
    .skip   4096 - 8
b_l3:
    .quad   page_b + 0xf03
    .skip   4096 - 8
t1_l1:
    .quad   0, 0x40000000 + 0x701
    .skip   4096 - 16
page_a:
    .quad   0xaaaa
    .skip   0x100 - 8
    mov     x0, #1
    ret
    .balign 4096
page_b:
    .quad   0xbbbb
    .skip   0x100 - 8
    mov     x0, #2
    ret
    .balign 4096
shared:
    .quad   0x5151
"""

ATOMIC_ITERATIONS = 3_000_000
STOP_INTERVAL_US = 100
MIN_STOPS = 200
RUN_GUARD_US = 20_000_000   # ends a run that would otherwise spin forever on a broken engine


def build_program(workdir: Path) -> Path:
    """Assemble and link PROGRAM at RAM_BASE; returns the ELF."""
    from tests.support.guest import CROSS_AARCH64_AS, CROSS_AARCH64_LD

    source, obj, elf = workdir / "arm64.S", workdir / "arm64.o", workdir / "arm64.elf"
    source.write_text(PROGRAM)
    subprocess.run([CROSS_AARCH64_AS.name, "-o", obj, source], check=True)
    subprocess.run([CROSS_AARCH64_LD.name, f"-Ttext={RAM_BASE:#x}", "-o", elf, obj], check=True)
    return elf


class Program:
    """One fresh aarch64 engine with the program loaded, and its symbols."""

    def __init__(self, elf: Path) -> None:
        from elftools.elf.constants import SH_FLAGS
        from elftools.elf.elffile import ELFFile

        from vmsim.core.engine import load_unicorn

        self.unicorn = load_unicorn()
        from unicorn import arm64_const

        self.const = arm64_const
        self.uc = self.unicorn.Uc(self.unicorn.UC_ARCH_ARM64, self.unicorn.UC_MODE_ARM)
        self.uc.mem_map(RAM_BASE, RAM_SIZE)
        self.symbols: dict[str, int] = {}
        with open(elf, "rb") as f:
            image = ELFFile(f)
            for section in image.iter_sections():
                if section["sh_flags"] & SH_FLAGS.SHF_ALLOC and section["sh_type"] == "SHT_PROGBITS":
                    self.uc.mem_write(section["sh_addr"], section.data())
            for symbol in image.get_section_by_name(".symtab").iter_symbols():
                if symbol.name:
                    self.symbols[symbol.name] = symbol["st_value"]
        self.interrupts: list[tuple[int, int]] = []
        self.uc.hook_add(self.unicorn.UC_HOOK_INTR, self._on_interrupt)
        self.on_hvc: Callable[[], None] = lambda: None
        # Runs end at `done` through a code hook: an until address would not end one
        # while the IRQ line is high (docs/engine.md, E22).
        done = self.symbols["done"]
        self.uc.hook_add(self.unicorn.UC_HOOK_CODE, lambda uc, *_: uc.emu_stop(),
                         begin=done, end=done)

    def _on_interrupt(self, uc, intno: int, _data) -> None:
        self.interrupts.append((intno, self.pc))
        if intno == EXCP_HVC:
            self.on_hvc()
        else:
            uc.emu_stop()

    def x(self, n: int) -> int:
        return self.uc.reg_read(getattr(self.const, f"UC_ARM64_REG_X{n}"))

    def set_x(self, n: int, value: int) -> None:
        self.uc.reg_write(getattr(self.const, f"UC_ARM64_REG_X{n}"), value)

    def reg(self, number: int) -> int:
        return self.uc.reg_read(number)

    @property
    def pc(self) -> int:
        return self.uc.reg_read(self.const.UC_ARM64_REG_PC)

    def run(self, start: str | int, until: int = NEVER, guard_us: int = RUN_GUARD_US) -> int:
        """Run from a symbol (or address) to `done`, `until`, a stop or the guard; return pc."""
        begin = self.symbols[start] if isinstance(start, str) else start
        self.uc.emu_start(begin, until, timeout=guard_us)
        return self.pc


@pytest.fixture(scope="module")
def elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.guest import (CROSS_AARCH64_AS, CROSS_AARCH64_LD, require_patched_engine,
                                     require_tools)

    require_tools(CROSS_AARCH64_AS, CROSS_AARCH64_LD)
    require_patched_engine()
    return build_program(tmp_path_factory.mktemp("arm64"))


@pytest.fixture
def program(elf: Path) -> Program:
    return Program(elf)


def _esr_class(esr: int) -> int:
    return esr >> 26


def test_svc_from_el1_enters_the_current_el_spx_vector_natively(program: Program) -> None:
    assert program.run("svc_el1") == program.symbols["done"]
    assert program.x(20) == 0x200
    assert _esr_class(program.x(21)) == 0x15 and program.x(21) & 0xFFFF == 0x42
    assert program.x(22) == program.symbols["svc_el1_insn"] + 4     # ELR: the next insn
    assert program.x(24) & 0xF == 0b0101                            # SPSR: from EL1h
    assert program.x(25) == 1 << 2                                  # at EL1 now
    assert program.interrupts == []                                 # never the hook
    assert program.reg(REG_TRAPS + EXCP_SWI) == 1


def test_svc_from_el0_enters_the_lower_el_aarch64_vector(program: Program) -> None:
    assert program.run("svc_el0") == program.symbols["done"]
    assert program.x(20) == 0x400
    assert _esr_class(program.x(21)) == 0x15 and program.x(21) & 0xFFFF == 0x7
    assert program.x(22) == program.symbols["svc_el0_insn"] + 4
    assert program.x(24) & 0xF == 0                                 # SPSR: from EL0t
    assert program.interrupts == []


def test_a_data_abort_under_the_mmu_reports_esr_and_far(program: Program) -> None:
    """Needs the Non-secure AArch64 EL1 of the reset patch: with the stock SCR_EL3 the
    MMU program itself faults before it reaches the store."""
    assert program.run("abort") == program.symbols["done"]
    assert program.x(26) == 1
    assert program.x(20) == 0x200
    esr = program.x(21)
    assert _esr_class(esr) == 0x25                  # data abort from the current EL
    assert esr & (1 << 6)                           # WnR: a write
    assert esr & 0x3F == 0b000101                   # translation fault, level 1
    assert program.x(22) == program.symbols["abort_insn"]
    assert program.x(23) == UNMAPPED_VA
    assert program.interrupts == []
    assert program.reg(REG_TRAPS + EXCP_DATA_ABORT) == 1


def test_the_same_fault_a_thousand_times_reaches_the_hook(program: Program) -> None:
    """A guest whose handler faults again forever is handed to the host, not spun."""
    program.uc.reg_write(program.const.UC_ARM64_REG_VBAR_EL1, 0x7000_0000)
    program.uc.mem_map(0x7000_0000, 0x1000)
    program.uc.mem_write(0x7000_0200, bytes(4))     # udf #0 at its own vector, +0x200
    program.run(0x7000_0200)
    assert program.interrupts and program.interrupts[-1][0] == EXCP_UDEF
    assert program.reg(REG_TRAP_REPEATS) == 1000


def test_an_asid_switch_drops_the_lower_half_and_keeps_the_upper_half(program: Program) -> None:
    """docs/engine.md P17: a new ASID in TTBR1 with the same tables drops only what TTBR0
    maps. After the switch the per-process VA reads and runs process B's page, not a
    translation or a block kept from A (a kept one fails this), and the global upper
    half still reads the same RAM."""
    assert program.run("asid_switch") == program.symbols["done"], program.interrupts
    assert (program.x(1), program.x(2)) == (0xAAAA, 1)               # process A
    assert (program.x(4), program.x(5)) == (0xBBBB, 2)               # process B
    assert program.x(3) == program.x(6) == 0x5151
    assert program.interrupts == []


def test_the_arm64_cpu_translates_in_4_kib_pages() -> None:
    """The engine's arm targets default to 1 KiB pages (ARMv5's tiny pages), which
    ARMv8 does not have: each 4 KiB guest page then took four TLB entries, so a 64 KiB
    copy between two buffers missed the TLB on nearly every access."""
    from vmsim.core.arm64_cpu import Arm64Cpu

    assert Arm64Cpu().uc.ctl_get_page_size() == 4096


def test_hvc_reaches_the_hook_with_pc_past_it(program: Program) -> None:
    program.on_hvc = lambda: program.set_x(0, 0x10002)             # a PSCI 1.2 answer
    assert program.run("hvc_call") == program.symbols["done"]
    assert program.interrupts == [(EXCP_HVC, program.symbols["hvc_insn"] + 4)]
    assert program.x(26) == 0x10002


def test_timer_writes_stop_the_run_and_istatus_follows_the_counter(program: Program) -> None:
    ticks = 62_500                                                  # 1 ms at 62.5 MHz
    program.set_x(2, ticks)
    assert program.run("timer") == program.symbols["after_cval"]
    assert program.reg(REG_TIMER_WRITES) == 1
    cval = program.x(1)
    assert program.reg(REG_CNTV_CVAL) == cval
    assert program.reg(REG_TIMER_DEADLINE) == NEVER                 # not enabled yet
    assert program.run(program.pc) == program.symbols["after_ctl"]
    assert program.reg(REG_TIMER_WRITES) == 2
    assert program.reg(REG_TIMER_DEADLINE) == cval
    assert program.run(program.pc) == program.symbols["done"]
    assert program.x(0) & 0b111 == 0b101                            # ENABLE and ISTATUS
    assert program.x(3) >= cval                                     # the counter passed it
    assert program.reg(REG_COUNTER) >= cval
    assert program.reg(REG_CNTV_CTL) & 0b111 == 0b101


def test_the_timer_deadline_is_never_while_imask_is_set(program: Program) -> None:
    program.set_x(2, 62_500)
    program.run("timer")                                            # stops after CVAL
    program.set_x(0, 0b11)                                          # ENABLE | IMASK
    program.run(program.symbols["after_cval"] + 4)                  # the MSR to CTL
    assert program.pc == program.symbols["after_ctl"]
    assert program.reg(REG_TIMER_DEADLINE) == NEVER


def _raise_irq_on_store(program: Program) -> None:
    def on_write(uc, _offset, _size, _value, _data) -> None:
        uc.reg_write(REG_IRQ, 1)

    program.uc.mmio_map(MMIO_BASE, 0x1000, lambda *a: 0, None, on_write, None)


def test_the_irq_line_enters_the_irq_vector_while_pstate_i_is_clear(program: Program) -> None:
    """Raised from an MMIO callback while the guest then spins in one chained block
    forever (x2 = 0): only the engine's own kick gets the interrupt taken."""
    _raise_irq_on_store(program)
    program.set_x(0, 0)
    program.set_x(2, 0)
    assert program.run("irq") == program.symbols["done"]
    assert program.x(20) == 0x280
    assert program.symbols["irq_store"] < program.x(22) <= program.symbols["irq_spin_end"]
    assert program.x(24) & (1 << 7) == 0                            # taken with I clear
    assert program.interrupts == []
    assert program.reg(REG_IRQ) == 1


def test_the_irq_line_is_not_taken_while_pstate_i_is_set(program: Program) -> None:
    _raise_irq_on_store(program)
    program.set_x(0, 1)
    program.set_x(2, 10_000)
    assert program.run("irq") == program.symbols["done"]
    assert program.x(20) == 0xDEAD
    assert program.reg(REG_IRQ) == 1
    program.uc.reg_write(REG_IRQ, 0)
    assert program.reg(REG_IRQ) == 0


def run_probe(elf: Path, iterations: int, interval_us: float, direct: bool) -> dict:
    """The exclusive counter loop under a stop every interval_us from another thread.

    direct=True stops with plain `uc.emu_stop()` instead of vmsim's stopper, the unsafe
    way on the wheel, to show the check bites.
    """
    from vmsim.core.engine import engine_description
    from vmsim.core.preempt import make_stopper

    program = Program(elf)
    program.set_x(0, iterations)
    program.set_x(1, COUNTER)
    stopper = None if direct else make_stopper(program.uc)
    request = program.uc.emu_stop if stopper is None else stopper.request
    finished = threading.Event()

    def stop_periodically() -> None:
        while not finished.wait(interval_us / 1e6):
            request()

    thread = threading.Thread(target=stop_periodically, daemon=True)
    thread.start()
    stops, stop_pcs, pc = 0, set(), program.symbols["atomics"]
    done = program.symbols["atomics_done"]
    while pc != done:
        pc = program.run(pc, until=done, guard_us=0)
        if pc != done:
            stops += 1
            stop_pcs.add(pc)
    finished.set()
    thread.join()
    if stopper is not None:
        stopper.close()
    block_starts = {program.symbols[name] for name in ("atomics", "loop", "after_stxr")}
    return {
        "engine": engine_description(),
        "counter": int.from_bytes(program.uc.mem_read(COUNTER, 8), "little"),
        "stops": stops,
        "stopped_inside_block": sorted(stop_pcs - block_starts),
    }


def probe_in_subprocess(engine: str, elf: Path, direct: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--elf", str(elf), "--iterations", str(ATOMIC_ITERATIONS)]
    if direct:
        cmd.append("--direct")
    env = dict(os.environ, VMSIM_ENGINE=engine, PYTHONPATH=str(REPO))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise AssertionError(f"probe failed ({engine}): {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout)


def test_no_exclusive_store_runs_twice_under_stops_every_100us(elf: Path) -> None:
    result = probe_in_subprocess("patched", elf)
    assert "patched build" in result["engine"], result
    assert result["counter"] == ATOMIC_ITERATIONS, result
    assert result["stops"] >= MIN_STOPS, result
    assert result["stopped_inside_block"] == [], result


def test_the_check_bites_plain_emu_stop_on_the_wheel_reruns_exclusive_stores(elf: Path) -> None:
    result = probe_in_subprocess("wheel", elf, direct=True)
    assert result["stops"] >= MIN_STOPS, result
    assert result["counter"] > ATOMIC_ITERATIONS, result
    assert result["stopped_inside_block"], result


def _main() -> None:
    sys.path.insert(0, str(REPO))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elf", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=ATOMIC_ITERATIONS)
    parser.add_argument("--interval-us", type=float, default=STOP_INTERVAL_US)
    parser.add_argument("--direct", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    result = run_probe(args.elf, args.iterations, args.interval_us, args.direct)
    result["seconds"] = time.perf_counter() - started
    print(json.dumps(result))


if __name__ == "__main__":
    _main()
