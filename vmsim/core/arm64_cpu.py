"""The arm64 CPU: a Unicorn aarch64 engine (Cortex-A72) plus the register access vmsim needs.

It runs only on the patched engine (docs/engine.md, P13-P17): the stock one hands every
exception to the host without ESR or FAR, drops the guest's timer writes and cannot
raise an IRQ. What the patch adds is reached through pseudo-registers, the same
numbering scheme as the riscv engine's.
"""
from __future__ import annotations

import ctypes
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from vmsim.core import cpu as engine
from vmsim.core.cpu import NATIVE_ARM64, EngineCpu
from vmsim.core.nativelib import function_address
from vmsim.errors import VmsimError

WFI = 0xD503_207F

# The patch's pseudo-registers (qemu/target/arm/vmsim.h).
_REG_BASE = 0x76000
REG_TRAP_REPEATS = _REG_BASE + 4
REG_IRQ = _REG_BASE + 0x10
REG_TIMER_WRITES = _REG_BASE + 0x11
REG_COUNTER = _REG_BASE + 0x12
REG_TIMER_DEADLINE = _REG_BASE + 0x13
REG_CNTV_CTL = _REG_BASE + 0x14
REG_CNTV_CVAL = _REG_BASE + 0x15
REG_CNTP_CTL = _REG_BASE + 0x16
REG_INVALID_ADDR = _REG_BASE + 0x18
REG_TRAPS = _REG_BASE + 0x100

# Exception indexes the hook can see (QEMU's EXCP_*).
EXCP_UDEF, EXCP_SWI, EXCP_PREFETCH_ABORT, EXCP_DATA_ABORT = 1, 2, 3, 4
EXCP_BKPT, EXCP_HVC, EXCP_SMC = 7, 11, 13

# CNT*_CTL bits: the output is high when enabled, not masked, and the condition met.
CTL_ENABLE, CTL_IMASK, CTL_ISTATUS = 1, 2, 4

COUNTER_HZ = 62_500_000          # CNTFRQ: the counter ticks every 16 ns


def _timer_output(ctl: int) -> bool:
    return ctl & (CTL_ENABLE | CTL_IMASK | CTL_ISTATUS) == CTL_ENABLE | CTL_ISTATUS


