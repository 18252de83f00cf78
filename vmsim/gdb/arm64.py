"""The arm64 CPU (vmsim.core.arm64_cpu.Arm64Cpu) as GDB sees it.

Register numbers are GDB's AArch64 ones: x0-x30 are 0-30, sp 31, pc 32, cpsr 33 (32
bits), in the feature org.gnu.gdb.aarch64.core; v0-v31 (128 bits) are 34-65, fpsr 66
and fpcr 67, in org.gnu.gdb.aarch64.fpu. A `g` packet carries the core registers; GDB
reads the others one by one.

A write to cpsr may change the condition flags (NZCV) and the DAIF masks only: those
are plain fields in the engine, where a change of exception level or stack pointer
select would need the engine's hflags rebuilt and its banked stack pointers switched,
which a host write of PSTATE skips. Such a write is refused (E01).

Memory is guest-virtual, as GDB expects, translated by the engine (uc_vmem_translate)
through the current translation regime, as a load, or else as a fetch, of the current
exception level would see it: what the guest has mapped (any granule, TTBR0 or TTBR1,
the MMU on or off), as QEMU's stub does. So while the CPU is stopped at EL0 the
kernel's half is not readable.

Breakpoints and watchpoints are the stub's engine hooks, as on riscv64; a memory hook
sees physical addresses on this engine too, so a watchpoint watches the RAM its virtual
range maps to when it is set. The stub stops right after the watched access; GDB,
which expects an AArch64 watchpoint to stop before the access, then steps one more
instruction before it reports.

A single step holds the engine's IRQ line low (Arm64Cpu.irq_held_low), so `stepi`
does not land in the IRQ vector while the GIC has an interrupt for the CPU; PSTATE.I
itself is not touched. FIQs are not used on this board.
"""
from __future__ import annotations

import contextlib

from vmsim.gdb.target import Register, Target

SP_REGNUM, PC_REGNUM, CPSR_REGNUM = 31, 32, 33
V_BASE = 34
FPSR_REGNUM, FPCR_REGNUM = 66, 67

# The cpsr bits a debugger may change: N Z C V (31-28) and D A I F (9-6).
CPSR_WRITABLE = 0xF000_0000 | 0x3C0

# The cpsr as GDB shows it: the fields of PSTATE an AArch64 debugger cares about.
_CPSR_FIELDS = (("SP", 0, 0), ("EL", 2, 3), ("nRW", 4, 4), ("F", 6, 6), ("I", 7, 7),
                ("A", 8, 8), ("D", 9, 9), ("SS", 21, 21), ("V", 28, 28), ("C", 29, 29),
                ("Z", 30, 30), ("N", 31, 31))

# The views of a 128-bit vector register, as GDB names them on AArch64: by lane size
# (d, s, h, b, q), then as floats, unsigned or signed (print $v0.d.u[1], $v0.s.f).
_VECTOR_VIEWS: tuple[tuple[str, tuple[tuple[str, str, int], ...]], ...] = (
    ("d", (("f", "ieee_double", 2), ("u", "uint64", 2), ("s", "int64", 2))),
    ("s", (("f", "ieee_single", 4), ("u", "uint32", 4), ("s", "int32", 4))),
    ("h", (("u", "uint16", 8), ("s", "int16", 8))),
    ("b", (("u", "uint8", 16), ("s", "int8", 16))),
    ("q", (("u", "uint128", 1), ("s", "int128", 1))),
)


class Arm64Target(Target):
    """The arm64 board's Cortex-A72."""

    arch = "arm64"
    pc_regnum = PC_REGNUM
    g_regnums = tuple(range(CPSR_REGNUM + 1))    # x0-x30, sp, pc, cpsr

    def registers(self) -> dict[int, Register]:
        from unicorn import arm64_const as a      # the engine is bound by then (Arm64Cpu exists)

        regs = [Register(f"x{i}", i, getattr(a, f"UC_ARM64_REG_X{i}"), 8) for i in range(31)]
        regs += [Register("sp", SP_REGNUM, a.UC_ARM64_REG_SP, 8),
                 Register("pc", PC_REGNUM, a.UC_ARM64_REG_PC, 8),
                 Register("cpsr", CPSR_REGNUM, a.UC_ARM64_REG_PSTATE, 4)]
        regs += [Register(f"v{i}", V_BASE + i, a.UC_ARM64_REG_V0 + i, 16) for i in range(32)]
        regs += [Register("fpsr", FPSR_REGNUM, a.UC_ARM64_REG_FPSR, 4),
                 Register("fpcr", FPCR_REGNUM, a.UC_ARM64_REG_FPCR, 4)]
        return {reg.regnum: reg for reg in regs}

    def describe(self) -> bytes:
        """The core and fpu features, with a flags type for cpsr and a union of vector
        views for the v registers."""
        lines = ['<?xml version="1.0"?>', '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
                 '<target version="1.0">', "<architecture>aarch64</architecture>",
                 '<feature name="org.gnu.gdb.aarch64.core">',
                 '<flags id="cpsr_bits" size="4">']
        lines += [f'<field name="{name}" start="{start}" end="{end}"/>'
                  for name, start, end in _CPSR_FIELDS]
        lines.append("</flags>")
        for i in range(31):
            kind = "code_ptr" if i == 30 else "data_ptr" if i == 29 else "int"
            lines.append(f'<reg name="x{i}" bitsize="64" type="{kind}" regnum="{i}"/>')
        lines += [f'<reg name="sp" bitsize="64" type="data_ptr" regnum="{SP_REGNUM}"/>',
                  f'<reg name="pc" bitsize="64" type="code_ptr" regnum="{PC_REGNUM}"/>',
                  f'<reg name="cpsr" bitsize="32" type="cpsr_bits" regnum="{CPSR_REGNUM}"/>',
                  "</feature>", '<feature name="org.gnu.gdb.aarch64.fpu">']
        for view, kinds in _VECTOR_VIEWS:
            lines += [f'<vector id="v{count}{kind}" type="{element}" count="{count}"/>'
                      for kind, element, count in kinds if count > 1]
            lines.append(f'<union id="vn{view}">')
            lines += [f'<field name="{kind}" type="{element if count == 1 else f"v{count}{kind}"}"/>'
                      for kind, element, count in kinds]
            lines.append("</union>")
        lines.append('<union id="vreg">')
        lines += [f'<field name="{view}" type="vn{view}"/>' for view, _ in _VECTOR_VIEWS]
        lines.append("</union>")
        lines += [f'<reg name="v{i}" bitsize="128" type="vreg" regnum="{V_BASE + i}"/>'
                  for i in range(32)]
        lines += [f'<reg name="fpsr" bitsize="32" type="int" regnum="{FPSR_REGNUM}"/>',
                  f'<reg name="fpcr" bitsize="32" type="int" regnum="{FPCR_REGNUM}"/>',
                  "</feature>", "</target>"]
        return "\n".join(lines).encode()

    def _write(self, reg: Register, value: int) -> bool:
        if reg.regnum == CPSR_REGNUM:
            current = self._read(reg)
            if (value ^ current) & ~CPSR_WRITABLE & 0xFFFF_FFFF:
                return False              # an exception level or SP change: see the docstring
        return super()._write(reg, value)

    def translate(self, address: int) -> int | None:
        if not 0 <= address < 1 << 64:
            return None
        phys = self.cpu.translate_virtual(address)
        if phys is None:
            phys = self.cpu.translate_virtual(address, execute=True)
        return phys

    def interrupts_masked(self) -> contextlib.AbstractContextManager[None]:
        return self.cpu.irq_held_low()
