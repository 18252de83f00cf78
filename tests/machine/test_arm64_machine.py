"""Bare-metal AArch64 programs on the whole arm64 `virt` machine (vmsim.core.arm64_machine).

Each program is an ELF linked at the RAM base and loaded the way `vmsim run --kernel
prog.elf` loads it; it prints markers on the PL011 (a byte to its DR at 0x0900_0000),
which the tests wait for. Together they cross every piece the machine adds around the
engine: the virtual timer's deadline and PPI 27 through the GICv2 to the IRQ vector,
PSCI over HVC (version, SYSTEM_OFF, SYSTEM_RESET), exceptions taken inside the engine
(SVC, a data abort under the MMU, with ESR and FAR), virtio-crypto's DMA to physical
addresses while the guest reaches them only through an MMU alias, a store to unmapped
physical memory, which ends the run with one `guest died` line naming the pc and the
address, and `vmsim run -M`.
"""
from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

import pytest

from tests.support.guest import (CROSS_AARCH64_AS, CROSS_AARCH64_LD, require_patched_engine,
                                 require_tools)

RAM_BASE = 0x4000_0000
MEMORY = 16 << 20
TIMER_ITERATIONS = 3
TIMER_TICKS = 125_000                # 2 ms of the 62.5 MHz counter
UNMAPPED_VA = 0x8000_1234            # above the two 1 GiB blocks the MMU program maps
UNMAPPED_PA = 0x0400_0010            # no device and no RAM at this physical address
BUF_PA = 0x4080_0000                 # the DMA program's rings and buffers (8 MiB into RAM)
BUF_VA = 0x8080_0000                 # ... and where it reaches them
TIMEOUT = 60.0
VMSIM = Path(sys.executable).parent / "vmsim"

