"""The GDB stub on the arm64 board (`vmsim run --kernel prog.elf --gdb 0 --wait` with a
bare-metal AArch64 program): the AArch64 target description and register numbers over
a raw socket, and the real gdb-multiarch in batch mode (break, stepi with an interrupt
pending, info registers, x/ under the MMU, watchpoints on a physical and a virtual
address, a vector register, monitor commands, continue to PSCI SYSTEM_OFF), and the
stop at a --strict finding. Every wait is on a reply or on gdb's exit, never a sleep.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.machine.test_gdb import GDB, run_gdb
from tests.support.gdb_client import Client, start_vmsim_with_stub, stub_starter
from vmsim.gdb.packets import frame
from tests.support.guest import (CROSS_AARCH64_AS, CROSS_AARCH64_LD, require_patched_engine,
                                 require_tools)

RAM_BASE = 0x4000_0000
ALIAS = 0x8000_0000                 # the MMU maps this 1 GiB onto RAM as well

# Counts to 5 in memory; arms the virtual timer to fire at once with IRQs masked, then
# unmasks them (the IRQ handler sets x21 and masks the timer); turns the MMU on with RAM
# also at ALIAS, stores 99 to the marker through its alias, and powers off.
PROGRAM = rf"""
    .equ GICD, 0x08000000
    .equ GICC, 0x08010000
    .equ SYSTEM_OFF, 0x84000008

    .text
    .globl _start
_start:
    b       main

    .balign 0x800
vectors:
    .rept 5
    .balign 0x80
    b       .                       // nothing but the IRQ is expected
    .endr
    .balign 0x80                    // +0x280: IRQ, current EL with SPx
    b       on_irq
    .rept 10
    .balign 0x80
    b       .
    .endr

main:
    adr     x9, vectors
    msr     vbar_el1, x9
    isb
    mov     x19, #0
    adr     x20, counter
loop:
    add     x19, x19, #1
    str     x19, [x20]
    cmp     x19, #5
    b.ne    loop
    .globl counted
