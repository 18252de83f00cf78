"""The SBI implementation: vmsim's M-mode firmware, in Python.

The kernel runs in S-mode and makes SBI calls with `ecall`; the machine turns each
into an `SbiCall` (a0-a7), asks `SbiFirmware.handle`, and writes the `SbiResult` back.
The firmware never sees the CPU engine: what it needs from the machine is the small
`SbiPlatform` interface, so it is tested against a plain recording platform.

Implemented: BASE, TIME, IPI, RFENCE, HSM (one hart), SRST, DBCN, and the legacy
(v0.1) set_timer / console / IPI / fence / shutdown calls Linux's earlycon and hvc0 use.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from vmsim.devices.bus import GuestMemory, GuestMemoryError

SPEC_VERSION = (2 << 24) | 0        # SBI 2.0 (for DBCN)
IMPL_ID = 0x766D                    # "vm": not a registered implementation id
IMPL_VERSION = 1

SBI_SUCCESS = 0
SBI_ERR_FAILED = -1
SBI_ERR_NOT_SUPPORTED = -2
SBI_ERR_INVALID_PARAM = -3
SBI_ERR_INVALID_ADDRESS = -5
SBI_ERR_ALREADY_AVAILABLE = -6

EXT_BASE, EXT_TIME, EXT_IPI, EXT_RFENCE = 0x10, 0x54494D45, 0x735049, 0x52464E43
EXT_HSM, EXT_SRST, EXT_DBCN = 0x48534D, 0x53525354, 0x4442434E
LEGACY_SET_TIMER, LEGACY_PUTCHAR, LEGACY_GETCHAR = 0, 1, 2
LEGACY_CLEAR_IPI, LEGACY_SEND_IPI, LEGACY_FENCE_I = 3, 4, 5
LEGACY_SFENCE_VMA, LEGACY_SFENCE_VMA_ASID, LEGACY_SHUTDOWN = 6, 7, 8

HART_ID = 0
HSM_STARTED = 0
RESET_TYPES = {0: "shutdown", 1: "cold_reboot", 2: "warm_reboot"}
RESET_REASON_NONE, RESET_REASON_SYSTEM_FAILURE = 0, 1
MASK64 = (1 << 64) - 1
DBCN_CHUNK = 4096


@dataclass(frozen=True)
class SbiCall:
    """An ecall from S-mode: extension in a7, function in a6, arguments in a0-a5."""

    eid: int
    fid: int
    args: tuple[int, int, int, int, int, int]

    @classmethod
    def from_registers(cls, a: list[int]) -> SbiCall:
        """From a0..a7 in order."""
        return cls(eid=a[7], fid=a[6], args=(a[0], a[1], a[2], a[3], a[4], a[5]))


@dataclass(frozen=True)
class SbiResult:
    """What goes back: a0 = error, a1 = value; a legacy call returns only a0."""

    error: int
    value: int = 0
    legacy: bool = False

    def registers(self) -> dict[int, int]:
        """x-register index -> value to write (a0 = x10, a1 = x11)."""
        if self.legacy:
            return {10: self.error & MASK64}
        return {10: self.error & MASK64, 11: self.value & MASK64}


class SbiPlatform(Protocol):
    """What the firmware needs from the machine."""

    memory: GuestMemory

    def console_write(self, data: bytes) -> None: ...

    def console_read(self) -> int:
        """One input byte, or -1 when none is waiting."""
        ...

    def set_timer(self, deadline: int) -> None:
        """Program the timer deadline (timebase ticks) and clear STIP until then."""
        ...

    def set_software_interrupt(self, pending: bool) -> None: ...

    def flush_tlb(self) -> None: ...

    def flush_code(self) -> None: ...

    def system_reset(self, kind: str, reason: int) -> None:
        """kind: "shutdown" | "cold_reboot" | "warm_reboot"; stop the machine."""
        ...


Handler = Callable[[SbiCall], SbiResult]


def _ok(value: int = 0) -> SbiResult:
    return SbiResult(SBI_SUCCESS, value)


def _error(code: int) -> SbiResult:
    return SbiResult(code)


class SbiFirmware:
    """Dispatches SBI calls for a single-hart machine."""

    def __init__(self, platform: SbiPlatform) -> None:
        self.platform = platform
        self._extensions: dict[int, Handler] = {
            EXT_BASE: self._base, EXT_TIME: self._time, EXT_IPI: self._ipi,
            EXT_RFENCE: self._rfence, EXT_HSM: self._hsm, EXT_SRST: self._srst,
            EXT_DBCN: self._dbcn,
        }
        self._legacy: dict[int, Callable[[SbiCall], int]] = {
            LEGACY_SET_TIMER: self._legacy_set_timer, LEGACY_PUTCHAR: self._legacy_putchar,
            LEGACY_GETCHAR: lambda call: self.platform.console_read(),
            LEGACY_CLEAR_IPI: self._legacy_clear_ipi, LEGACY_SEND_IPI: self._legacy_send_ipi,
            LEGACY_FENCE_I: self._legacy_fence_i, LEGACY_SFENCE_VMA: self._legacy_sfence,
            LEGACY_SFENCE_VMA_ASID: self._legacy_sfence, LEGACY_SHUTDOWN: self._legacy_shutdown,
        }

    def handle(self, call: SbiCall) -> SbiResult:
        """Answer one call; an unknown extension or function gives NOT_SUPPORTED."""
        if call.eid in self._legacy:
            return SbiResult(self._legacy[call.eid](call), legacy=True)
        handler = self._extensions.get(call.eid)
        if handler is None:
            return _error(SBI_ERR_NOT_SUPPORTED)
        return handler(call)

    def supports(self, eid: int) -> bool:
        return eid in self._extensions or eid in self._legacy

    # -- BASE --------------------------------------------------------------------

    def _base(self, call: SbiCall) -> SbiResult:
        values = {0: SPEC_VERSION, 1: IMPL_ID, 2: IMPL_VERSION,
                  4: 0, 5: 0, 6: 0}             # mvendorid, marchid, mimpid
        if call.fid == 3:                       # probe_extension
            return _ok(int(self.supports(call.args[0])))
        if call.fid in values:
            return _ok(values[call.fid])
        return _error(SBI_ERR_NOT_SUPPORTED)

    # -- TIME, IPI, RFENCE -------------------------------------------------------

    def _time(self, call: SbiCall) -> SbiResult:
        if call.fid != 0:
            return _error(SBI_ERR_NOT_SUPPORTED)
        self.platform.set_timer(call.args[0])
        return _ok()

    @staticmethod
    def _targets_hart(mask: int, base: int) -> bool | None:
        """Whether (hart_mask, hart_mask_base) selects hart 0; None if it names a hart
        that does not exist."""
        if base == MASK64:                      # -1: every hart
            return True
        if base > HART_ID:
            return None if mask else False
        bit = HART_ID - base
        if mask >> (bit + 1):
            return None
        return bool(mask >> bit & 1)

    def _ipi(self, call: SbiCall) -> SbiResult:
        if call.fid != 0:
            return _error(SBI_ERR_NOT_SUPPORTED)
        target = self._targets_hart(call.args[0], call.args[1])
        if target is None:
            return _error(SBI_ERR_INVALID_PARAM)
        if target:
            self.platform.set_software_interrupt(True)
        return _ok()

    def _rfence(self, call: SbiCall) -> SbiResult:
        if call.fid > 6:
            return _error(SBI_ERR_NOT_SUPPORTED)
        if call.fid >= 3:                       # hypervisor fences: no H extension
            return _error(SBI_ERR_NOT_SUPPORTED)
        target = self._targets_hart(call.args[0], call.args[1])
        if target is None:
            return _error(SBI_ERR_INVALID_PARAM)
        if target:
            self.platform.flush_code() if call.fid == 0 else self.platform.flush_tlb()
        return _ok()

    # -- HSM ---------------------------------------------------------------------

    def _hsm(self, call: SbiCall) -> SbiResult:
        hartid = call.args[0]
        if call.fid == 0:                       # hart_start: hart 0 is already running
            return _error(SBI_ERR_ALREADY_AVAILABLE if hartid == HART_ID
                          else SBI_ERR_INVALID_PARAM)
        if call.fid == 2:                       # hart_get_status
            return _ok(HSM_STARTED) if hartid == HART_ID else _error(SBI_ERR_INVALID_PARAM)
        if call.fid == 1:                       # hart_stop: the last hart may not stop
            return _error(SBI_ERR_FAILED)
        return _error(SBI_ERR_NOT_SUPPORTED)     # hart_suspend

    # -- SRST --------------------------------------------------------------------

    def _srst(self, call: SbiCall) -> SbiResult:
        if call.fid != 0:
            return _error(SBI_ERR_NOT_SUPPORTED)
        kind = RESET_TYPES.get(call.args[0])
        reason = call.args[1]
        if kind is None or reason > 0xFFFF_FFFF:
            return _error(SBI_ERR_INVALID_PARAM)
        self.platform.system_reset(kind, reason)
        return _ok()

    # -- DBCN --------------------------------------------------------------------

    def _dbcn(self, call: SbiCall) -> SbiResult:
        count, address, address_high = call.args[0], call.args[1], call.args[2]
        if call.fid == 2:                       # console_write_byte
            self.platform.console_write(bytes([call.args[0] & 0xFF]))
            return _ok()
        if call.fid not in (0, 1):
            return _error(SBI_ERR_NOT_SUPPORTED)
        if address_high:                        # RV64: the whole address is in a1
            return _error(SBI_ERR_INVALID_PARAM)
        try:
            if call.fid == 0:
                # The spec lets a call write fewer bytes; the guest retries the rest.
                data = self.platform.memory.read(address, min(count, DBCN_CHUNK))
                self.platform.console_write(data)
                return _ok(len(data))
            # The whole buffer must be RAM before any input is taken: input consumed
            # and then refused would be lost.
            if not self.platform.memory.contains(address, min(count, DBCN_CHUNK)):
                return _error(SBI_ERR_INVALID_PARAM)
            received = bytearray()
            while len(received) < min(count, DBCN_CHUNK):
                byte = self.platform.console_read()
                if byte < 0:
                    break
                received.append(byte)
            self.platform.memory.write(address, bytes(received))
            return _ok(len(received))
        except GuestMemoryError:
            return _error(SBI_ERR_INVALID_PARAM)

    # -- legacy (v0.1): return value in a0 only ----------------------------------

    def _legacy_set_timer(self, call: SbiCall) -> int:
        self.platform.set_timer(call.args[0])
        return 0

    def _legacy_putchar(self, call: SbiCall) -> int:
        self.platform.console_write(bytes([call.args[0] & 0xFF]))
        return 0

    def _legacy_clear_ipi(self, call: SbiCall) -> int:
        self.platform.set_software_interrupt(False)
        return 0

    def _legacy_send_ipi(self, call: SbiCall) -> int:
        # The mask is a pointer into S-mode virtual memory; with one hart the only
        # possible target is ourselves.
        self.platform.set_software_interrupt(True)
        return 0

    def _legacy_fence_i(self, call: SbiCall) -> int:
        self.platform.flush_code()
        return 0

    def _legacy_sfence(self, call: SbiCall) -> int:
        self.platform.flush_tlb()
        return 0

    def _legacy_shutdown(self, call: SbiCall) -> int:
        self.platform.system_reset("shutdown", RESET_REASON_NONE)
        return 0