PROGRAM = rf"""
    .equ UART, 0x09000000
    .equ GICD, 0x08000000
    .equ GICC, 0x08010000
    .equ PSCI_VERSION, 0x84000000
    .equ SYSTEM_OFF, 0x84000008
    .equ SYSTEM_RESET, 0x84000009

    // Print a string on the PL011; clobbers x26-x28 and x30.
    .macro say text
    adr     x26, 9998f
    bl      puts
    b       9999f
9998: .asciz "\text"
    .balign 4
9999:
    .endm

    .text
    .globl _start
_start:
    b       die

    .balign 0x800
vectors:                            // only the current EL's SPx sync and IRQ are expected
    .rept 4
    .balign 0x80
    b       unexpected
    .endr
    .balign 0x80                    // +0x200: synchronous, current EL with SPx
    b       on_sync
    .balign 0x80                    // +0x280: IRQ, current EL with SPx
    b       on_irq
    .rept 10
    .balign 0x80
    b       unexpected
    .endr

puts:                               // x26: the string
    mov     x27, #UART
1:  ldrb    w28, [x26], #1
    cbz     w28, 2f
    strb    w28, [x27]
    b       1b
2:  ret

puthex:                             // x25 as 0x and 16 digits; clobbers x24, x27, x28
    mov     x27, #UART
    mov     w28, #'0'
    strb    w28, [x27]
    mov     w28, #'x'
    strb    w28, [x27]
    mov     x24, #60
1:  lsr     x28, x25, x24
    and     x28, x28, #0xf
    cmp     x28, #10
    b.lo    2f
    add     x28, x28, #('a' - '0' - 10)
2:  add     x28, x28, #'0'
    strb    w28, [x27]
    subs    x24, x24, #4
    b.pl    1b
    ret

setup:
    adr     x9, vectors
    msr     vbar_el1, x9
    isb
    ret

unexpected:
    say     "unexpected exception\n"
    .globl die
die:                                // a store to unmapped memory: the run ends
    ldr     x9, ={UNMAPPED_PA:#x}
    str     x9, [x9]
1:  b       1b

power_off:
    ldr     x0, =SYSTEM_OFF
    hvc     #0
    say     "SYSTEM_OFF returned\n"
    b       die

// (a) the virtual timer through the GIC: TIMER_ITERATIONS interrupts, then power off.
    .globl timer_main
timer_main:
    bl      setup
    mov     x19, #0                 // interrupts handled
    mov     x9, #GICD
    mov     w10, #1
    str     w10, [x9, #0x000]       // GICD_CTLR: group 0 forwarded
    mov     w10, #(1 << 27)
    str     w10, [x9, #0x100]       // GICD_ISENABLER0: PPI 27, the virtual timer
    mov     x9, #GICC
    mov     w10, #0xff
    str     w10, [x9, #0x004]       // GICC_PMR: every priority
    mov     w10, #1
    str     w10, [x9, #0x000]       // GICC_CTLR: signal group 0
    bl      arm_timer
    say     "timer armed\n"
    msr     daifclr, #2             // unmask IRQs
1:  wfi
    cmp     x19, #{TIMER_ITERATIONS}
    b.lo    1b
    msr     daifset, #2
    say     "timer done\n"
    b       power_off

arm_timer:                          // CNTV_CVAL = now + TIMER_TICKS, CNTV_CTL = ENABLE
    mrs     x10, cntvct_el0
    ldr     x11, ={TIMER_TICKS}
    add     x10, x10, x11
    msr     cntv_cval_el0, x10
    mov     x10, #1
    msr     cntv_ctl_el0, x10
    ret

on_irq:
    mov     x9, #GICC
    ldr     w20, [x9, #0x00c]       // GICC_IAR
    cmp     w20, #27
    b.ne    bad_irq
    mrs     x10, cntv_ctl_el0
    tbz     x10, #2, bad_irq        // ISTATUS: the timer did fire
    add     x19, x19, #1
    say     "irq 27\n"
    cmp     x19, #{TIMER_ITERATIONS}
    b.lo    1f
    mov     x10, #3                 // the last one: ENABLE | IMASK
    msr     cntv_ctl_el0, x10
    b       2f
1:  bl      arm_timer               // re-armed in the future: the PPI falls
2:  mov     x9, #GICC
    str     w20, [x9, #0x010]       // GICC_EOIR
    ldr     w10, [x9, #0x00c]       // GICC_IAR again, as Linux does: nothing is left
    mov     w11, #1023
    cmp     w10, w11
    b.ne    1f
    eret
1:  mov     x20, x10
bad_irq:
    say     "bad irq "
    mov     x25, x20
    bl      puthex
    say     "\n"
    b       die

// (b) PSCI: the version, then SYSTEM_OFF; or SYSTEM_RESET.
    .globl psci_main
psci_main:
    bl      setup
    ldr     x0, =PSCI_VERSION
    hvc     #0
    mov     x25, x0
    say     "psci version "
    bl      puthex
    say     "\n"
    b       power_off

    .globl reset_main
reset_main:
    bl      setup
    say     "resetting\n"
    ldr     x0, =SYSTEM_RESET
    hvc     #0
    say     "SYSTEM_RESET returned\n"
    b       die

// (c) an SVC, then a data abort under the MMU; the handler prints ESR, FAR and ELR.
    .globl abort_main, svc_insn, abort_insn
abort_main:
    bl      setup
svc_insn:
    svc     #0x42
    say     "after svc\n"
    mov     x9, #0xff00             // MAIR: attr 0 device nGnRnE, attr 1 normal write-back
    msr     mair_el1, x9
    ldr     x9, =0x200803519        // T0SZ 25, 4 KiB granule, TTBR1 walks off, 40-bit PA
    msr     tcr_el1, x9
    adr     x9, l1_table
    ldr     x10, =0x00000401        // block at 0: device (GIC, PL011), AF
    str     x10, [x9]
    ldr     x10, =0x40000705        // block at 0x40000000: RAM, normal, AF, inner shareable
    str     x10, [x9, #8]
    msr     ttbr0_el1, x9
    isb
    mrs     x9, sctlr_el1
    orr     x9, x9, #1
    msr     sctlr_el1, x9
    isb
    say     "mmu on\n"
    ldr     x10, ={UNMAPPED_VA:#x}
abort_insn:
    str     x11, [x10]
    say     "after abort\n"
    b       power_off

on_sync:
    mrs     x21, esr_el1
    mrs     x22, far_el1
    mrs     x23, elr_el1
    say     "sync esr="
    mov     x25, x21
    bl      puthex
    say     " far="
    mov     x25, x22
    bl      puthex
    say     " elr="
    mov     x25, x23
    bl      puthex
    say     "\n"
    lsr     x10, x21, #26
    cmp     x10, #0x15              // an SVC returns to the next instruction already
    b.eq    1f
    add     x23, x23, #4            // an abort: go on past the faulting store
    msr     elr_el1, x23
1:  eret

// --strict: InterruptACK written with an undefined bit, in the middle of a block and
// through another register than the one that identified the device.
    .globl strict_main, strict_insn
strict_main:
    mov     x9, #0x0a000000         // virtio-mmio slot 0
    ldr     w10, [x9, #0]
    ldr     w10, [x9, #4]
    ldr     w10, [x9, #8]
    mov     w10, #0x10
    add     x11, x9, #0x60
strict_insn:
    str     w10, [x11, #4]
    mov     x0, #0x0008             // PSCI SYSTEM_OFF
    movk    x0, #0x8400, lsl #16
    hvc     #0
    b       .

// A store to unmapped physical memory with the MMU off.
    .globl unmapped_main, unmapped_insn
unmapped_main:
    bl      setup
    say     "storing\n"
    ldr     x1, ={UNMAPPED_PA - 8:#x}
    mov     x2, #7
unmapped_insn:
    str     x2, [x1, #8]
    say     "the store went on\n"
    b       power_off

// (c) virtio-crypto's DMA under the MMU. The program reaches RAM through an alias
// (VA 0x80000000 + x is PA 0x40000000 + x) and maps only its own first 2 MiB at their
// physical addresses, so the physical addresses the device is given for the rings and
// buffers are not mapped as virtual ones: a device that translated them through the
// CPU's MMU would miss. It sets up the control queue and creates an AES-CBC session.
    .equ VIRTIO, 0x0a000000         // slot 0
    .equ BUF_PA, {BUF_PA:#x}
    .equ BUF_VA, {BUF_VA:#x}
    .equ QSIZE, 8
    .globl dma_main
dma_main:
    bl      setup
    mov     x9, #0xff00             // MAIR: attr 0 device nGnRnE, attr 1 normal write-back
    msr     mair_el1, x9
    ldr     x9, =0x200803519
    msr     tcr_el1, x9
    adr     x9, l2_table
    ldr     x10, =0x40000705        // 2 MiB block: the program, at its physical address
    str     x10, [x9]
    adr     x11, l1_table
    ldr     x10, =0x00000401        // 1 GiB device block at 0: GIC, PL011, virtio-mmio
    str     x10, [x11]
    orr     x10, x9, #3             // VA 0x40000000: the L2 table
    str     x10, [x11, #8]
    ldr     x10, =0x40000705        // VA 0x80000000: an alias of the RAM
    str     x10, [x11, #16]
    msr     ttbr0_el1, x11
    isb
    mrs     x9, sctlr_el1
    orr     x9, x9, #1
    msr     sctlr_el1, x9
    isb
    say     "mmu on\n"
    ldr     x10, =BUF_PA            // the buffers' physical address as a VA: a fault
    ldr     x11, [x10]

    ldr     x9, =VIRTIO
    ldr     w10, [x9, #0x000]       // MagicValue
    ldr     w11, =0x74726976
    cmp     w10, w11
    b.ne    no_device
    ldr     w10, [x9, #0x008]       // DeviceID
    cmp     w10, #20
    b.ne    no_device
    str     wzr, [x9, #0x070]       // Status: reset
    mov     w10, #1
    str     w10, [x9, #0x070]       // ACKNOWLEDGE
    mov     w10, #3
    str     w10, [x9, #0x070]       // | DRIVER
    mov     w10, #1
    str     w10, [x9, #0x024]       // DriverFeaturesSel 1
    str     w10, [x9, #0x020]       // VIRTIO_F_VERSION_1 (feature bit 32) only
    str     wzr, [x9, #0x024]
    str     wzr, [x9, #0x020]
    mov     w10, #11
    str     w10, [x9, #0x070]       // | FEATURES_OK
    ldr     w10, [x9, #0x070]
    tbz     w10, #3, no_device
    ldr     w12, [x9, #0x104]       // max_dataqueues: the control queue's index
    str     w12, [x9, #0x030]       // QueueSel
    ldr     w10, [x9, #0x034]       // QueueNumMax
    cmp     w10, #QSIZE
    b.lo    no_device
    mov     w10, #QSIZE
    str     w10, [x9, #0x038]       // QueueNum
    ldr     x10, =BUF_PA
    str     w10, [x9, #0x080]       // QueueDesc: BUF_PA
    str     wzr, [x9, #0x084]
    add     x11, x10, #0x100
    str     w11, [x9, #0x090]       // QueueDriver (avail): BUF_PA + 0x100
    str     wzr, [x9, #0x094]
    add     x11, x10, #0x200
    str     w11, [x9, #0x0a0]       // QueueDevice (used): BUF_PA + 0x200
    str     wzr, [x9, #0x0a4]
    mov     w10, #1
    str     w10, [x9, #0x044]       // QueueReady
    mov     w10, #15
    str     w10, [x9, #0x070]       // | DRIVER_OK

    ldr     x13, =BUF_VA            // everything below through the alias
    add     x14, x13, #0x400        // CIPHER_CREATE_SESSION, AES-CBC, a 16-byte key, encrypt
    mov     w10, #2
    str     w10, [x14, #0]
    mov     w10, #3
    str     w10, [x14, #4]
    str     w10, [x14, #16]
    mov     w10, #16
    str     w10, [x14, #20]
    mov     w10, #1
    str     w10, [x14, #24]
    str     w10, [x14, #64]         // op_type: plain cipher
    add     x15, x13, #0x480        // the key: 00 01 .. 0f
    mov     x10, #0
1:  strb    w10, [x15, x10]
    add     x10, x10, #1
    cmp     x10, #16
    b.lo    1b
    mov     x10, #-1                // the session input, until the device writes it
    str     x10, [x13, #0x500]
    str     x10, [x13, #0x508]
    ldr     x10, =BUF_PA + 0x400    // desc 0: the request, 72 bytes, NEXT 1
    str     x10, [x13, #0]
    mov     w10, #72
    str     w10, [x13, #8]
    ldr     w10, =0x00010001
    str     w10, [x13, #12]
    ldr     x10, =BUF_PA + 0x480    // desc 1: the key, NEXT 2
    str     x10, [x13, #16]
    mov     w10, #16
    str     w10, [x13, #24]
    ldr     w10, =0x00020001
    str     w10, [x13, #28]
    ldr     x10, =BUF_PA + 0x500    // desc 2: the session input, WRITE
    str     x10, [x13, #32]
    mov     w10, #16
    str     w10, [x13, #40]
    mov     w10, #2
    str     w10, [x13, #44]
    add     x14, x13, #0x100        // avail.ring[0] = 0, then avail.idx = 1
    strh    wzr, [x14, #4]
    dmb     ish
    mov     w10, #1
    strh    w10, [x14, #2]
    dmb     sy
    str     w12, [x9, #0x050]       // QueueNotify
    add     x14, x13, #0x200
2:  ldrh    w10, [x14, #2]          // used.idx
    cmp     w10, #1
    b.ne    2b
    dmb     ish
    say     "used id="
    ldr     w25, [x14, #4]
    bl      puthex
    say     " len="
    ldr     w25, [x14, #8]
    bl      puthex
    say     " status="
    ldr     w25, [x13, #0x508]
    bl      puthex
    say     " session="
    ldr     x25, [x13, #0x500]
    bl      puthex
    say     "\n"
    b       power_off
no_device:
    say     "no virtio-crypto device\n"
    b       die

    .ltorg
    .data
    .balign 4096
l1_table:
    .skip   4096
l2_table:
    .skip   4096
"""

