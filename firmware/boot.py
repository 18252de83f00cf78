"""The boot stub: what M-mode firmware does before jumping to the kernel.

It sets the machine-level CSRs once (trap and interrupt delegation, counter access),
then enters the kernel in S-mode following the RISC-V Linux boot protocol: a0 = hart
id, a1 = physical address of the device tree, satp = 0 (no paging), pc = entry.
"""
from __future__ import annotations

from typing import Protocol

# Exceptions the S-mode kernel handles itself. Left out: illegal instruction (2),
# which the firmware first tries to emulate (rdtime on the wheel engine: docs/engine.md,
# E4), and the
# S-mode ecall (9), which is an SBI call.
DELEGATED_EXCEPTIONS = sum(1 << cause for cause in (0, 1, 3, 4, 5, 6, 7, 8, 12, 13, 15))
DELEGATED_INTERRUPTS = (1 << 1) | (1 << 5) | (1 << 9)   # SSIP, STIP, SEIP
COUNTERS_FOR_S_MODE = 0b111                            # cycle, time, instret
PRIV_SUPERVISOR = 1


class BootableHart(Protocol):
    """The slice of the CPU the boot stub touches (see vmsim.core.cpu.Cpu)."""

    pc: int
    priv: int

    def set_x(self, index: int, value: int) -> None: ...

    def set_csr(self, name: str, value: int) -> None: ...

    def write_mcsr(self, name: str, value: int) -> None: ...


def boot_hart(hart: BootableHart, entry: int, dtb_address: int, hart_id: int = 0) -> None:
    """Prepare `hart` to run a kernel at `entry` in S-mode."""
    hart.write_mcsr("medeleg", DELEGATED_EXCEPTIONS)
    hart.write_mcsr("mideleg", DELEGATED_INTERRUPTS)
    hart.write_mcsr("mcounteren", COUNTERS_FOR_S_MODE)
    hart.set_csr("satp", 0)
    hart.set_csr("sie", 0)
    hart.set_x(10, hart_id)
    hart.set_x(11, dtb_address)
    hart.priv = PRIV_SUPERVISOR
    hart.pc = entry
