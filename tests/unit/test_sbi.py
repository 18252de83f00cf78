"""The SBI firmware against a recording platform: every extension the kernel uses, the
legacy calls of earlycon and hvc0, and NOT_SUPPORTED for everything else.

The platform records what the firmware asked the machine to do, so each test checks
both the answer in a0/a1 and the side effect (or its absence).
"""
from __future__ import annotations

from collections import deque

import pytest

from vmsim.devices.bus import GuestMemoryError
from vmsim.firmware import sbi
from vmsim.firmware.sbi import SbiCall, SbiFirmware, SbiResult

RAM_BASE, RAM_SIZE = 0x8000_0000, 0x1_0000
ALL_HARTS = sbi.MASK64          # hart_mask_base = -1


class FakeMemory:
    """Guest RAM as a bytearray; a range outside it raises, as the real RAM does."""

    def __init__(self) -> None:
        self.data = bytearray(RAM_SIZE)

    def _offset(self, addr: int, size: int) -> int:
        if not (RAM_BASE <= addr and addr + size <= RAM_BASE + RAM_SIZE):
            raise GuestMemoryError(addr, size)
        return addr - RAM_BASE

    def contains(self, addr: int, size: int) -> bool:
        return RAM_BASE <= addr and addr + size <= RAM_BASE + RAM_SIZE

    def read(self, addr: int, size: int) -> bytes:
        offset = self._offset(addr, size)
        return bytes(self.data[offset:offset + size])

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        offset = self._offset(addr, len(data))
        self.data[offset:offset + len(data)] = data


class RecordingPlatform:
    """An SbiPlatform that records each request as (name, *arguments)."""

    def __init__(self, console_input: bytes = b"") -> None:
        self.memory = FakeMemory()
        self.calls: list[tuple[object, ...]] = []
        self.output = bytearray()
        self.input: deque[int] = deque(console_input)

    def console_write(self, data: bytes) -> None:
        self.output += data

    def console_read(self) -> int:
        return self.input.popleft() if self.input else -1

    def set_timer(self, deadline: int) -> None:
        self.calls.append(("set_timer", deadline))

    def set_software_interrupt(self, pending: bool) -> None:
        self.calls.append(("ssip", pending))

    def flush_tlb(self) -> None:
        self.calls.append(("flush_tlb",))

    def flush_code(self) -> None:
        self.calls.append(("flush_code",))

    def system_reset(self, kind: str, reason: int) -> None:
        self.calls.append(("reset", kind, reason))


@pytest.fixture
def platform() -> RecordingPlatform:
    return RecordingPlatform()


@pytest.fixture
def firmware(platform: RecordingPlatform) -> SbiFirmware:
    return SbiFirmware(platform)


def call(firmware: SbiFirmware, eid: int, fid: int = 0, *args: int) -> SbiResult:
    """One ecall with a7 = eid, a6 = fid, a0.. = args (the rest 0)."""
    padded = (tuple(args) + (0,) * 6)[:6]
    return firmware.handle(SbiCall(eid, fid, padded))  # type: ignore[arg-type]


def ok(value: int = 0) -> SbiResult:
    return SbiResult(sbi.SBI_SUCCESS, value)


def error(code: int) -> SbiResult:
    return SbiResult(code)


# -- the register interface ---------------------------------------------------------

def test_a_call_is_read_from_a0_to_a7_and_answered_in_a0_and_a1() -> None:
    registers = [10, 11, 12, 13, 14, 15, 6, 7]          # a0..a7
    assert SbiCall.from_registers(registers) == SbiCall(7, 6, (10, 11, 12, 13, 14, 15))
    assert SbiResult(sbi.SBI_ERR_NOT_SUPPORTED, 5).registers() == {10: (1 << 64) - 2, 11: 5}
    assert SbiResult(-1, legacy=True).registers() == {10: sbi.MASK64}   # a legacy call: a0 only


# -- BASE ---------------------------------------------------------------------------

def test_base_reports_spec_2_0_and_vmsim_as_the_implementation(firmware) -> None:
    assert call(firmware, sbi.EXT_BASE, 0) == ok(2 << 24)
    assert call(firmware, sbi.EXT_BASE, 1) == ok(sbi.IMPL_ID)
    assert call(firmware, sbi.EXT_BASE, 2) == ok(sbi.IMPL_VERSION)
    for fid in (4, 5, 6):                               # mvendorid, marchid, mimpid
        assert call(firmware, sbi.EXT_BASE, fid) == ok(0)
    assert call(firmware, sbi.EXT_BASE, 7) == error(sbi.SBI_ERR_NOT_SUPPORTED)


