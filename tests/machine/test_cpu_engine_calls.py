"""The Cpu's direct engine calls: mip updates and the invalidation of device-written
pages touch exactly what they should and leave the hart's privilege as it was."""
from __future__ import annotations

import ctypes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmsim.core import cpu as cpu_module
from vmsim.core.cpu import (NATIVE_INVALIDATE, PAGE_SHIFT, PRIV_SUPERVISOR, PRIV_USER, SEIP,
                            SSIP, STIP, Cpu)
from vmsim.core.nativelib import INVALIDATE_PAGES, function_address, page_invalidation

RAM_BASE, RAM_SIZE = 0x8000_0000, 1 << 20


@pytest.fixture
def cpu():
    cpu = Cpu()
    cpu.uc.mem_map(RAM_BASE, RAM_SIZE)
    return cpu


def test_update_mip_changes_only_the_named_bits(cpu) -> None:
    cpu.priv = PRIV_SUPERVISOR
    cpu.write_mcsr("mip", SSIP)
    cpu.update_mip(set_bits=SEIP | STIP)
    assert cpu.read_mcsr("mip") == SSIP | SEIP | STIP
    cpu.update_mip(clear_bits=STIP)
    cpu.update_mip(clear_bits=STIP)  # already clear: nothing to write
    assert cpu.read_mcsr("mip") == SSIP | SEIP
    cpu.update_mip(set_bits=0, clear_bits=SEIP | SSIP)
    assert cpu.read_mcsr("mip") == 0
    assert cpu.priv == PRIV_SUPERVISOR


@pytest.mark.parametrize("priv", [PRIV_USER, PRIV_SUPERVISOR])
def test_written_pages_are_invalidated_in_runs_at_machine_level(cpu, monkeypatch, priv) -> None:
    """The engines without physical invalidation (docs/engine.md, E17)."""
    if cpu.native_features & NATIVE_INVALIDATE:
        monkeypatch.setattr(cpu_module, "_NATIVE_FEATURES",
                            cpu.native_features & ~NATIVE_INVALIDATE)
    calls = []
    monkeypatch.setattr(cpu, "_remove_cache", lambda first, end: calls.append(
        (first - (RAM_BASE >> PAGE_SHIFT), end - (RAM_BASE >> PAGE_SHIFT), cpu.priv)))
    cpu.priv = priv
    page = 1 << PAGE_SHIFT
    cpu.note_written(RAM_BASE + 0 * page + 5, 1)
    cpu.note_written(RAM_BASE + 2 * page, 8)                 # one unwritten page between
    cpu.note_written(RAM_BASE + 6 * page - 1, 2)              # straddles pages 5 and 6
    cpu.note_written(RAM_BASE + 10 * page, 0)                 # nothing written
    cpu.note_written(RAM_BASE + 12 * page, 2 * page + 1)      # pages 12, 13, 14
    cpu._forget_written_code()
    assert calls == [(0, 3, 3), (5, 7, 3), (12, 15, 3)]
    assert cpu.priv == priv
    calls.clear()
    cpu._forget_written_code()  # nothing noted since
    assert calls == []


@pytest.mark.parametrize("priv", [PRIV_USER, PRIV_SUPERVISOR])
def test_the_patched_engine_invalidates_exact_physical_runs_at_any_privilege(
        cpu, monkeypatch, priv) -> None:
    """docs/engine.md, P11: physical ranges, no privilege round trip, no bridging."""
    if not cpu.native_features & NATIVE_INVALIDATE:
        pytest.skip("the wheel has no physical invalidation (the test above covers it)")
    writes, batches = record_engine_writes(cpu, monkeypatch)
    cpu.priv = priv
    writes.clear()
    page = 1 << PAGE_SHIFT
    cpu.note_written(RAM_BASE + 0 * page + 5, 1)
    cpu.note_written(RAM_BASE + 2 * page, 8)
    cpu.note_written(RAM_BASE + 6 * page - 1, 2)
    cpu.note_written(RAM_BASE + 12 * page, 2 * page + 1)
    cpu._forget_written_code()
    assert ranges_of(writes) == [(0, 1), (2, 3), (5, 7), (12, 15)]
    assert batches == [8]                   # the four runs in one engine call
    assert all(reg != cpu_module._PRIV for reg, _ in writes)
    assert cpu.priv == priv