class Arm64Cpu(EngineCpu):
    """One Cortex-A72 in Non-secure EL1 on a fresh engine."""

    def __init__(self) -> None:
        module = engine._bind_common()
        if not engine._NATIVE_FEATURES & NATIVE_ARM64:
            raise VmsimError("the arm64 board needs vmsim's patched engine with its aarch64 "
                             "target (make unicorn builds it)")
        super().__init__(module.UC_ARCH_ARM64, module.UC_MODE_ARM)
        # ARMv8 has no page under 4 KiB; the engine's default of 1 KiB for arm quartered
        # the TLB's reach (docs/engine.md, E16). Only possible before the first mapping.
        self.uc.ctl_set_page_size(4096)
        from unicorn import arm64_const as a

        self._a = a
        self._x = [getattr(a, f"UC_ARM64_REG_X{i}") for i in range(31)]
        self._pc_reg = a.UC_ARM64_REG_PC
        # The level driven onto the engine's IRQ input, as a C word: the GIC's register
        # mirror drops it (and the input) itself when it answers GICC_IAR
        # (irq_line_dropper, devices/gic.py).
        self._irq_line = ctypes.c_uint64(0)
        self._irq_held = False            # a debugger's step holds the engine's line low

    # -- registers ---------------------------------------------------------------

    def x(self, index: int) -> int:
        return self._get(self._x[index])

    def set_x(self, index: int, value: int) -> None:
        self._set(self._x[index], value & ((1 << 64) - 1))

    @property
    def pc(self) -> int:
        return self._get(self._pc_reg)

    @pc.setter
    def pc(self, value: int) -> None:
        self.uc.reg_write(self._pc_reg, value)

    def read_instruction(self, address: int) -> int | None:
        """The 32-bit instruction at a guest-virtual address, or None."""
        data = self.read_virtual(address, 4, execute=True)
        return None if data is None else int.from_bytes(data, "little")

    # -- the IRQ line and the generic timer (docs/engine.md, P15 and P16) -------

    def set_irq(self, level: bool) -> None:
        """Drive the CPU's IRQ input (the GIC's output); CPU thread only."""
        if level != self._irq_line.value:
            self._irq_line.value = level
            if not self._irq_held:
                self._set(REG_IRQ, int(level))

    def irq_line_dropper(self) -> tuple[int, int, int]:
        """What native code needs to drop the IRQ input as set_irq(False) would: the
        engine's uc_reg_write, the input's register, and the address of the level's
        word (vmsim/native/register_mirror.c)."""
        return (function_address(self._lib.uc_reg_write), REG_IRQ,
                ctypes.addressof(self._irq_line))

    @contextmanager
    def irq_held_low(self) -> Iterator[None]:
        """The engine's IRQ input stays low inside, whatever the GIC drives, so no IRQ
        is taken (a debugger's single step); the GIC's level is driven again after.
        PSTATE.I is left alone: a host write of PSTATE skips the engine's hflags rebuild."""
        self._irq_held = True
        self._set(REG_IRQ, 0)
        try:
            yield
        finally:
            self._irq_held = False
            self._set(REG_IRQ, self._irq_line.value)

    @property
    def irq_raised(self) -> bool:
        return bool(self._irq_line.value)

    def timer_writes(self) -> int:
        """How many times the guest has written a timer register: the outputs and the
        deadline change only then, or when the counter reaches the deadline."""
        return self._get(REG_TIMER_WRITES)

    def timer_deadline(self) -> int:
        """The counter value at which a timer output rises (2^64 - 1: never)."""
        return self._get(REG_TIMER_DEADLINE)

    def timer_outputs(self) -> tuple[bool, bool]:
        """(physical, virtual) timer outputs now."""
        return _timer_output(self._get(REG_CNTP_CTL)), _timer_output(self._get(REG_CNTV_CTL))

    def native_trap_count(self, index: int) -> int:
        return self._get(REG_TRAPS + index)

    def native_trap_repeats(self) -> int:
        return self._get(REG_TRAP_REPEATS)

    # -- hooks ---------------------------------------------------------------------

    def on_exception(self, callback: Callable[[int], None]) -> None:
        """Call `callback(index)` for each exception the engine leaves to the host: HVC
        and SMC (pc past the instruction), and a fault repeated past the loop limit."""
        def hook(_uc: Any, index: int, _data: Any) -> None:
            callback(index)
            self._forget_written_code()

        self.uc.hook_add(engine.uc_mod.UC_HOOK_INTR, hook)

    def unmapped_address(self) -> int:
        """The physical address of the access to unmapped memory that ended the run. The
        engine ends such a run with pc at the access itself (docs/engine.md, P17), so no
        memory hook is needed, which would slow every access (E13)."""
        return self._get(REG_INVALID_ADDR)

    def _invalidate_without_patch(self, pages: list[int]) -> None:
        raise AssertionError("Arm64Cpu exists only on the patched engine")

    # -- diagnostics ---------------------------------------------------------------

    def register_dump(self) -> str:
        a = self._a
        lines = [f"pc={self.pc:#018x} pstate={self._get(a.UC_ARM64_REG_PSTATE):#x}"]
        regs = [f"x{i:<2}={self.x(i):#018x}" for i in range(31)]
        regs.append(f"sp ={self._get(a.UC_ARM64_REG_SP):#018x}")
        lines += ["  ".join(regs[i:i + 4]) for i in range(0, 32, 4)]
        lines.append("  ".join(f"{name}={self._get(getattr(a, f'UC_ARM64_REG_{name.upper()}')):#x}"
                               for name in ("esr_el1", "far_el1", "elr_el1", "vbar_el1")))
        return "\n".join(lines)
