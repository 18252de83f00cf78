"""Just enough RISC-V instruction decoding for the trap path.

Unicorn reports a fault without the faulting address (docs/engine.md, E1), so the
machine re-decodes the faulting instruction to compute stval, and decodes CSR
instructions to emulate the CSRs Unicorn lacks (`time`). Everything here is pure:
instruction bits in, a small description out, so it is tested without an engine.
"""
from __future__ import annotations

from dataclasses import dataclass

XLEN_MASK = (1 << 64) - 1
WFI = 0x1050_0073
SP = 2


def _bits(value: int, hi: int, lo: int) -> int:
    return (value >> lo) & ((1 << (hi - lo + 1)) - 1)


def _sign_extend(value: int, width: int) -> int:
    sign = 1 << (width - 1)
    return (value & (sign - 1)) - (value & sign)


def instruction_length(low_halfword: int) -> int:
    """2 for a compressed instruction, else 4 (the only lengths RV64GC has)."""
    return 4 if low_halfword & 0b11 == 0b11 else 2


@dataclass(frozen=True)
class MemoryAccess:
    """A load/store/AMO as the fault address needs it: x[base] + offset."""

    base: int
    offset: int
    size: int
    store: bool

    def address(self, base_value: int) -> int:
        return (base_value + self.offset) & XLEN_MASK


# Major opcodes of the 32-bit memory instructions.
_LOAD, _LOAD_FP, _STORE, _STORE_FP, _AMO = 0x03, 0x07, 0x23, 0x27, 0x2F
_INT_SIZES = {0: 1, 1: 2, 2: 4, 3: 8, 4: 1, 5: 2, 6: 4}   # funct3 -> bytes (lb..lwu)
_FP_SIZES = {1: 2, 2: 4, 3: 8}                            # flh/flw/fld, fsh/fsw/fsd
_LR = 0b00010


def _decode_32bit_access(insn: int) -> MemoryAccess | None:
    opcode, funct3, rs1 = insn & 0x7F, _bits(insn, 14, 12), _bits(insn, 19, 15)
    i_imm = _sign_extend(_bits(insn, 31, 20), 12)
    s_imm = _sign_extend((_bits(insn, 31, 25) << 5) | _bits(insn, 11, 7), 12)
    if opcode == _LOAD and funct3 in _INT_SIZES:
        return MemoryAccess(rs1, i_imm, _INT_SIZES[funct3], store=False)
    if opcode == _STORE and funct3 <= 3:
        return MemoryAccess(rs1, s_imm, 1 << funct3, store=True)
    if opcode == _LOAD_FP and funct3 in _FP_SIZES:
        return MemoryAccess(rs1, i_imm, _FP_SIZES[funct3], store=False)
    if opcode == _STORE_FP and funct3 in _FP_SIZES:
        return MemoryAccess(rs1, s_imm, _FP_SIZES[funct3], store=True)
    if opcode == _AMO and funct3 in (2, 3):
        # LR faults as a load; SC and every AMO fault as stores (cause 15).
        return MemoryAccess(rs1, 0, 1 << funct3, store=_bits(insn, 31, 27) != _LR)
    return None


def _cl_offset(insn: int, size: int) -> int:
    """Offset of the register-based compressed forms (c.lw/c.ld/c.sw/... )."""
    offset = _bits(insn, 12, 10) << 3
    if size == 4:
        return offset | (_bits(insn, 6, 6) << 2) | (_bits(insn, 5, 5) << 6)
    return offset | (_bits(insn, 6, 5) << 6)


def _sp_load_offset(insn: int, size: int) -> int:
    """Offset of c.lwsp / c.ldsp / c.fldsp."""
    offset = _bits(insn, 12, 12) << 5
    if size == 4:
        return offset | (_bits(insn, 6, 4) << 2) | (_bits(insn, 3, 2) << 6)
    return offset | (_bits(insn, 6, 5) << 3) | (_bits(insn, 4, 2) << 6)


def _sp_store_offset(insn: int, size: int) -> int:
    """Offset of c.swsp / c.sdsp / c.fsdsp."""
    if size == 4:
        return (_bits(insn, 12, 9) << 2) | (_bits(insn, 8, 7) << 6)
    return (_bits(insn, 12, 10) << 3) | (_bits(insn, 9, 7) << 6)


# RV64C funct3 -> (size, is_store) for quadrants 0 and 2 (fld/lw/ld, fsd/sw/sd).
_C_MEMORY = {1: (8, False), 2: (4, False), 3: (8, False),
             5: (8, True), 6: (4, True), 7: (8, True)}


def _decode_16bit_access(insn: int) -> MemoryAccess | None:
    quadrant, funct3 = insn & 0b11, _bits(insn, 15, 13)
    if funct3 not in _C_MEMORY:
        return None
    size, store = _C_MEMORY[funct3]
    if quadrant == 0:
        return MemoryAccess(8 + _bits(insn, 9, 7), _cl_offset(insn, size), size, store)
    if quadrant == 2:
        offset = _sp_store_offset(insn, size) if store else _sp_load_offset(insn, size)
        return MemoryAccess(SP, offset, size, store)
    return None


def decode_memory_access(insn: int) -> MemoryAccess | None:
    """Describe a load, store, AMO or LR/SC (32-bit or compressed); None otherwise.

    `insn` holds the instruction bits; a compressed one only in its low 16 bits.
    """
    if instruction_length(insn & 0xFFFF) == 2:
        return _decode_16bit_access(insn & 0xFFFF)
    return _decode_32bit_access(insn & 0xFFFF_FFFF)


@dataclass(frozen=True)
class CsrInstruction:
    """csrrw/csrrs/csrrc and their immediate forms.

    `source` is rs1's index, or the 5-bit immediate when `immediate` is set.
    """

    csr: int
    rd: int
    source: int
    op: str            # "rw" | "rs" | "rc"
    immediate: bool

    @property
    def writes(self) -> bool:
        """Whether the CSR is written (csrrs/csrrc with x0 or 0 only read it)."""
        return self.op == "rw" or self.source != 0


_CSR_OPS = {1: "rw", 2: "rs", 3: "rc"}


def decode_csr(insn: int) -> CsrInstruction | None:
    """Decode a Zicsr instruction; None for anything else."""
    if insn & 0b11 != 0b11 or insn & 0x7F != 0x73:
        return None
    funct3 = _bits(insn, 14, 12)
    op = _CSR_OPS.get(funct3 & 0b011)
    if op is None:
        return None
    return CsrInstruction(csr=_bits(insn, 31, 20), rd=_bits(insn, 11, 7),
                          source=_bits(insn, 19, 15), op=op, immediate=bool(funct3 & 0b100))


def is_ebreak(insn: int) -> bool:
    """ebreak or c.ebreak."""
    if instruction_length(insn & 0xFFFF) == 2:
        return insn & 0xFFFF == 0x9002
    return insn & 0xFFFF_FFFF == 0x0010_0073