@pytest.mark.parametrize("eid", [sbi.EXT_BASE, sbi.EXT_TIME, sbi.EXT_IPI, sbi.EXT_RFENCE,
                                 sbi.EXT_HSM, sbi.EXT_SRST, sbi.EXT_DBCN,
                                 sbi.LEGACY_PUTCHAR, sbi.LEGACY_SHUTDOWN])
def test_probe_finds_every_implemented_extension(firmware, eid: int) -> None:
    assert call(firmware, sbi.EXT_BASE, 3, eid) == ok(1)


@pytest.mark.parametrize("eid", [0x504D55,        # PMU
                                 0x535553,        # SUSP
                                 0x43505043,      # CPPC
                                 0x09, 0x0F])     # unused legacy numbers
def test_probe_reports_unimplemented_extensions_as_absent(firmware, eid: int) -> None:
    assert call(firmware, sbi.EXT_BASE, 3, eid) == ok(0)


# -- unknown ------------------------------------------------------------------------

@pytest.mark.parametrize("eid", [0x504D55, 0x0A000000, 0x0F, sbi.MASK64])
def test_an_unknown_extension_is_not_supported_and_does_nothing(firmware, platform,
                                                                 eid: int) -> None:
    assert call(firmware, eid, 0, 1, 2, 3) == error(sbi.SBI_ERR_NOT_SUPPORTED)
    assert platform.calls == [] and platform.output == b""


# -- TIME ---------------------------------------------------------------------------

def test_set_timer_programs_the_full_64_bit_deadline(firmware, platform) -> None:
    assert call(firmware, sbi.EXT_TIME, 0, 123_456_789) == ok()
    assert call(firmware, sbi.EXT_TIME, 0, sbi.MASK64) == ok()       # "never"
    assert platform.calls == [("set_timer", 123_456_789), ("set_timer", sbi.MASK64)]


def test_time_has_only_set_timer(firmware, platform) -> None:
    assert call(firmware, sbi.EXT_TIME, 1, 5) == error(sbi.SBI_ERR_NOT_SUPPORTED)
    assert platform.calls == []


# -- IPI ----------------------------------------------------------------------------

@pytest.mark.parametrize("mask, base", [(1, 0), (0, ALL_HARTS), (0b11, sbi.MASK64)])
def test_an_ipi_to_hart_0_sets_the_software_interrupt(firmware, platform, mask, base) -> None:
    assert call(firmware, sbi.EXT_IPI, 0, mask, base) == ok()
    assert platform.calls == [("ssip", True)]


@pytest.mark.parametrize("mask, base", [(0, 0), (0, 1)])
def test_an_ipi_to_no_hart_does_nothing(firmware, platform, mask, base) -> None:
    assert call(firmware, sbi.EXT_IPI, 0, mask, base) == ok()
    assert platform.calls == []


@pytest.mark.parametrize("mask, base", [(0b10, 0), (1, 1), (1, 5)])
def test_an_ipi_to_a_hart_that_does_not_exist_is_invalid(firmware, platform, mask, base) -> None:
    assert call(firmware, sbi.EXT_IPI, 0, mask, base) == error(sbi.SBI_ERR_INVALID_PARAM)
    assert platform.calls == []


# -- RFENCE -------------------------------------------------------------------------

def test_remote_fence_i_flushes_translated_code(firmware, platform) -> None:
    assert call(firmware, sbi.EXT_RFENCE, 0, 1, 0) == ok()
    assert platform.calls == [("flush_code",)]


@pytest.mark.parametrize("fid", [1, 2])          # sfence.vma, sfence.vma.asid
def test_remote_sfence_vma_flushes_the_tlb(firmware, platform, fid: int) -> None:
    assert call(firmware, sbi.EXT_RFENCE, fid, 0, ALL_HARTS, 0x1000, 0x2000, 7) == ok()
    assert platform.calls == [("flush_tlb",)]


@pytest.mark.parametrize("fid", [3, 4, 5, 6, 7])  # hypervisor fences; beyond the spec
def test_rfence_without_the_h_extension_is_not_supported(firmware, platform, fid: int) -> None:
    assert call(firmware, sbi.EXT_RFENCE, fid, 1, 0) == error(sbi.SBI_ERR_NOT_SUPPORTED)
    assert platform.calls == []


