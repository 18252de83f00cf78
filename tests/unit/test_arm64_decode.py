"""The AArch64 load/store decoder --strict uses to name an MMIO access's instruction.
Encodings are what aarch64-linux-gnu-as makes of each instruction in the comment."""
from __future__ import annotations

import pytest

from vmsim.core.arm64_decode import decode_memory_access
from vmsim.core.decode import MemoryAccess


@pytest.mark.parametrize("insn, expected", [
    (0xB9000041, MemoryAccess(2, 0, 4, True)),          # str w1, [x2]
    (0xB9407083, MemoryAccess(4, 0x70, 4, False)),      # ldr w3, [x4, #112]
    (0x39400CC5, MemoryAccess(6, 3, 1, False)),         # ldrb w5, [x6, #3]
    (0x79000D07, MemoryAccess(8, 6, 2, True)),          # strh w7, [x8, #6]
    (0xF9400949, MemoryAccess(10, 16, 8, False)),       # ldr x9, [x10, #16]
    (0xB980058B, MemoryAccess(12, 4, 4, False)),        # ldrsw x11, [x12, #4]
    (0xB81FC041, MemoryAccess(2, -4, 4, True)),         # stur w1, [x2, #-4]
    (0x381FFC83, MemoryAccess(4, -1, 1, True)),         # strb w3, [x4, #-1]!
    (0x784024C5, MemoryAccess(6, 0, 2, False)),         # ldrh w5, [x6], #2 (post-index)
])
def test_single_register_loads_and_stores_with_an_immediate(insn: int,
                                                           expected: MemoryAccess) -> None:
    assert decode_memory_access(insn) == expected


@pytest.mark.parametrize("insn", [
    0xA9400861,     # ldp x1, x2, [x3]
    0xB8236841,     # str w1, [x2, x3]
    0xB9400BE1,     # ldr w1, [sp, #8]
    0xF9800020,     # prfm pldl1keep, [x1]
    0xBD400020,     # ldr s0, [x1]
    0x885F7C41,     # ldxr w1, [x2]
    0xD503201F,     # nop
])
def test_what_is_not_decoded_is_none(insn: int) -> None:
    assert decode_memory_access(insn) is None


def test_a_negative_offset_wraps_like_the_address_does() -> None:
    access = decode_memory_access(0xB81FC041)                # stur w1, [x2, #-4]
    assert access is not None and access.address(0x0A00_0068) == 0x0A00_0064