def record_engine_writes(cpu, monkeypatch) -> tuple[list, list]:
    """The register writes the CPU makes, one by one or batched, and each batch's size
    (invalidation the Python way, the reference: see the next test for the native)."""
    monkeypatch.setattr(cpu, "_native_invalidate", None)
    writes: list[tuple[int, int]] = []
    batches: list[int] = []
    real_set, lib = cpu._set, cpu._lib

    class Recording:
        def __getattr__(self, name: str):
            return getattr(lib, name)

        def uc_reg_write_batch(self, handle, regs, refs, count):
            batches.append(count)
            writes.extend(zip(cpu._bound_regs[:count], cpu._bounds[:count]))
            return lib.uc_reg_write_batch(handle, regs, refs, count)

    monkeypatch.setattr(cpu, "_set", lambda reg, value: (writes.append((reg, value)),
                                                           real_set(reg, value)))
    monkeypatch.setattr(cpu, "_lib", Recording())
    return writes, batches


def ranges_of(writes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    page = 1 << PAGE_SHIFT
    assert [reg for reg, _ in writes] == [cpu_module._REG_INVALIDATE_START,
                                          cpu_module._REG_INVALIDATE_END] * (len(writes) // 2)
    return [((start - RAM_BASE) // page, (end - RAM_BASE) // page)
            for (_, start), (_, end) in zip(writes[::2], writes[1::2])]


def test_many_page_runs_are_invalidated_a_batch_at_a_time(cpu, monkeypatch) -> None:
    """More runs than one engine call takes (_INVALIDATE_BATCH) go in several calls,
    none lost."""
    if not cpu.native_features & NATIVE_INVALIDATE:
        pytest.skip("the wheel has no physical invalidation (the test above covers it)")
    writes, batches = record_engine_writes(cpu, monkeypatch)
    runs = 2 * cpu_module._INVALIDATE_BATCH + 3
    for run in range(runs):
        cpu.note_written(RAM_BASE + (2 * run << PAGE_SHIFT), 1)
    cpu._forget_written_code()
    assert ranges_of(writes) == [(2 * run, 2 * run + 1) for run in range(runs)]
    assert batches == [2 * cpu_module._INVALIDATE_BATCH] * 2 + [6]


_WRITE_BATCH = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int),
                                ctypes.POINTER(ctypes.c_void_p), ctypes.c_int)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pages=st.sets(st.integers(0, 200), min_size=1, max_size=INVALIDATE_PAGES))
def test_native_invalidation_makes_the_engine_calls_the_python_makes(cpu, monkeypatch, pages):
    """vmsim/native/invalidate.c against _invalidate_physical: the same register writes
    in the same batches, for any set of pages (runs, gaps, more runs than a batch)."""
    if not cpu.native_features & NATIVE_INVALIDATE:
        pytest.skip("the wheel has no physical invalidation")
    native_writes: list[tuple[int, int]] = []
    native_batches: list[int] = []

    def record(_uc, regs, refs, count):
        native_batches.append(count)
        native_writes.extend((regs[i], ctypes.cast(refs[i], ctypes.POINTER(ctypes.c_uint64))[0])
                             for i in range(count))
        return 0

    recorder = _WRITE_BATCH(record)
    native = page_invalidation(0, ctypes.cast(recorder, ctypes.c_void_p).value,
                               cpu_module._REG_INVALIDATE_START, cpu_module._REG_INVALIDATE_END,
                               PAGE_SHIFT)
    assert native is not None, "vmsim's native helper library is not built: run `make unicorn`"
    numbers = sorted((RAM_BASE >> PAGE_SHIFT) + page for page in pages)
    assert native(numbers) == 0
    with monkeypatch.context() as patch:
        writes, batches = record_engine_writes(cpu, patch)
        cpu._invalidate_physical(numbers)
    assert (native_writes, native_batches) == (writes, batches)


def test_the_cpu_invalidates_natively(cpu, monkeypatch) -> None:
    """Where the library is built (every setup), the patched engine's invalidation
    goes the native way: with the Python way made to fail, it still reaches the engine."""
    if not cpu.native_features & NATIVE_INVALIDATE:
        pytest.skip("the wheel has no physical invalidation")
    assert cpu._native_invalidate is not None
    monkeypatch.setattr(cpu, "_bound_regs", None)    # the Python way would fail on it
    cpu.note_written(RAM_BASE, 3 << PAGE_SHIFT)
    cpu.note_written(RAM_BASE + (9 << PAGE_SHIFT), 1)
    cpu._forget_written_code()
    assert not cpu._written_pages


