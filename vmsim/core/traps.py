"""Synchronous traps: Unicorn reports them, vmsim delivers them (docs/engine.md, E1).

Stock Unicorn never enters the guest's trap handler itself. Every exception reaches a
hook with pc already 4 past the faulting instruction, and this module plays both the
hardware and the M-mode firmware:
- an S-mode ecall is an SBI call, answered in Python;
- an illegal instruction that reads a counter CSR (`time`) is emulated (E4);
- everything else is delivered to the S-mode handler at stvec, with the stval that
  Unicorn does not compute (decoded from the faulting instruction).
A trap the guest cannot take (stvec = 0, the same fault over and over) is fatal.

The patched engine takes every exception the boot stub delegated (page faults, system
calls, breakpoints, misaligned accesses) itself, and answers SBI set_timer itself
(docs/engine.md, P7 and P8). Only the firmware's work reaches this module there: the
other SBI calls, illegal instructions, and the traps that end in a guest death.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

from vmsim.firmware.sbi import SbiCall, SbiFirmware
from vmsim.core.clock import GuestClock
from vmsim.core.cpu import PRIV_MACHINE, PRIV_SUPERVISOR, PRIV_USER, Cpu
from vmsim.core.decode import decode_csr, decode_memory_access, is_ebreak
from vmsim.errors import GuestError

CAUSE_NAMES = {
    0: "instruction address misaligned", 1: "instruction access fault",
    2: "illegal instruction", 3: "breakpoint", 4: "load address misaligned",
    5: "load access fault", 6: "store/AMO address misaligned", 7: "store/AMO access fault",
    8: "ecall from U-mode", 9: "ecall from S-mode", 12: "instruction page fault",
    13: "load page fault", 15: "store/AMO page fault",
}
ILLEGAL_INSTRUCTION, BREAKPOINT, ECALL = 2, 3, 8
REPEATABLE_CAUSES = {BREAKPOINT, ECALL}     # programs repeat these: never a trap loop
FETCH_CAUSES = {0, 1, 12}
DATA_CAUSES = {4, 5, 6, 7, 13, 15}
LOAD_TO_STORE_CAUSE = {4: 6, 5: 7, 13: 15}

COUNTER_CSRS = {0xC00, 0xC01, 0xC02}     # cycle, time, instret: all read the timebase
ZERO_CSRS = {0x10A}                      # senvcfg: absent in the engine, reads as 0
SSTATUS_SIE, SSTATUS_SPIE, SSTATUS_SPP = 1 << 1, 1 << 5, 1 << 8
TRAP_LOOP_LIMIT = 1000
PAGE = 0x1000


class TrapHandler:
    """The exception hooks of one hart.

    `before_return` runs at every hook entry so pending interrupts (a due timer) are
    raised as soon as the guest traps for any reason. `stop` asks the run loop to end
    the current run (used when the guest dies). After a fatal trap, `fatal` holds the
    GuestError the run loop raises.
    """

    def __init__(self, cpu: Cpu, firmware: SbiFirmware, clock: GuestClock,
                 before_return: Callable[[], None], stop: Callable[[], None],
                 delegated: int) -> None:
        self.cpu = cpu
        self.firmware = firmware
        self.clock = clock
        self.delegated = delegated
        self._before_return = before_return
        self._stop = stop
        self.fatal: GuestError | None = None
        self.counts: Counter[str] = Counter()
        self._last_trap: tuple[int, int, int] | None = None
        self._repeats = 0

    def install(self) -> None:
        """Hook the engine; where the engine keeps the SBI timer itself, let it, and let
        the idle wait see its deadline (vmsim.core.clock)."""
        self.cpu.on_exception(self.on_exception)
        self.cpu.on_invalid_instruction(self.on_invalid_instruction)
        if self.cpu.enable_native_timer():
            self.clock.native_deadline = self.cpu.native_timer_deadline

    def native_counts(self) -> Counter[str]:
        """The exceptions the patched engine delivered itself, by name, and the SBI
        timer calls it answered (`counts` has what reached this handler)."""
        cpu = self.cpu
        counts: Counter[str] = Counter()
        if cpu.native_features:
            for cause, name in CAUSE_NAMES.items():
                if number := cpu.native_trap_count(cause):
                    counts[name] = number
            sets, fires = cpu.native_timer_counts()
            if sets:
                counts["sbi set_timer"] = sets
            if fires:
                counts["timer interrupt"] = fires
        return counts

    # -- hooks ---------------------------------------------------------------------

    def on_exception(self, cause: int) -> None:
        """UC_HOOK_INTR: pc is 4 past the faulting instruction, even a 2-byte one.

        Instructions are read, and addresses translated, at the faulting privilege;
        only `_deliver` raises PRIV to M for the CSR writes.
        """
        cpu = self.cpu
        epc = cpu.pc - 4
        priv = cpu.priv
        self._before_return()
        if cause == ECALL and priv == PRIV_SUPERVISOR:
            self._sbi_call()
        elif cause == ILLEGAL_INSTRUCTION:
            insn = cpu.read_instruction(epc)
            if self._is_delegated(cause) or insn is None or not self._emulate_csr(insn):
                self._deliver(cause, epc, insn or 0, priv)
        elif cause in FETCH_CAUSES:
            self._deliver(cause, epc, self._fetch_fault_address(epc), priv)
        elif cause in DATA_CAUSES:
            self._deliver(*self._data_fault(cause, epc), priv)
        else:
            self._deliver(cause, epc, 0, priv)

    def on_invalid_instruction(self) -> bool:
        """UC_HOOK_INSN_INVALID: ebreak lands here with pc *at* the instruction."""
        cpu = self.cpu
        epc = cpu.pc
        priv = cpu.priv
        self._before_return()
        insn = cpu.read_instruction(epc)
        if insn is not None and is_ebreak(insn):
            self._deliver(BREAKPOINT, epc, epc, priv)
        else:
            self._deliver(ILLEGAL_INSTRUCTION, epc, insn or 0, priv)
        return True

    # -- firmware paths ------------------------------------------------------------

    def _sbi_call(self) -> None:
        cpu = self.cpu
        call = SbiCall.from_registers([cpu.x(i) for i in range(10, 18)])
        self.counts["sbi"] += 1
        for index, value in self.firmware.handle(call).registers().items():
            cpu.set_x(index, value)
        self._last_trap = None

    def _emulate_csr(self, insn: int) -> bool:
        """Emulate a read of a CSR the engine lacks; pc is already past it."""
        csr = decode_csr(insn)
        if csr is None:
            return False
        if csr.csr in COUNTER_CSRS and not csr.writes:
            self.cpu.set_x(csr.rd, self.clock.ticks())
        elif csr.csr in ZERO_CSRS:
            self.cpu.set_x(csr.rd, 0)
        else:
            return False
        self.counts["csr-emulation"] += 1
        return True

    def _is_delegated(self, cause: int) -> bool:
        return bool(self.delegated >> cause & 1)

    # -- stval ---------------------------------------------------------------------

    def _fetch_fault_address(self, epc: int) -> int:
        """epc, or the next page when only the instruction's second half faulted."""
        if self.cpu.is_fetchable(epc):
            return (epc | (PAGE - 1)) + 1
        return epc

    def _data_fault(self, cause: int, epc: int) -> tuple[int, int, int]:
        """(cause, epc, stval) of a load/store/AMO fault.

        The engine runs an AMO as a load then a store, so an AMO can fault as a load;
        the ISA says AMOs raise store/AMO faults, and Linux relies on it (a store fault
        is what makes it map the page writable; docs/engine.md, E18).
        """
        insn = self.cpu.read_instruction(epc)
        access = decode_memory_access(insn) if insn is not None else None
        if access is None:
            return cause, epc, 0
        if access.store and cause in LOAD_TO_STORE_CAUSE:
            cause = LOAD_TO_STORE_CAUSE[cause]
        return cause, epc, access.address(self.cpu.x(access.base))

    # -- delivery ------------------------------------------------------------------

    def _deliver(self, cause: int, epc: int, tval: int, priv: int) -> None:
        """Enter the S-mode handler as the hardware would; pc is written last."""
        cpu = self.cpu
        self.counts[CAUSE_NAMES.get(cause, f"cause {cause}")] += 1
        # S-level CSRs are unreachable from U through the engine (docs/engine.md, E2): work at M.
        cpu.priv = PRIV_MACHINE
        stvec = cpu.csr("stvec")
        problem = self._why_undeliverable(cause, epc, tval, stvec)
        if problem:
            cpu.priv = priv
            self._die(problem, cause, epc, tval)
            return
        old = cpu.csr("sstatus")
        sstatus = old & ~(SSTATUS_SPP | SSTATUS_SPIE | SSTATUS_SIE)
        if old & SSTATUS_SIE:
            sstatus |= SSTATUS_SPIE
        if priv != PRIV_USER:
            sstatus |= SSTATUS_SPP
        cpu.set_csr("sstatus", sstatus)
        cpu.set_csr("scause", cause)
        cpu.set_csr("sepc", epc)
        cpu.set_csr("stval", tval)
        cpu.priv = PRIV_SUPERVISOR
        cpu.pc = stvec & ~0b11                   # exceptions use the base in both modes

    def _why_undeliverable(self, cause: int, epc: int, tval: int, stvec: int) -> str:
        if (stvec & ~0b11) == 0:
            return "trap with no handler (stvec = 0)"
        if cause in REPEATABLE_CAUSES:
            self._last_trap = None
            return ""
        key = (cause, epc, tval)
        self._repeats = self._repeats + 1 if key == self._last_trap else 0
        self._last_trap = key
        # The patched engine counts the faults it delivers and hands one to this hook
        # only once it has seen it TRAP_LOOP_LIMIT times in a row (docs/engine.md, P7).
        if max(self._repeats, self.cpu.native_trap_repeats()) >= TRAP_LOOP_LIMIT:
            return f"trap loop ({TRAP_LOOP_LIMIT} identical traps in a row)"
        return ""

    def _die(self, problem: str, cause: int, epc: int, tval: int) -> None:
        name = CAUSE_NAMES.get(cause, "unknown")
        self.fatal = guest_error(
            f"guest died: {problem}: cause {cause} ({name}) at pc {epc:#x}, stval {tval:#x}",
            self.cpu)
        self._stop()


def guest_error(message: str, cpu: Cpu) -> GuestError:
    """A one-line GuestError that also carries the full register dump."""
    error = GuestError(message)
    error.register_dump = cpu.register_dump()   # type: ignore[attr-defined]
    return error
