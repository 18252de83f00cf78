"""The trap path on a real hart: what `TrapHandler` writes when it delivers an exception,
what it emulates instead, and when it gives up.

Each test puts an instruction in RAM, sets the hart up as Unicorn leaves it when its
hook runs (pc 4 past the instruction, or at it for ebreak), and calls the hook itself,
so no guest program or cross toolchain is needed. tests/machine/test_traps.py checks
the same paths from inside running guests.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from vmsim.core.cpu import PRIV_SUPERVISOR, PRIV_USER, Cpu
from vmsim.core.traps import TRAP_LOOP_LIMIT, TrapHandler
from vmsim.firmware.sbi import SbiCall, SbiResult

RAM_BASE, RAM_SIZE = 0x8000_0000, 1 << 20
STVEC = RAM_BASE + 0x4000
EPC = RAM_BASE + 0x200
UNMAPPED = 0x4000_0000            # no translation under enable_sv39
ROOT_TABLE = RAM_BASE + 0x10000
TICKS = 0x1234_5678_9ABC

SIE, SPIE, SPP = 1 << 1, 1 << 5, 1 << 8

# Encodings as the GNU assembler emits them (objdump of rv64imafdc_zicsr).
RDTIME_A0 = 0xC0102573            # csrr a0, time
RDCYCLE_A2 = 0xC0002673           # csrr a2, cycle
CSRR_A1_SENVCFG = 0x10A025F3      # csrr a1, senvcfg
CSRW_TIME_A0 = 0xC0151073         # csrw time, a0: the counter is read-only
LD_A0_8_A1 = 0x0085B503           # ld a0, 8(a1)
C_LD_A0_8_A1 = 0x6588             # c.ld a0, 8(a1)
SD_A0_16_A1 = 0x00A5B823          # sd a0, 16(a1)
AMOADD_D = 0x00C5B52F             # amoadd.d a0, a2, (a1)
EBREAK, C_EBREAK = 0x00100073, 0x9002
ECALL = 0x00000073

CAUSE_ILLEGAL, CAUSE_BREAKPOINT = 2, 3
CAUSE_ECALL = 8                   # Unicorn reports every ecall as 8, whatever PRIV
CAUSE_FETCH_PAGE, CAUSE_LOAD_PAGE, CAUSE_STORE_PAGE = 12, 13, 15


class FixedClock:
    """A GuestClock whose time stands still."""

    timebase_hz = 10_000_000

    def ticks(self) -> int:
        return TICKS


@dataclass
class RecordingFirmware:
    """Answers every SBI call with (0, 42) and records it."""

    calls: list[SbiCall] = field(default_factory=list)

    def handle(self, call: SbiCall) -> SbiResult:
        self.calls.append(call)
        return SbiResult(0, 42)


@dataclass
class Hart:
    cpu: Cpu
    traps: TrapHandler
    firmware: RecordingFirmware
    hook_entries: list[int]
    stops: list[int]

    def place(self, insn: int, address: int = EPC) -> None:
        size = 2 if insn & 0b11 != 0b11 else 4
        self.cpu.uc.mem_write(address, insn.to_bytes(size, "little"))

    def trap(self, cause: int, priv: int = PRIV_SUPERVISOR, epc: int = EPC) -> None:
        """An exception as Unicorn reports it: pc 4 past the instruction, any size."""
        self.cpu.priv = priv
        self.cpu.pc = epc + 4
        self.traps.on_exception(cause)

    def csrs(self) -> dict[str, int]:
        return {name: self.cpu.csr(name) for name in ("scause", "sepc", "stval")}


def make_hart(delegated: int = 0) -> Hart:
    cpu = Cpu()
    cpu.uc.mem_map(RAM_BASE, RAM_SIZE)
    cpu.priv = PRIV_SUPERVISOR
    cpu.set_csr("satp", 0)
    cpu.set_csr("stvec", STVEC)
    entries: list[int] = []
    stops: list[int] = []
    firmware = RecordingFirmware()
    traps = TrapHandler(cpu, firmware, FixedClock(), lambda: entries.append(1),  # type: ignore[arg-type]
                        lambda: stops.append(1), delegated)
    return Hart(cpu, traps, firmware, entries, stops)


@pytest.fixture
def hart() -> Hart:
    return make_hart()


def enable_sv39(cpu: Cpu) -> None:
    """Sv39 with one S-mode RWX gigapage mapping RAM at its own address; the
    gigapage below it (UNMAPPED) has no translation."""
    valid_rwx_accessed_dirty = 0xCF
    pte = (RAM_BASE >> 12) << 10 | valid_rwx_accessed_dirty
    cpu.uc.mem_write(ROOT_TABLE, bytes(4096))
    cpu.uc.mem_write(ROOT_TABLE + 8 * (RAM_BASE >> 30), pte.to_bytes(8, "little"))
    cpu.set_csr("satp", 8 << 60 | ROOT_TABLE >> 12)


# -- delivery -----------------------------------------------------------------------

def test_a_load_fault_in_s_mode_enters_stvec_with_the_trap_csrs(hart: Hart) -> None:
    hart.place(LD_A0_8_A1)
    hart.cpu.set_x(11, 0x4000_1000)
    hart.cpu.set_csr("sstatus", SIE)
    hart.trap(CAUSE_LOAD_PAGE)
    assert hart.csrs() == {"scause": CAUSE_LOAD_PAGE, "sepc": EPC, "stval": 0x4000_1008}
    sstatus = hart.cpu.csr("sstatus")
    assert (sstatus & SPP, sstatus & SPIE, sstatus & SIE) == (SPP, SPIE, 0)
    assert hart.cpu.pc == STVEC and hart.cpu.priv == PRIV_SUPERVISOR
    assert hart.hook_entries == [1] and hart.traps.fatal is None


def test_a_fault_in_u_mode_clears_spp_and_keeps_a_clear_sie_in_spie(hart: Hart) -> None:
    hart.place(C_LD_A0_8_A1)                     # 2 bytes, yet pc is still 4 past it
    hart.cpu.set_x(11, 0x10_0000)
    hart.cpu.set_csr("sstatus", SPP | SPIE)      # stale bits from an earlier trap
    hart.trap(CAUSE_LOAD_PAGE, priv=PRIV_USER)
    assert hart.csrs() == {"scause": CAUSE_LOAD_PAGE, "sepc": EPC, "stval": 0x10_0008}
    assert hart.cpu.csr("sstatus") & (SPP | SPIE | SIE) == 0
    assert hart.cpu.priv == PRIV_SUPERVISOR and hart.cpu.pc == STVEC


def test_vectored_stvec_still_sends_exceptions_to_its_base(hart: Hart) -> None:
    hart.cpu.set_csr("stvec", STVEC | 1)
    hart.place(SD_A0_16_A1)
    hart.cpu.set_x(11, 0x2000)
    hart.trap(CAUSE_STORE_PAGE, priv=PRIV_USER)
    assert hart.csrs() == {"scause": CAUSE_STORE_PAGE, "sepc": EPC, "stval": 0x2010}
    assert hart.cpu.pc == STVEC


def test_an_amo_that_faults_as_a_load_is_reported_as_a_store_fault(hart: Hart) -> None:
    hart.place(AMOADD_D)
    hart.cpu.set_x(11, 0x3000)
    hart.trap(CAUSE_LOAD_PAGE, priv=PRIV_USER)
    assert hart.csrs() == {"scause": CAUSE_STORE_PAGE, "sepc": EPC, "stval": 0x3000}


def test_a_fetch_fault_reports_the_page_that_could_not_be_fetched(hart: Hart) -> None:
    enable_sv39(hart.cpu)
    hart.trap(CAUSE_FETCH_PAGE, epc=UNMAPPED)
    assert hart.csrs() == {"scause": CAUSE_FETCH_PAGE, "sepc": UNMAPPED, "stval": UNMAPPED}
    straddling = RAM_BASE + 0x1FFE             # first half fetchable: the next page faulted
    hart.trap(CAUSE_FETCH_PAGE, epc=straddling)
    assert hart.csrs() == {"scause": CAUSE_FETCH_PAGE, "sepc": straddling,
                           "stval": RAM_BASE + 0x2000}


def test_a_u_mode_ecall_is_delivered_with_stval_0(hart: Hart) -> None:
    hart.place(ECALL)
    hart.cpu.set_csr("stval", 0xBAD)
    hart.trap(CAUSE_ECALL, priv=PRIV_USER)
    assert hart.csrs() == {"scause": CAUSE_ECALL, "sepc": EPC, "stval": 0}
    assert hart.firmware.calls == []


@pytest.mark.parametrize("insn", [EBREAK, C_EBREAK])
def test_ebreak_is_a_breakpoint_with_the_pc_in_stval(hart: Hart, insn: int) -> None:
    hart.place(insn)
    hart.cpu.pc = EPC                          # this hook runs with pc *at* the instruction
    assert hart.traps.on_invalid_instruction() is True
    assert hart.csrs() == {"scause": CAUSE_BREAKPOINT, "sepc": EPC, "stval": EPC}
    assert hart.cpu.pc == STVEC


# -- what the firmware does instead ---------------------------------------------------

def test_an_s_mode_ecall_is_an_sbi_call_answered_in_a0_a1(hart: Hart) -> None:
    for index, value in zip(range(10, 18), (1, 2, 3, 4, 5, 6, 0x10, 0x54494D45)):
        hart.cpu.set_x(index, value)
    hart.trap(CAUSE_ECALL, priv=PRIV_SUPERVISOR)
    assert hart.firmware.calls == [SbiCall(0x54494D45, 0x10, (1, 2, 3, 4, 5, 6))]
    assert (hart.cpu.x(10), hart.cpu.x(11)) == (0, 42)
    assert hart.cpu.pc == EPC + 4              # back to the next instruction, not stvec
    assert hart.cpu.csr("scause") == 0 and hart.traps.counts["sbi"] == 1


@pytest.mark.parametrize("insn, rd", [(RDTIME_A0, 10), (RDCYCLE_A2, 12)])
def test_a_counter_read_is_emulated_from_the_clock(hart: Hart, insn: int, rd: int) -> None:
    hart.place(insn)
    hart.trap(CAUSE_ILLEGAL)
    assert hart.cpu.x(rd) == TICKS
    assert hart.cpu.pc == EPC + 4 and hart.cpu.csr("scause") == 0
    assert hart.traps.counts["csr-emulation"] == 1


def test_senvcfg_reads_as_zero(hart: Hart) -> None:
    hart.place(CSRR_A1_SENVCFG)
    hart.cpu.set_x(11, 0xDEAD_BEEF)
    hart.trap(CAUSE_ILLEGAL)
    assert hart.cpu.x(11) == 0 and hart.cpu.pc == EPC + 4


def test_a_write_to_a_counter_is_an_illegal_instruction_for_the_guest(hart: Hart) -> None:
    hart.place(CSRW_TIME_A0)
    hart.trap(CAUSE_ILLEGAL, priv=PRIV_USER)
    assert hart.csrs() == {"scause": CAUSE_ILLEGAL, "sepc": EPC, "stval": CSRW_TIME_A0}
    assert hart.cpu.pc == STVEC


def test_a_delegated_illegal_instruction_goes_to_the_guest_unemulated() -> None:
    """With medeleg bit 2 set the kernel asked for every illegal instruction itself:
    even rdtime is delivered, not answered by the firmware."""
    hart = make_hart(delegated=1 << CAUSE_ILLEGAL)
    hart.place(RDTIME_A0)
    hart.cpu.set_x(10, 7)
    hart.trap(CAUSE_ILLEGAL, priv=PRIV_USER)
    assert hart.csrs() == {"scause": CAUSE_ILLEGAL, "sepc": EPC, "stval": RDTIME_A0}
    assert hart.cpu.x(10) == 7 and hart.cpu.pc == STVEC
    assert hart.traps.counts["csr-emulation"] == 0


# -- fatal --------------------------------------------------------------------------

def test_a_trap_without_stvec_is_fatal_and_stops_the_run(hart: Hart) -> None:
    hart.cpu.set_csr("stvec", 0)
    hart.place(LD_A0_8_A1)
    hart.trap(CAUSE_LOAD_PAGE, priv=PRIV_USER)
    assert hart.traps.fatal is not None and hart.stops == [1]
    assert "stvec = 0" in str(hart.traps.fatal) and f"pc {EPC:#x}" in str(hart.traps.fatal)
    assert "sepc=" in hart.traps.fatal.register_dump  # type: ignore[attr-defined]
    assert hart.cpu.priv == PRIV_USER and hart.cpu.pc == EPC + 4     # nothing delivered
    assert hart.cpu.csr("scause") == 0


def test_the_same_trap_over_and_over_is_a_trap_loop(hart: Hart) -> None:
    hart.place(LD_A0_8_A1)
    hart.cpu.set_x(11, 0x5000)
    for _ in range(TRAP_LOOP_LIMIT):            # the first and then LIMIT-1 repeats
        hart.trap(CAUSE_LOAD_PAGE, priv=PRIV_USER)
    assert hart.traps.fatal is None
    hart.cpu.set_x(11, 0x6000)                  # another address: not a repeat
    hart.trap(CAUSE_LOAD_PAGE, priv=PRIV_USER)
    hart.cpu.set_x(11, 0x5000)
    for _ in range(TRAP_LOOP_LIMIT):
        hart.trap(CAUSE_LOAD_PAGE, priv=PRIV_USER)
    assert hart.traps.fatal is None and hart.stops == []
    hart.trap(CAUSE_LOAD_PAGE, priv=PRIV_USER)  # one more identical one
    assert hart.traps.fatal is not None and hart.stops == [1]
    assert f"trap loop ({TRAP_LOOP_LIMIT} identical traps" in str(hart.traps.fatal)
