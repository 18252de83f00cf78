"""Just enough AArch64 decoding to find the instruction that made an MMIO access.

Inside an MMIO callback the engine's pc is the start of the running block (docs/engine.md,
E11), so `--strict` finds the access's own instruction by decoding the block
(vmsim.core.strict.locate_access). Drivers reach device registers with the plain
integer loads and stores of one register: `ldr`/`str` and their byte, halfword and
sign-extending forms, with an immediate offset (scaled, unscaled, pre- or post-indexed),
which is what Linux's readl/writel and their relatives compile to. Anything else
(register offsets, pairs, SIMD registers, exclusives) is not decoded, and the finding
keeps the block's start. Pure: instruction bits in, a MemoryAccess out.
"""
from __future__ import annotations

from vmsim.core.decode import MemoryAccess

SP = 31                          # as a base register, 31 is the stack pointer


def _bits(value: int, hi: int, lo: int) -> int:
    return (value >> lo) & ((1 << (hi - lo + 1)) - 1)


def _sign_extend(value: int, width: int) -> int:
    sign = 1 << (width - 1)
    return (value & (sign - 1)) - (value & sign)


def decode_memory_access(insn: int) -> MemoryAccess | None:
    """The access of a single-register integer load or store with an immediate offset,
    as x[base] + offset at the time of the access; None for any other instruction."""
    if _bits(insn, 29, 27) != 0b111 or _bits(insn, 26, 26):      # not an integer load/store
        return None
    size, opc = _bits(insn, 31, 30), _bits(insn, 23, 22)
    if opc == 0b10 and size == 0b11:                               # prfm: no access
        return None
    store = opc == 0
    base = _bits(insn, 9, 5)
    if base == SP:
        return None
    if _bits(insn, 25, 24) == 0b01:                                # unsigned offset, scaled
        return MemoryAccess(base, _bits(insn, 21, 10) << size, 1 << size, store)
    if _bits(insn, 25, 24) == 0b00 and not _bits(insn, 21, 21):
        mode = _bits(insn, 11, 10)                                 # 00 unscaled, 01 post, 11 pre
        if mode == 0b10:                                           # unprivileged: as unscaled
            mode = 0b00
        offset = _sign_extend(_bits(insn, 20, 12), 9)
        return MemoryAccess(base, 0 if mode == 0b01 else offset, 1 << size, store)
    return None
