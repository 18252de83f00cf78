"""Decoding checked against the GNU assembler's own encodings."""
from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.guest import CROSS_AS, CROSS_OBJCOPY, require_tools
from vmsim.core.decode import (MemoryAccess, decode_csr, decode_memory_access, instruction_length,
                          is_ebreak)

AS = CROSS_AS.name
OBJCOPY = CROSS_OBJCOPY.name

# (assembly, expected MemoryAccess); one instruction per line.
MEMORY_CASES = [
    ("lb a0, -1(a1)", MemoryAccess(11, -1, 1, False)),
    ("lhu t0, 2046(sp)", MemoryAccess(2, 2046, 2, False)),
    ("lw a5, -2048(s0)", MemoryAccess(8, -2048, 4, False)),
    ("lwu a5, 12(s1)", MemoryAccess(9, 12, 4, False)),
    ("ld ra, 1000(t6)", MemoryAccess(31, 1000, 8, False)),
    ("sb zero, -7(a2)", MemoryAccess(12, -7, 1, True)),
    ("sh a1, 18(t3)", MemoryAccess(28, 18, 2, True)),
    ("sw a1, 2047(a3)", MemoryAccess(13, 2047, 4, True)),
    ("sd s11, -8(tp)", MemoryAccess(4, -8, 8, True)),
    ("flw fa0, 36(a0)", MemoryAccess(10, 36, 4, False)),
    ("fld fs0, -16(t1)", MemoryAccess(6, -16, 8, False)),
    ("fsw ft3, 100(a4)", MemoryAccess(14, 100, 4, True)),
    ("fsd fs1, -1024(a7)", MemoryAccess(17, -1024, 8, True)),
    ("lr.w a0, (a1)", MemoryAccess(11, 0, 4, False)),
    ("lr.d.aqrl t0, (s2)", MemoryAccess(18, 0, 8, False)),
    ("sc.d a0, a2, (a3)", MemoryAccess(13, 0, 8, True)),
    ("amoadd.w a0, a1, (t2)", MemoryAccess(7, 0, 4, True)),
    ("amoswap.d.aq zero, a1, (a5)", MemoryAccess(15, 0, 8, True)),
    ("amomaxu.d a0, a1, (a0)", MemoryAccess(10, 0, 8, True)),
    ("c.lw a0, 124(a1)", MemoryAccess(11, 124, 4, False)),
    ("c.ld a2, 248(s1)", MemoryAccess(9, 248, 8, False)),
    ("c.fld fa5, 8(a5)", MemoryAccess(15, 8, 8, False)),
    ("c.sw a4, 64(s0)", MemoryAccess(8, 64, 4, True)),
    ("c.sd a3, 136(a0)", MemoryAccess(10, 136, 8, True)),
    ("c.fsd fa0, 40(a2)", MemoryAccess(12, 40, 8, True)),
    ("c.lwsp ra, 252(sp)", MemoryAccess(2, 252, 4, False)),
    ("c.ldsp s0, 504(sp)", MemoryAccess(2, 504, 8, False)),
    ("c.fldsp fs0, 264(sp)", MemoryAccess(2, 264, 8, False)),
    ("c.swsp a0, 252(sp)", MemoryAccess(2, 252, 4, True)),
    ("c.sdsp ra, 504(sp)", MemoryAccess(2, 504, 8, True)),
    ("c.fsdsp fs2, 72(sp)", MemoryAccess(2, 72, 8, True)),
]

NOT_MEMORY = ["add a0, a1, a2", "c.addi a0, 1", "c.li a5, 3", "jal ra, 0", "csrr a0, time",
              "fence", "c.j 0", "ecall", "c.mv a0, a1"]


def assemble(lines: list[str], tmp_path: Path) -> list[int]:
    """Assemble each line and return the instruction words in order."""
    require_tools(CROSS_AS, CROSS_OBJCOPY)
    source = tmp_path / "insns.S"
    # One instruction per 4-byte slot, so each word can be picked out again.
    body = "".join(f"{line}\n.balign 4, 0\n" for line in lines)
    source.write_text(".option norelax\n.text\n" + body)
    obj, raw = tmp_path / "insns.o", tmp_path / "insns.bin"
    subprocess.run([AS, "-march=rv64imafdc", "-o", str(obj), str(source)], check=True)
    subprocess.run([OBJCOPY, "-O", "binary", "-j", ".text", str(obj), str(raw)], check=True)
    data = raw.read_bytes()
    words = [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]
    assert len(words) == len(lines)
    return [w & 0xFFFF if instruction_length(w & 0xFFFF) == 2 else w for w in words]


def test_memory_instructions_decode_like_the_assembler_encodes(tmp_path: Path) -> None:
    words = assemble([text for text, _ in MEMORY_CASES], tmp_path)
    for (text, expected), word in zip(MEMORY_CASES, words):
        assert decode_memory_access(word) == expected, text


def test_other_instructions_are_not_memory_accesses(tmp_path: Path) -> None:
    for text, word in zip(NOT_MEMORY, assemble(NOT_MEMORY, tmp_path)):
        assert decode_memory_access(word) is None, text


def test_csr_instructions(tmp_path: Path) -> None:
    lines = ["csrr a0, time", "csrrs t1, cycle, zero", "csrw sscratch, a1",
             "csrrci a0, sstatus, 2", "csrrs a2, instret, a3", "add a0, a0, a0", "wfi"]
    read_time, read_cycle, write, clear_imm, set_reg, add, wfi = assemble(lines, tmp_path)
    insn = decode_csr(read_time)
    assert (insn.csr, insn.rd, insn.op, insn.writes) == (0xC01, 10, "rs", False)
    assert decode_csr(read_cycle).csr == 0xC00
    insn = decode_csr(write)
    assert (insn.csr, insn.rd, insn.source, insn.op, insn.writes) == (0x140, 0, 11, "rw", True)
    insn = decode_csr(clear_imm)
    assert (insn.op, insn.immediate, insn.source, insn.writes) == ("rc", True, 2, True)
    assert decode_csr(set_reg).writes
    assert decode_csr(add) is None and decode_csr(wfi) is None


def test_address_wraps_at_64_bits() -> None:
    access = MemoryAccess(base=1, offset=-16, size=8, store=False)
    assert access.address(8) == (1 << 64) - 8
    assert MemoryAccess(1, 8, 8, True).address((1 << 64) - 4) == 4


def test_ebreak_forms() -> None:
    assert is_ebreak(0x0010_0073) and is_ebreak(0x9002)
    assert not is_ebreak(0x0000_0073) and not is_ebreak(0x9082)