ENTRIES = ("timer_main", "psci_main", "reset_main", "abort_main", "unmapped_main", "dma_main",
           "strict_main")


class Built:
    """The program linked once per entry point, and its symbols."""

    def __init__(self, workdir: Path) -> None:
        from elftools.elf.elffile import ELFFile

        source, obj = workdir / "program.S", workdir / "program.o"
        source.write_text(PROGRAM)
        subprocess.run([CROSS_AARCH64_AS.name, "-o", str(obj), str(source)], check=True)
        self.elves: dict[str, Path] = {}
        for entry in ENTRIES:
            elf = workdir / f"{entry}.elf"
            # -N: one segment from the RAM base, without the ELF header a page below it.
            subprocess.run([CROSS_AARCH64_LD.name, "-N", "--no-warn-rwx-segments",
                            f"-Ttext={RAM_BASE:#x}", "-e", entry, "-o", str(elf), str(obj)],
                           check=True)
            self.elves[entry] = elf
        with open(self.elves[ENTRIES[0]], "rb") as f:
            symtab = ELFFile(f).get_section_by_name(".symtab")
            self.symbols = {s.name: s["st_value"] for s in symtab.iter_symbols() if s.name}


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Built:
    require_tools(CROSS_AARCH64_AS, CROSS_AARCH64_LD)
    require_patched_engine()
    return Built(tmp_path_factory.mktemp("arm64-machine"))