def test_rfence_to_a_missing_hart_is_invalid(firmware, platform) -> None:
    assert call(firmware, sbi.EXT_RFENCE, 1, 0b100, 0) == error(sbi.SBI_ERR_INVALID_PARAM)
    assert platform.calls == []


# -- HSM ----------------------------------------------------------------------------

def test_hsm_hart_0_is_started_and_no_other_hart_exists(firmware) -> None:
    assert call(firmware, sbi.EXT_HSM, 2, 0) == ok(sbi.HSM_STARTED)
    assert call(firmware, sbi.EXT_HSM, 2, 1) == error(sbi.SBI_ERR_INVALID_PARAM)


def test_hsm_start_stop_and_suspend_of_the_only_hart(firmware, platform) -> None:
    assert call(firmware, sbi.EXT_HSM, 0, 0, 0x8020_0000, 0) == \
        error(sbi.SBI_ERR_ALREADY_AVAILABLE)
    assert call(firmware, sbi.EXT_HSM, 0, 3) == error(sbi.SBI_ERR_INVALID_PARAM)
    assert call(firmware, sbi.EXT_HSM, 1) == error(sbi.SBI_ERR_FAILED)   # the last hart
    assert call(firmware, sbi.EXT_HSM, 3) == error(sbi.SBI_ERR_NOT_SUPPORTED)
    assert platform.calls == []


# -- SRST ---------------------------------------------------------------------------

@pytest.mark.parametrize("reset_type, kind", [(0, "shutdown"), (1, "cold_reboot"),
                                              (2, "warm_reboot")])
@pytest.mark.parametrize("reason", [sbi.RESET_REASON_NONE, sbi.RESET_REASON_SYSTEM_FAILURE,
                                    0xF000_0001])          # vendor-specific
def test_system_reset_passes_type_and_reason_to_the_machine(firmware, platform, reset_type,
                                                            kind, reason) -> None:
    assert call(firmware, sbi.EXT_SRST, 0, reset_type, reason) == ok()
    assert platform.calls == [("reset", kind, reason)]


@pytest.mark.parametrize("fid, reset_type, reason, code", [
    (0, 3, 0, sbi.SBI_ERR_INVALID_PARAM),                   # reserved type
    (0, 0xF000_0000, 0, sbi.SBI_ERR_INVALID_PARAM),         # vendor type: none known
    (0, 0, 1 << 32, sbi.SBI_ERR_INVALID_PARAM),             # reason is 32 bits
    (1, 0, 0, sbi.SBI_ERR_NOT_SUPPORTED),
])
def test_a_bad_system_reset_is_refused_and_the_machine_keeps_running(
        firmware, platform, fid, reset_type, reason, code) -> None:
    assert call(firmware, sbi.EXT_SRST, fid, reset_type, reason) == error(code)
    assert platform.calls == []


# -- DBCN ---------------------------------------------------------------------------

def test_console_write_sends_guest_memory_and_reports_the_count(firmware, platform) -> None:
    text = b"hello from S-mode\n"
    platform.memory.write(RAM_BASE + 0x100, text)
    assert call(firmware, sbi.EXT_DBCN, 0, len(text), RAM_BASE + 0x100, 0) == ok(len(text))
    assert platform.output == text


