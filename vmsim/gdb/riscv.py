"""The riscv64 hart as GDB sees it.

Register numbers follow GDB's RISC-V layout (and QEMU's): x0-x31 are 0-31, pc 32,
f0-f31 33-64, a CSR is 65 + its CSR number, and the virtual `priv` register is
65 + 4096. GDB finds CSRs by their standard names, so only those are used.

Memory is guest-virtual, as GDB expects: the target walks the page tables itself from
satp (Sv39, Sv48 or Sv57) with the debugger's rights (no U/SUM or R/W/X checks), because
the engine's own accessors are physical or apply the guest's privilege.

A single step clears `sie` around the instruction, as QEMU masks interrupts by default.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from vmsim.core.cpu import PRIV_MACHINE
from vmsim.gdb.target import Register, Target

PC_REGNUM = 32
FP_BASE = 33
CSR_BASE = 65
PRIV_REGNUM = CSR_BASE + 4096

ABI = ("zero ra sp gp tp t0 t1 t2 fp s1 a0 a1 a2 a3 a4 a5 a6 a7 "
       "s2 s3 s4 s5 s6 s7 s8 s9 s10 s11 t3 t4 t5 t6").split()
FP_ABI = ("ft0 ft1 ft2 ft3 ft4 ft5 ft6 ft7 fs0 fs1 fa0 fa1 fa2 fa3 fa4 fa5 fa6 fa7 "
          "fs2 fs3 fs4 fs5 fs6 fs7 fs8 fs9 fs10 fs11 ft8 ft9 ft10 ft11").split()

# (standard name, CSR number, needs M-level access on the wheel engine)
CSRS: tuple[tuple[str, int, bool], ...] = (
    ("sstatus", 0x100, False), ("sie", 0x104, False), ("stvec", 0x105, False),
    ("scounteren", 0x106, False), ("sscratch", 0x140, False), ("sepc", 0x141, False),
    ("scause", 0x142, False), ("stval", 0x143, False), ("sip", 0x144, False),
    ("satp", 0x180, False),
    ("mstatus", 0x300, True), ("misa", 0x301, True), ("medeleg", 0x302, True),
    ("mideleg", 0x303, True), ("mie", 0x304, True), ("mtvec", 0x305, True),
    ("mcounteren", 0x306, True), ("mscratch", 0x340, True), ("mepc", 0x341, True),
    ("mcause", 0x342, True), ("mtval", 0x343, True), ("mip", 0x344, True),
    ("mvendorid", 0xF11, True), ("marchid", 0xF12, True), ("mimpid", 0xF13, True),
    ("mhartid", 0xF14, True),
)
FP_CSRS = (("fflags", 0x1), ("frm", 0x2), ("fcsr", 0x3))

_LEVELS = {8: 3, 9: 4, 10: 5}     # satp.MODE: Sv39, Sv48, Sv57 -> page-table levels


class RiscvTarget(Target):
    """The riscv64 board's hart (vmsim.core.cpu.Cpu)."""

    arch = "riscv64"
    pc_regnum = PC_REGNUM
    g_regnums = tuple(range(PC_REGNUM + 1))      # x0-x31 and pc

    def registers(self) -> dict[int, Register]:
        from unicorn import riscv_const as rv     # the engine is bound by then (Cpu exists)

        regs = [Register(ABI[i], i, rv.UC_RISCV_REG_X0 + i, 8) for i in range(32)]
        regs.append(Register("pc", PC_REGNUM, rv.UC_RISCV_REG_PC, 8))
        regs += [Register(FP_ABI[i], FP_BASE + i, rv.UC_RISCV_REG_F0 + i, 8) for i in range(32)]
        regs += [Register(name, CSR_BASE + num, getattr(rv, f"UC_RISCV_REG_{name.upper()}"), 4)
                 for name, num in FP_CSRS]
        regs += [Register(name, CSR_BASE + num, getattr(rv, f"UC_RISCV_REG_{name.upper()}"), 8,
                          machine) for name, num, machine in CSRS]
        regs.append(Register("priv", PRIV_REGNUM, rv.UC_RISCV_REG_PRIV, 8))
        return {reg.regnum: reg for reg in regs}

    def describe(self) -> bytes:
        """One target description with the cpu, fpu, virtual and csr features."""
        lines = ['<?xml version="1.0"?>', '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
                 '<target version="1.0">', "<architecture>riscv:rv64</architecture>",
                 '<feature name="org.gnu.gdb.riscv.cpu">']
        for i, name in enumerate(ABI):
            kind = ("code_ptr" if name == "ra" else
                    "data_ptr" if name in ("sp", "gp", "tp", "fp") else "int")
            lines.append(f'<reg name="{name}" bitsize="64" type="{kind}" regnum="{i}"/>')
        lines.append(f'<reg name="pc" bitsize="64" type="code_ptr" regnum="{PC_REGNUM}"/>')
        lines += ["</feature>", '<feature name="org.gnu.gdb.riscv.fpu">']
        lines += [f'<reg name="{name}" bitsize="64" type="ieee_double" regnum="{FP_BASE + i}"/>'
                  for i, name in enumerate(FP_ABI)]
        lines += [f'<reg name="{name}" bitsize="32" type="int" regnum="{CSR_BASE + num}"/>'
                  for name, num in FP_CSRS]
        lines += ["</feature>", '<feature name="org.gnu.gdb.riscv.virtual">',
                  f'<reg name="priv" bitsize="64" type="int" regnum="{PRIV_REGNUM}"/>',
                  "</feature>", '<feature name="org.gnu.gdb.riscv.csr">']
        lines += [f'<reg name="{name}" bitsize="64" type="int" regnum="{CSR_BASE + num}" '
                  'group="csr"/>' for name, num, _ in CSRS]
        lines += ["</feature>", "</target>"]
        return "\n".join(lines).encode()

    @contextlib.contextmanager
    def _access(self, reg: Register) -> Iterator[None]:
        """M-level CSRs are readable only at PRIV 3 on the wheel (docs/engine.md, E2);
        the patched engine takes them at any privilege, and the brief switch is harmless."""
        if not reg.machine_level:
            yield
            return
        saved = self.cpu.priv
        self.cpu.priv = PRIV_MACHINE
        try:
            yield
        finally:
            self.cpu.priv = saved

    def _read(self, reg: Register) -> int:
        with self._access(reg):
            return super()._read(reg)

    def _write(self, reg: Register, value: int) -> bool:
        if reg.regnum == 0:
            return True                                # x0 stays zero
        with self._access(reg):
            return super()._write(reg, value)

    def translate(self, address: int) -> int | None:
        """Guest-virtual to physical under the current satp, with the debugger's rights;
        None for an unmapped or non-canonical address. Sv48 and Sv57 too: Linux 6.1
        asks for the deepest mode the hart takes, and this engine takes Sv57."""
        satp = self.cpu.csr("satp")
        levels = _LEVELS.get(satp >> 60)
        if levels is None or self.cpu.priv == PRIV_MACHINE:
            return address if address < 1 << 64 else None
        top_bit = 12 + 9 * levels - 1                 # 38 for Sv39: sign-extended above
        if address >> top_bit not in (0, (1 << (64 - top_bit)) - 1):
            return None
        table = (satp & ((1 << 44) - 1)) << 12
        for level in range(levels - 1, -1, -1):
            entry_at = table + ((address >> (12 + 9 * level)) & 0x1FF) * 8
            if not self.ram.contains(entry_at, 8):
                return None
            pte = self.ram.read_u64(entry_at)
            if not pte & 1 or (pte & 0b110) == 0b100:          # invalid, or W without R
                return None
            ppn = pte >> 10 & ((1 << 44) - 1)
            if pte & 0b1010:                                    # R or X: a leaf
                offset_bits = 12 + 9 * level
                if ppn & ((1 << (9 * level)) - 1):
                    return None                                 # misaligned superpage
                return (ppn << 12) | (address & ((1 << offset_bits) - 1))
            table = ppn << 12
        return None

    @contextlib.contextmanager
    def interrupts_masked(self) -> Iterator[None]:
        """sie = 0 around the step; restored unless the instruction itself wrote sie."""
        sie = self.cpu.csr("sie")
        self.cpu.set_csr("sie", 0)
        try:
            yield
        finally:
            if self.cpu.csr("sie") == 0:
                self.cpu.set_csr("sie", sie)