class Console:
    """The guest's console output, which a test waits on."""

    def __init__(self) -> None:
        self.data = bytearray()
        self._changed = threading.Condition()

    def write(self, data: bytes) -> None:
        with self._changed:
            self.data.extend(data)
            self._changed.notify_all()

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, marker: bytes, timeout: float = TIMEOUT,
                 ended: Callable[[], bool] = lambda: False) -> None:
        """Until `marker` is on the console; an end of the run (`ended`) without it, or
        the timeout, fails the test."""
        with self._changed:
            self._changed.wait_for(lambda: marker in self.data or ended(), timeout)
            if marker not in self.data:
                when = "when the run ended" if ended() else f"within {timeout:.0f} s"
                raise AssertionError(f"no {marker!r} on the console {when}; "
                                     f"it shows {bytes(self.data)!r}")


class Running:
    """A machine running a program on a thread of its own."""

    def __init__(self, elf: Path, virtio: list | None = None) -> None:
        from vmsim.boards import ARM64_VIRT
        from vmsim.core.machine import MachineConfig, create_machine

        self.console = Console()
        self.machine = create_machine(MachineConfig(kernel=elf, memory=MEMORY, board=ARM64_VIRT,
                                                    virtio=virtio or []),
                                      output=self.console.write)
        self.status: int | None = None
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="arm64-machine", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.status = self.machine.run()
        except BaseException as error:       # noqa: BLE001 - the test reports it
            self.error = error
        finally:
            self.finished.set()
            self.console.wake()

    def wait_for(self, marker: bytes, timeout: float = TIMEOUT) -> None:
        try:
            self.console.wait_for(marker, timeout, self.finished.is_set)
        except AssertionError as failure:
            if self.error is not None:
                raise AssertionError(f"{failure}; the run failed: {self.error}") from self.error
            raise

    def wait_finished(self, timeout: float = TIMEOUT) -> int:
        if not self.finished.wait(timeout):
            raise AssertionError(f"the machine still runs after {timeout:.0f} s; "
                                 f"console: {bytes(self.console.data)!r}")
        if self.error is not None:
            raise AssertionError(f"the run failed: {self.error}; "
                                 f"console: {bytes(self.console.data)!r}") from self.error
        assert self.status is not None
        return self.status

    def close(self) -> None:
        if not self.finished.is_set():
            self.machine.request_quit(124)
            self.finished.wait(10)
        self._thread.join(10)
        self.machine.close()