counted:
    mov     x21, #0
    mov     x9, #GICD
    mov     w10, #1
    str     w10, [x9, #0x000]       // GICD_CTLR
    mov     w10, #(1 << 27)
    str     w10, [x9, #0x100]       // GICD_ISENABLER0: PPI 27, the virtual timer
    mov     x9, #GICC
    mov     w10, #0xff
    str     w10, [x9, #0x004]       // GICC_PMR
    mov     w10, #1
    str     w10, [x9, #0x000]       // GICC_CTLR
    mrs     x10, cntvct_el0
    msr     cntv_cval_el0, x10      // already due: the PPI rises at once
    mov     x10, #1
    msr     cntv_ctl_el0, x10
    isb
    movz    x0, #0x1234
    .globl unmask, after_unmask2
unmask:
    msr     daifclr, #2             // IRQs unmasked with one pending
after_unmask:
    add     x22, x22, #1
after_unmask2:
    add     x22, x22, #1
wait:
    cbz     x21, wait               // until the IRQ handler ran

    mov     x9, #0xff00             // MAIR: attr 0 device nGnRnE, attr 1 normal write-back
    msr     mair_el1, x9
    ldr     x9, =0x200803519        // T0SZ 25, 4 KiB granule, TTBR1 walks off, 40-bit PA
    msr     tcr_el1, x9
    adr     x9, l1_table
    ldr     x10, =0x00000401        // block at 0: device (GIC, PL011), AF
    str     x10, [x9]
    ldr     x10, =0x40000705        // block at 0x40000000: RAM, normal, AF, inner shareable
    str     x10, [x9, #8]
    str     x10, [x9, #16]          // block at {ALIAS:#x}: the same RAM
    msr     ttbr0_el1, x9
    isb
    mrs     x9, sctlr_el1
    orr     x9, x9, #1
    msr     sctlr_el1, x9
    isb
    .globl paged, stored
paged:
    adr     x9, marker
    mov     x11, #({ALIAS:#x} - {RAM_BASE:#x})
    add     x9, x9, x11             // the marker's alias
    mov     x10, #99
    str     x10, [x9]
stored:
    ldr     x0, =SYSTEM_OFF
    hvc     #0
    b       .

on_irq:
    mov     x9, #GICC
    ldr     w23, [x9, #0x00c]       // GICC_IAR
    mov     x10, #3
    msr     cntv_ctl_el0, x10       // ENABLE | IMASK: the PPI falls
    str     w23, [x9, #0x010]       // GICC_EOIR
    mov     x21, #1
    eret

    .ltorg
    .data
    .balign 8
    .globl counter, marker
counter: .dword 0
marker:  .dword 0x1122334455667788
    .balign 4096
l1_table:
    .skip   4096
"""


# Identifies slot 0's device, then writes InterruptACK with an undefined bit, twice (a
# --strict finding, reported once). The first store starts a block, so the finding's pc
# is its own; a jump ends the block after it, so the stop lands right after it.
BREAKS_A_RULE = r"""
    .equ SYSTEM_OFF, 0x84000008
    .text
    .globl _start, bad, after
_start:
    mov     x9, #0x0a000000         // virtio-mmio slot 0
    ldr     w10, [x9, #0]
    ldr     w10, [x9, #4]
    ldr     w10, [x9, #8]
    mov     w10, #0x10
    b       bad
bad:
    str     w10, [x9, #0x64]
    b       after
after:
    mov     w10, #0x20
    str     w10, [x9, #0x64]
    ldr     x0, =SYSTEM_OFF
    hvc     #0
    b       .
    .ltorg
"""


class Program:
    def __init__(self, workdir: Path, name: str = "prog", text: str = PROGRAM) -> None:
        from elftools.elf.elffile import ELFFile

        source, obj = workdir / f"{name}.S", workdir / f"{name}.o"
        self.elf = workdir / f"{name}.elf"
        source.write_text(text)
        subprocess.run([CROSS_AARCH64_AS.name, "-o", str(obj), str(source)], check=True)
        subprocess.run([CROSS_AARCH64_LD.name, "-N", "--no-warn-rwx-segments",
                        f"-Ttext={RAM_BASE:#x}", "-e", "_start", "-o", str(self.elf), str(obj)],
                       check=True)
        with open(self.elf, "rb") as f:
            symtab = ELFFile(f).get_section_by_name(".symtab")
            self.symbols = {s.name: s["st_value"] for s in symtab.iter_symbols() if s.name}


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Program:
    require_tools(CROSS_AARCH64_AS, CROSS_AARCH64_LD)
    require_patched_engine()
    return Program(tmp_path_factory.mktemp("gdb-arm64"))


@pytest.fixture
def vmsim_gdb(program: Program) -> Iterator[Callable[[], tuple[subprocess.Popen, int]]]:
    """`vmsim run --kernel prog.elf --gdb 0 --wait`, and its port from its stderr line."""
    with stub_starter() as start_stub:
        def start() -> tuple[subprocess.Popen, int]:
            return start_stub(["run", "--kernel", str(program.elf), "--mem", "16M",
                               "--no-crypto", "--gdb", "0", "--wait"])

        yield start


def le(value: int, size: int = 8) -> bytes:
    return value.to_bytes(size, "little").hex().encode()


def test_target_description_registers_virtual_memory_and_a_watchpoint(program: Program, vmsim_gdb) -> None:
    proc, port = vmsim_gdb()
    gdb = Client(port)
    assert b"qXfer:features:read+" in gdb.ask(b"qSupported")
    assert gdb.ask(b"?").startswith(b"T05")
    xml = gdb.target_xml()
    assert b"<architecture>aarch64</architecture>" in xml
    assert b'<feature name="org.gnu.gdb.aarch64.core">' in xml
    assert b'<feature name="org.gnu.gdb.aarch64.fpu">' in xml
    for name, regnum, bits in (("x0", 0, 64), ("x30", 30, 64), ("sp", 31, 64), ("pc", 32, 64),
                               ("cpsr", 33, 32), ("v0", 34, 128), ("v31", 65, 128),
                               ("fpsr", 66, 32), ("fpcr", 67, 32)):
        assert re.search(rb'<reg name="%s" bitsize="%d" [^>]*regnum="%d"' % (
            name.encode(), bits, regnum), xml), name
    assert b"riscv" not in xml

    # At the entry: pc is the ELF's entry, EL1h with DAIF masked (the boot protocol).
    entry = program.symbols["_start"]
    assert gdb.ask(b"p20") == le(entry)
    cpsr = int.from_bytes(bytes.fromhex(gdb.ask(b"p21").decode()), "little")
    assert cpsr & 0b1111 == 0b0101 and cpsr & 0x3C0 == 0x3C0
    registers = bytes.fromhex(gdb.ask(b"g").decode())
    assert len(registers) == 31 * 8 + 8 + 8 + 4                   # x0-x30, sp, pc, cpsr
    assert registers[32 * 8:33 * 8] == entry.to_bytes(8, "little")
    # x registers, a v register (128 bits) and fpsr read back what was written.
    assert gdb.ask(b"P5=" + le(0x0123456789ABCDEF)) == b"OK"
    assert gdb.ask(b"p5") == le(0x0123456789ABCDEF)
    vector = (0x1122334455667788 << 64) | 0x99AABBCCDDEEFF00
    assert gdb.ask(b"P22=" + le(vector, 16)) == b"OK"             # v0 is regnum 34
    assert gdb.ask(b"p22") == le(vector, 16)
    assert gdb.ask(b"P42=" + le(0x0800_0000, 4)) == b"OK"         # fpsr: QC
    assert gdb.ask(b"p42") == le(0x0800_0000, 4)
    # cpsr: the flags and DAIF may change, the exception level may not.
    assert gdb.ask(b"P21=" + le(cpsr | 0xF000_0000, 4)) == b"OK"
    assert gdb.ask(b"p21") == le(cpsr | 0xF000_0000, 4)
    assert gdb.ask(b"P21=" + le(cpsr & ~0b1100, 4)) == b"E01"     # EL1 -> EL0: refused
    assert gdb.ask(b"p21") == le(cpsr | 0xF000_0000, 4)
    assert gdb.ask(b"P21=" + le(cpsr, 4)) == b"OK"
    # Memory is RAM only: the PL011's registers are not read from the debugger.
    assert gdb.ask(b"m9000000,4") == b"E14"
    assert gdb.ask(b"m%x,4" % entry) != b"E14"
    # Virtual memory: the alias exists only once the MMU is on; a watchpoint on it stops
    # right after the store through it, naming the virtual address.
    marker = program.symbols["marker"]
    alias = marker - RAM_BASE + ALIAS
    assert gdb.ask(b"m%x,8" % alias) == b"E14"
    assert gdb.ask(b"Z0,%x,4" % program.symbols["paged"]) == b"OK"
    assert gdb.ask(b"c").startswith(b"T05")
    assert gdb.ask(b"p20") == le(program.symbols["paged"])
    assert gdb.ask(b"z0,%x,4" % program.symbols["paged"]) == b"OK"
    assert gdb.ask(b"m%x,8" % alias) == le(0x1122334455667788)
    assert gdb.ask(b"M%x,2:abcd" % alias) == b"OK"
    assert gdb.ask(b"m%x,2" % marker) == b"abcd"                  # identity-mapped too
    assert gdb.ask(b"Z2,%x,8" % alias) == b"OK"
    assert gdb.ask(b"c") == b"T05watch:%x;thread:1;" % alias
    assert gdb.ask(b"p20") == le(program.symbols["stored"])
    assert gdb.ask(b"m%x,8" % alias) == le(99)
    assert gdb.ask(b"z2,%x,8" % alias) == b"OK"
    gdb.send_raw(frame(b"k"))
    assert proc.wait(timeout=20) == 0
    gdb.close()


def test_gdb_break_stepi_registers_memory_watchpoints_and_power_off(program: Program,
                                                                     vmsim_gdb) -> None:
    require_tools(GDB)
    sym = program.symbols
    alias = sym["marker"] - RAM_BASE + ALIAS
    proc, port = vmsim_gdb()
    out = run_gdb(program.elf, port, [
        # A watchpoint with the MMU off: virtual is physical.
        "watch *(long *)&counter", "continue", "continue", "delete",
        # An interrupt is pending when IRQs are unmasked: two steps stay on the code.
        "break unmask", "continue", "info registers x0 pc cpsr", "print $x0",
        "stepi", "stepi", "print/x $pc", "print $x22", "delete",
        # Under the MMU: the marker through its alias, and physical memory by monitor.
        "break paged", "continue", "print $x21", f"x/1gx {alias:#x}",
        f"monitor xp {sym['marker']:#x} 8", "x/2i $pc",
        # A watchpoint on the alias catches the store through it.
        f"watch *(long *){alias:#x}", "continue", "print/x $pc", "delete",
        # A vector register by lane, and the q view GDB builds on it.
        "set var $v1.d.u[1] = 7", "print $v1.d.u", "print $q1.u",
        "monitor help", "continue"])
    assert "Hardware watchpoint 1: *(long *)&counter" in out, out
    assert "Old value = 0\nNew value = 1" in out and "Old value = 1\nNew value = 2" in out, out
    assert re.search(rf"Breakpoint 2, {sym['unmask']:#018x} in unmask \(\)", out), out
    assert re.search(r"x0\s+0x1234\s+4660", out), out
    assert re.search(rf"pc\s+{sym['unmask']:#x}\s+{sym['unmask']:#x} <unmask>", out), out
    assert re.search(r"cpsr\s+0x[0-9a-f]*3c5\s+\[ .*EL=1.*\]", out), out
    assert "$1 = 4660" in out, out
    # Both steps stayed on the code: the pending IRQ was not taken inside a step.
    assert f"$2 = {sym['after_unmask2']:#x}" in out, out
    assert "$3 = 1" in out, out
    assert re.search(rf"Breakpoint 3, {sym['paged']:#018x} in paged \(\)", out), out
    assert "$4 = 1" in out, out                            # the IRQ came after the steps
    assert re.search(rf"{alias:#x}:\s+0x1122334455667788", out), out
    assert f"{sym['marker']:#018x}: 88 77 66 55 44 33 22 11" in out, out
    assert re.search(rf"=> {sym['paged']:#x} <paged>:\s+adr\s+x9", out), out
    assert f"Hardware watchpoint 4: *(long *){alias:#x}" in out, out
    assert "Old value = 1234605616436508552\nNew value = 99" in out, out
    # The stub stops right after the store (the raw test checks it); GDB then steps one
    # more instruction, since AArch64 watchpoints stop before the access and GDB steps
    # over it before it reports (the value shown is the new one either way).
    assert f"$5 = {sym['stored'] + 4:#x}" in out, out
    assert "$6 = {0, 7}" in out and f"$7 = {7 << 64}" in out, out
    assert "monitor commands:" in out, out
    assert "exited normally" in out, out
    assert proc.wait(timeout=20) == 0


def test_gdb_stops_at_a_strict_finding_and_monitor_strict_shows_it(
        program: Program, tmp_path: Path) -> None:
    """--strict with GDB attached, as on riscv64: the guest stops with SIGTRAP right
    after the store that broke a rule, and `monitor strict` names the store's pc."""
    require_tools(GDB)
    breaks = Program(tmp_path, "breaks", BREAKS_A_RULE)
    proc, port = start_vmsim_with_stub(["run", "--kernel", str(breaks.elf), "--mem", "16M",
                                        "--crypto-workers", "0", "--strict", "--gdb", "0",
                                        "--wait"])
    try:
        out = run_gdb(breaks.elf, port, [
            "monitor strict", "continue", "print/x $pc", "monitor strict", "monitor virtio",
            "continue"])
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "strict: no rule broken so far" in out, out
    assert "Program received signal SIGTRAP" in out, out
    assert f"$1 = {breaks.symbols['after']:#x}" in out, out
    assert re.search(r"1x virtio-crypto: mmio-interrupt-ack-bits: .* at pc "
                     f"{breaks.symbols['bad']:#x}: value=0x10", out), out
    assert re.search(r"slot 0: virtio-crypto \(device id 20\)", out), out
    assert "exited normally" in out, out