def test_console_write_may_be_partial_and_the_guest_retries(firmware, platform) -> None:
    size = sbi.DBCN_CHUNK + 100
    platform.memory.write(RAM_BASE, bytes(range(256)) * (size // 256 + 1))
    assert call(firmware, sbi.EXT_DBCN, 0, size, RAM_BASE, 0) == ok(sbi.DBCN_CHUNK)
    assert call(firmware, sbi.EXT_DBCN, 0, 100, RAM_BASE + sbi.DBCN_CHUNK, 0) == ok(100)
    assert bytes(platform.output) == platform.memory.read(RAM_BASE, size)


def test_console_read_takes_what_is_waiting_up_to_the_buffer_size() -> None:
    platform = RecordingPlatform(console_input=b"typed")
    firmware = SbiFirmware(platform)
    assert call(firmware, sbi.EXT_DBCN, 1, 3, RAM_BASE + 0x40, 0) == ok(3)
    assert platform.memory.read(RAM_BASE + 0x40, 3) == b"typ"
    assert call(firmware, sbi.EXT_DBCN, 1, 64, RAM_BASE + 0x80, 0) == ok(2)
    assert platform.memory.read(RAM_BASE + 0x80, 3) == b"ed\0"
    assert call(firmware, sbi.EXT_DBCN, 1, 64, RAM_BASE + 0x80, 0) == ok(0)   # nothing waiting


def test_a_refused_console_read_keeps_the_input_waiting() -> None:
    """A buffer that is not all RAM is refused before any input is taken, whether or not
    input is waiting; the bytes stay for the next, valid read."""
    platform = RecordingPlatform(console_input=b"keep")
    firmware = SbiFirmware(platform)
    for _ in range(2):
        assert call(firmware, sbi.EXT_DBCN, 1, 64, RAM_BASE + RAM_SIZE - 2, 0) == \
            error(sbi.SBI_ERR_INVALID_PARAM)
    assert call(firmware, sbi.EXT_DBCN, 1, 64, RAM_BASE, 0) == ok(4)
    assert platform.memory.read(RAM_BASE, 4) == b"keep"


def test_console_write_byte_writes_the_low_byte(firmware, platform) -> None:
    assert call(firmware, sbi.EXT_DBCN, 2, 0x1234_5641) == ok()
    assert platform.output == b"A"


@pytest.mark.parametrize("fid", [0, 1])
def test_console_buffers_outside_ram_or_above_64_bits_are_invalid(fid: int) -> None:
    platform = RecordingPlatform(console_input=bytes(64))   # a read has bytes to store
    firmware = SbiFirmware(platform)
    assert call(firmware, sbi.EXT_DBCN, fid, 16, 0x1000_0000, 0) == \
        error(sbi.SBI_ERR_INVALID_PARAM)                        # MMIO, not RAM
    assert call(firmware, sbi.EXT_DBCN, fid, 16, RAM_BASE + RAM_SIZE - 8, 0) == \
        error(sbi.SBI_ERR_INVALID_PARAM)                        # runs past the end
    assert call(firmware, sbi.EXT_DBCN, fid, 16, RAM_BASE, 1) == \
        error(sbi.SBI_ERR_INVALID_PARAM)                        # a1 holds all of it on RV64
    assert platform.output == b""


def test_dbcn_has_three_functions(firmware) -> None:
    assert call(firmware, sbi.EXT_DBCN, 3, 1, RAM_BASE, 0) == error(sbi.SBI_ERR_NOT_SUPPORTED)


# -- legacy (v0.1) ------------------------------------------------------------------

def legacy(firmware: SbiFirmware, eid: int, *args: int) -> SbiResult:
    result = call(firmware, eid, 0, *args)
    assert result.legacy, "a legacy call returns a0 only"
    return result


def test_legacy_putchar_and_getchar_are_the_console(platform) -> None:
    platform.input.extend(b"k")
    firmware = SbiFirmware(platform)
    assert legacy(firmware, sbi.LEGACY_PUTCHAR, ord("x")).error == 0
    assert legacy(firmware, sbi.LEGACY_PUTCHAR, 0x100 | ord("y")).error == 0
    assert platform.output == b"xy"
    assert legacy(firmware, sbi.LEGACY_GETCHAR).error == ord("k")
    assert legacy(firmware, sbi.LEGACY_GETCHAR).error == -1           # nothing waiting
    assert legacy(firmware, sbi.LEGACY_GETCHAR).registers() == {10: sbi.MASK64}


def test_legacy_timer_ipi_fences_and_shutdown(firmware, platform) -> None:
    for eid, args in [(sbi.LEGACY_SET_TIMER, (99,)), (sbi.LEGACY_SEND_IPI, (RAM_BASE,)),
                      (sbi.LEGACY_CLEAR_IPI, ()), (sbi.LEGACY_FENCE_I, (RAM_BASE,)),
                      (sbi.LEGACY_SFENCE_VMA, (RAM_BASE,)),
                      (sbi.LEGACY_SFENCE_VMA_ASID, (RAM_BASE,)), (sbi.LEGACY_SHUTDOWN, ())]:
        assert legacy(firmware, eid, *args).error == 0
    assert platform.calls == [("set_timer", 99), ("ssip", True), ("ssip", False),
                              ("flush_code",), ("flush_tlb",), ("flush_tlb",),
                              ("reset", "shutdown", sbi.RESET_REASON_NONE)]