@pytest.fixture
def run(program: Built):
    started: list[Running] = []

    def _run(entry: str, virtio: list | None = None) -> Running:
        running = Running(program.elves[entry], virtio)
        started.append(running)
        return running

    yield _run
    for running in started:
        running.close()


def _vmsim_run(elf: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VMSIM), "run", *options, "--kernel", str(elf), "--mem", "16M",
                           "--no-crypto"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)


def _hex_fields(line: str) -> dict[str, int]:
    return {name: int(value, 16) for name, value in re.findall(r"(\w+)=0x([0-9a-f]{16})", line)}


# -- (a) the timer interrupt -------------------------------------------------------------

def test_the_virtual_timer_interrupts_through_the_gic_at_the_irq_vector(run) -> None:
    """CNTV_CVAL/CTL armed, PPI 27 enabled in the GIC, IRQs unmasked, WFI: each
    interrupt reaches VBAR_EL1 + 0x280, where GICC_IAR reads 27 with ISTATUS set; the
    handler re-arms the timer (the last time it masks it), writes GICC_EOIR and reads
    GICC_IAR once more, as Linux does: SPURIOUS. The register mirror answers both IARs
    without calling the GIC model (the first once, dropping the CPU's IRQ line) and
    takes the EOIR, the timer's line being low by then."""
    running = run("timer_main")
    running.wait_for(b"timer armed\n")
    running.wait_for(b"irq 27\n" * TIMER_ITERATIONS + b"timer done\n")
    assert running.wait_finished() == 0
    assert bytes(running.console.data) == (b"timer armed\n" + b"irq 27\n" * TIMER_ITERATIONS
                                           + b"timer done\n")
    machine = running.machine
    assert machine.cpu.x(19) == TIMER_ITERATIONS
    assert not machine.gic.active(27) and not machine.gic.pending(27)   # EOI'd, masked
    assert not machine.cpu.irq_raised
    mirror = machine.gic._mirror
    assert (mirror.hits, mirror.taken) == (2 * TIMER_ITERATIONS, TIMER_ITERATIONS)