def test_invalidation_reaches_the_engine(cpu) -> None:
    cpu.note_written(RAM_BASE, 3 << PAGE_SHIFT)
    cpu._forget_written_code()  # a real uc_ctl call: it must not raise
    assert not cpu._written_pages


def _load(rd: int, funct3: int, offset: int, rs1: int = 5) -> bytes:
    """A riscv load instruction (lw: funct3 2, lhu: 5) of x[rd] from offset(x[rs1])."""
    return ((offset << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | 0x03).to_bytes(4, "little")


def _store(rs2: int, offset: int, rs1: int = 5) -> bytes:
    """sw x[rs2], offset(x[rs1])."""
    return ((offset >> 5 << 25) | (rs2 << 20) | (rs1 << 15) | (2 << 12) | ((offset & 31) << 7)
            | 0x23).to_bytes(4, "little")


def test_the_register_mirror_answers_and_takes_in_native_code(cpu) -> None:
    """vmsim/native/register_mirror.c: a published 4-byte register is read, and an
    offered write of exactly its value taken, without a call to Python; another
    register, size or value, or a withdrawn one, reaches the device."""
    window, calls = 0x1000_0000, []

    def read(offset: int, size: int) -> int:
        calls.append(("read", offset, size))
        return 0x100 + offset

    def write(offset: int, size: int, value: int) -> None:
        calls.append(("write", offset, size, value))

    mirror = cpu.map_mmio(window, 0x1000, read, write, mirrored=(0x60,), posted=(0x10,))
    code = (_load(10, 2, 0x60) + _load(11, 5, 0x60) + _load(12, 2, 0x64)
            + _store(13, 0x10) + _store(14, 0x10))
    cpu.uc.mem_write(RAM_BASE, code)

    def run() -> tuple[int, int, int]:
        calls.clear()
        cpu.set_x(5, window)
        cpu.set_x(13, 33)
        cpu.set_x(14, 34)
        cpu.uc.emu_start(RAM_BASE, RAM_BASE + len(code))
        return cpu.x(10), cpu.x(11), cpu.x(12)

    mirror.publish(0x60, 3)
    mirror.offer(0x10, 33)
    assert run() == (3, 0x160, 0x164)
    assert calls == [("read", 0x60, 2), ("read", 0x64, 4), ("write", 0x10, 4, 34)]
    assert (mirror.hits, mirror.taken) == (1, 1)
    assert mirror.take_posted(0x10) == 33 and mirror.take_posted(0x10) is None
    assert run() == (3, 0x160, 0x164)                         # the offer was used up
    assert calls[-2:] == [("write", 0x10, 4, 33), ("write", 0x10, 4, 34)]
    mirror.publish(0x60, None)
    assert run() == (0x160, 0x160, 0x164)
    assert calls[0] == ("read", 0x60, 4) and mirror.hits == 2
    assert cpu.map_mmio(window + 0x1000, 0x1000, read, write) is None


def test_a_read_published_once_is_answered_once_and_drops_the_line(cpu) -> None:
    """A read published once (publish_once) is answered in native code the first time,
    which also sets the line's engine register and its host copy to 0 (here x7 stands
    for the arm64 IRQ input); the second read reaches the device, and taken_once says
    the first was answered. Without a line to drop, no read is answered once."""
    window, calls = 0x1000_0000, []

    def read(offset: int, size: int) -> int:
        calls.append(offset)
        return 0x100 + offset

    mirror = cpu.map_mmio(window, 0x1000, read, lambda *_: None, mirrored=(0x0C,))
    code = _load(10, 2, 0x0C) + _load(11, 2, 0x0C)
    cpu.uc.mem_write(RAM_BASE, code)

    def run() -> tuple[int, int]:
        cpu.set_x(5, window)
        cpu.set_x(7, 1)
        cpu.uc.emu_start(RAM_BASE, RAM_BASE + len(code))
        return cpu.x(10), cpu.x(11)

    mirror.publish_once(0x0C, 48)                 # no line to drop: handed to the device
    assert run() == (0x10C, 0x10C) and calls == [0x0C, 0x0C] and not mirror.taken_once(0x0C)
    copy = ctypes.c_uint64(1)
    mirror.drops_line_with(function_address(cpu._lib.uc_reg_write), cpu_module._X0 + 7,
                           ctypes.addressof(copy))
    calls.clear()
    mirror.publish_once(0x0C, 48)
    assert run() == (48, 0x10C) and calls == [0x0C]
    assert cpu.x(7) == 0 and copy.value == 0
    assert mirror.taken_once(0x0C) and not mirror.taken_once(0x0C)
