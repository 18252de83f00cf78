"""The CPU as GDB sees it: what is the same on every architecture, and the choice of
the per-architecture target.

A target gives the stub (vmsim.gdb.stub) register access by GDB register number, the
target description GDB reads as target.xml, guest memory at guest-virtual addresses
(as GDB expects) and physical ones (for `monitor xp`/`wp`), and the interrupt masking
around a single step. What differs per architecture lives in one subclass each:
`RiscvTarget` (vmsim.gdb.riscv) and `Arm64Target` (vmsim.gdb.arm64): the register
layout and description, the virtual-to-physical translation, and how a step keeps
interrupts out. `target_for` picks the one of the machine's board.

Only RAM is reachable: reading a device register from the debugger would have side
effects.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from vmsim.devices.memory import Ram

PAGE = 4096          # both architectures' smallest page: translation is per page


@dataclass(frozen=True)
class Register:
    name: str
    regnum: int
    reg_id: int          # the engine's register number
    size: int            # bytes on the wire
    machine_level: bool = False


class Target:
    """Register and memory access for the stub; CPU thread only, engine stopped."""

    arch = ""
    pc_regnum = 0
    g_regnums: tuple[int, ...] = ()      # the registers of a `g` packet, in order

    def __init__(self, cpu: Any, ram: Ram) -> None:
        self.cpu = cpu
        self.ram = ram
        self.regs = self.registers()
        self._xml: bytes | None = None

    # -- what each architecture provides ----------------------------------------------

    def registers(self) -> dict[int, Register]:
        """Every register GDB may ask for, by GDB register number."""
        raise NotImplementedError

    def describe(self) -> bytes:
        """The target description (target.xml)."""
        raise NotImplementedError

    def translate(self, address: int) -> int | None:
        """Guest-virtual to physical as the CPU stands; None where nothing is mapped."""
        raise NotImplementedError

    def interrupts_masked(self) -> contextlib.AbstractContextManager[None]:
        """Around a single step: no interrupt is taken, so `stepi` does not land in a
        handler (QEMU masks them by default too)."""
        raise NotImplementedError

    def _read(self, reg: Register) -> int:
        return int(self.cpu.uc.reg_read(reg.reg_id))

    def _write(self, reg: Register, value: int) -> bool:
        """Write one register; False where the target refuses the value."""
        if reg.regnum == self.pc_regnum:
            self.cpu.pc = value
        else:
            self.cpu.uc.reg_write(reg.reg_id, value)
        return True

    # -- registers ---------------------------------------------------------------------

    def target_xml(self) -> bytes:
        if self._xml is None:
            self._xml = self.describe()
        return self._xml

    def read_register(self, regnum: int) -> bytes | None:
        reg = self.regs.get(regnum)
        if reg is None:
            return None
        return (self._read(reg) & ((1 << (8 * reg.size)) - 1)).to_bytes(reg.size, "little")

    def write_register(self, regnum: int, data: bytes) -> bool:
        reg = self.regs.get(regnum)
        if reg is None or len(data) != reg.size:
            return False
        return self._write(reg, int.from_bytes(data, "little"))

    def read_g(self) -> bytes:
        """The `g` packet's registers, concatenated; GDB asks for the others with `p`."""
        return b"".join(self.read_register(n) or b"" for n in self.g_regnums)

    def write_g(self, raw: bytes) -> None:
        """A `G` packet: as many of the `g` registers as its bytes cover."""
        offset = 0
        for regnum in self.g_regnums:
            size = self.regs[regnum].size
            if offset + size > len(raw):
                break
            self.write_register(regnum, raw[offset:offset + size])
            offset += size

    # -- memory ------------------------------------------------------------------------

    def _pieces(self, address: int, size: int, virtual: bool) -> list[tuple[int, int]] | None:
        """(physical address, length) runs, split at pages; None if any is not RAM."""
        runs = []
        while size > 0:
            chunk = min(size, PAGE - (address & (PAGE - 1)))
            phys = self.translate(address) if virtual else address
            if phys is None or not self.ram.contains(phys, chunk):
                return None
            runs.append((phys, chunk))
            address += chunk
            size -= chunk
        return runs

    def read_memory(self, address: int, size: int, virtual: bool = True) -> bytes | None:
        runs = self._pieces(address, size, virtual)
        if runs is None:
            return None
        return b"".join(self.ram.read(phys, length) for phys, length in runs)

    def write_memory(self, address: int, data: bytes, virtual: bool = True) -> bool:
        runs = self._pieces(address, len(data), virtual)
        if runs is None:
            return False
        done = 0
        for phys, length in runs:
            self.ram.write(phys, data[done:done + length])   # noted for code invalidation
            done += length
        self.cpu.flush_code()       # a changed instruction must not run from a stale block
        return True


def target_for(machine: Any) -> Target:
    """The target of the machine's board (its `arch`: riscv64 or arm64)."""
    arch = machine.board.arch
    if arch == "riscv64":
        from vmsim.gdb.riscv import RiscvTarget

        return RiscvTarget(machine.cpu, machine.ram)
    if arch == "arm64":
        from vmsim.gdb.arm64 import Arm64Target

        return Arm64Target(machine.cpu, machine.ram)
    raise ValueError(f"the GDB stub has no target for the {arch} board")