# -- (b) PSCI ---------------------------------------------------------------------------

def test_psci_version_is_1_0_and_system_off_ends_the_run_with_status_0(program: Built) -> None:
    done = _vmsim_run(program.elves["psci_main"])
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "psci version 0x0000000000010000\n", "")


@pytest.mark.parametrize("machine", ["virt", "arm64-virt"])
def test_minus_m_virt_and_arm64_virt_run_an_arm64_program(program: Built, machine: str) -> None:
    done = _vmsim_run(program.elves["psci_main"], "-M", machine)
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "psci version 0x0000000000010000\n", "")


def test_minus_m_riscv64_virt_refuses_an_arm64_program(program: Built) -> None:
    elf = program.elves["psci_main"]
    done = _vmsim_run(elf, "-M", "riscv64-virt")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        f"vmsim: error: --kernel {elf} is for arm64, but -M riscv64-virt runs riscv64 "
        "kernels (-M virt picks the board from the kernel)"]


def test_system_reset_ends_the_run_with_a_note(program: Built) -> None:
    done = _vmsim_run(program.elves["reset_main"])
    assert (done.returncode, done.stdout) == (0, "resetting\n"), done.stderr
    assert done.stderr.strip().splitlines() == [
        "vmsim: the guest asked for a reset; vmsim stops instead"]


# -- (c) exceptions and unmapped memory ----------------------------------------------------

def test_an_svc_and_a_data_abort_under_the_mmu_reach_the_guest_with_esr_and_far(
        run, program: Built) -> None:
    running = run("abort_main")
    running.wait_for(b"after abort\n")
    assert running.wait_finished() == 0
    lines = bytes(running.console.data).decode().splitlines()
    assert lines[1:3] == ["after svc", "mmu on"] and lines[4:] == ["after abort"], lines
    svc, abort = _hex_fields(lines[0]), _hex_fields(lines[3])
    # SVC #0x42 from AArch64 (EC 0x15, IL), ELR past it.
    assert svc["esr"] == (0x15 << 26) | (1 << 25) | 0x42
    assert svc["elr"] == program.symbols["svc_insn"] + 4
    # A data abort at the current EL (EC 0x25, IL), a write (WnR), translation fault at
    # level 1; FAR the virtual address, ELR the store.
    assert abort["esr"] == (0x25 << 26) | (1 << 25) | (1 << 6) | 0b000101
    assert abort["far"] == UNMAPPED_VA
    assert abort["elr"] == program.symbols["abort_insn"]


def test_virtio_crypto_dma_under_the_mmu_reaches_the_physical_addresses(run) -> None:
    """The rings and buffers are at physical addresses that are not mapped as virtual
    ones (the guest's own load from there faults): the device still reads the request
    and key and writes the session input and used ring there, which the guest sees
    through its alias."""
    from vmsim.devices.virtio.crypto.model import MODEL as CRYPTO, find_crypto_device

    running = run("dma_main", [CRYPTO.configure(queues=1, workers=0)])
    running.wait_for(b" session=")
    assert running.wait_finished() == 0
    lines = bytes(running.console.data).decode().splitlines()
    assert lines[0] == "mmu on" and len(lines) == 3, lines
    fault = _hex_fields(lines[1])
    # A data abort on a read (WnR clear), translation fault at level 2, at BUF_PA.
    assert fault["esr"] == (0x25 << 26) | (1 << 25) | 0b000110 and fault["far"] == BUF_PA
    done = _hex_fields(lines[2])
    assert done["id"] == 0 and done["len"] == 16        # the chain's head; 16 bytes written
    assert done["status"] == 0                           # VIRTIO_CRYPTO_OK
    assert done["session"] != (1 << 64) - 1              # the device wrote a session id
    device = find_crypto_device(running.machine.virtio)
    control = device.stats[device.control_queue]
    assert (control.requests, dict(control.statuses)) == (1, {"OK": 1})


def test_a_store_to_unmapped_physical_memory_is_one_guest_died_line(program: Built) -> None:
    done = _vmsim_run(program.elves["unmapped_main"])
    assert (done.returncode, done.stdout) == (3, "storing\n"), done.stderr
    assert done.stderr.splitlines() == [
        f"vmsim: error: guest died: store to unmapped memory at pc "
        f"{program.symbols['unmapped_insn']:#x} (address {UNMAPPED_PA:#x})"]


def test_a_strict_finding_names_the_store_inside_its_block(program: Built) -> None:
    """The engine's pc in an MMIO callback is its block's start (docs/engine.md, E11):
    --strict decodes the block's AArch64 loads and stores to name the store itself."""
    done = subprocess.run([str(VMSIM), "run", "--kernel", str(program.elves["strict_main"]),
                           "--mem", "16M", "--crypto-workers", "0", "--strict"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    reported = [line for line in done.stderr.splitlines() if line.startswith("vmsim: strict:")]
    assert len(reported) == 1 and "mmio-interrupt-ack-bits" in reported[0], done.stderr
    assert f" at pc {program.symbols['strict_insn']:#x}: value=0x10" in reported[0], reported
