"""PSCI 1.0 for one CPU, in Python: the firmware interface arm64 Linux calls with `hvc #0`.

Unicorn's own PSCI is a stub, so the machine hands each HVC to `psci_call` with x0 (the
function ID) and x1-x3, writes the returned `x0` back and resumes after the HVC. The
call is a pure function: what the machine must do besides writing x0 (power off, reset,
wait for an interrupt) comes back in the result, so it is tested without an engine.

Implemented: PSCI_VERSION, PSCI_FEATURES, CPU_SUSPEND (standby only, as a WFI, the way
QEMU does it), CPU_OFF and CPU_ON (one CPU: DENIED and ALREADY_ON), AFFINITY_INFO,
MIGRATE_INFO_TYPE (2: no Trusted OS, nothing to migrate), SYSTEM_OFF and SYSTEM_RESET
(as the same PowerRequest the riscv board's power device gives). Every other function ID,
in the PSCI range or not (SMCCC_VERSION included, as on QEMU 7.2), is NOT_SUPPORTED.
"""
from __future__ import annotations

from dataclasses import dataclass

from vmsim.devices.power import PowerRequest

VERSION_1_0 = 1 << 16

SMC64 = 0x4000_0000                    # the 64-bit calling convention's bit in an ID
PSCI_VERSION = 0x8400_0000
CPU_SUSPEND = 0x8400_0001
CPU_OFF = 0x8400_0002
CPU_ON = 0x8400_0003
AFFINITY_INFO = 0x8400_0004
MIGRATE = 0x8400_0005
MIGRATE_INFO_TYPE = 0x8400_0006
MIGRATE_INFO_UP_CPU = 0x8400_0007
SYSTEM_OFF = 0x8400_0008
SYSTEM_RESET = 0x8400_0009
PSCI_FEATURES = 0x8400_000A

SUCCESS = 0
NOT_SUPPORTED = -1
INVALID_PARAMETERS = -2
DENIED = -3
ALREADY_ON = -4

AFFINITY_ON = 0
MIGRATE_NOT_NEEDED = 2                 # MIGRATE_INFO_TYPE: no Trusted OS
CPU_SUSPEND_POWERDOWN = 1 << 16        # power_state.StateType, original format
CPU_SUSPEND_RESERVED = 0xFCFE_0000    # original format: all but StateID, StateType, PowerLevel

# The only CPU: MPIDR affinity 0.0.0.0.
AFFINITY_FIELDS = ((0, 0xFF), (8, 0xFF), (16, 0xFF), (32, 0xFF))
MAX_AFFINITY_LEVEL = len(AFFINITY_FIELDS) - 1

MASK32 = 0xFFFF_FFFF
MASK64 = (1 << 64) - 1

# Functions with both an SMC32 and an SMC64 ID (the rest take no address-sized argument).
_BOTH_WIDTHS = frozenset({CPU_SUSPEND, CPU_ON, AFFINITY_INFO, MIGRATE, MIGRATE_INFO_UP_CPU})
_IMPLEMENTED = frozenset({PSCI_VERSION, CPU_SUSPEND, CPU_OFF, CPU_ON, AFFINITY_INFO,
                          MIGRATE_INFO_TYPE, SYSTEM_OFF, SYSTEM_RESET, PSCI_FEATURES})


@dataclass(frozen=True)
class PsciResult:
    """What the machine does after the call: write `x0`, and then, if set, act on
    `power` (end the run) or `standby` (wait for an interrupt as WFI does)."""

    x0: int
    power: PowerRequest | None = None
    standby: bool = False


def _result(code: int) -> PsciResult:
    return PsciResult(code & MASK64)


def _function(function_id: int) -> tuple[int, bool] | None:
    """(the SMC32 ID of the function, whether it was called as SMC64), or None for an
    ID outside PSCI's ranges or an SMC64 ID of a function that has none."""
    function_id &= MASK32
    if function_id & SMC64:
        base = function_id & ~SMC64
        return (base, True) if base in _BOTH_WIDTHS else None
    return (function_id, False) if PSCI_VERSION <= function_id <= 0x8400_001F else None


def psci_call(function_id: int, args: tuple[int, int, int] = (0, 0, 0)) -> PsciResult:
    """Answer the call in x0 with x1-x3 as `args`."""
    function = _function(function_id)
    if function is None:
        return _result(NOT_SUPPORTED)
    base, smc64 = function
    if not smc64:
        args = (args[0] & MASK32, args[1] & MASK32, args[2] & MASK32)
    if base == PSCI_VERSION:
        return _result(VERSION_1_0)
    if base == PSCI_FEATURES:
        return _result(_features(args[0]))
    if base == MIGRATE_INFO_TYPE:
        return _result(MIGRATE_NOT_NEEDED)
    if base == SYSTEM_OFF:
        return PsciResult(SUCCESS, power=PowerRequest("poweroff", 0))
    if base == SYSTEM_RESET:
        return PsciResult(SUCCESS, power=PowerRequest("reset", 0))
    if base == CPU_SUSPEND:
        return _cpu_suspend(args[0])
    if base == CPU_ON:
        return _result(ALREADY_ON if _is_this_cpu(args[0], 0) else INVALID_PARAMETERS)
    if base == CPU_OFF:
        return _result(DENIED)         # the last CPU may not go off: nothing would run
    if base == AFFINITY_INFO:
        level = args[1]
        if level > MAX_AFFINITY_LEVEL:
            return _result(INVALID_PARAMETERS)
        return _result(AFFINITY_ON if _is_this_cpu(args[0], level) else INVALID_PARAMETERS)
    return _result(NOT_SUPPORTED)


def _features(queried_id: int) -> int:
    """PSCI_FEATURES: 0 (or CPU_SUSPEND's flags, 0: the original power_state format,
    no OS-initiated mode) for what is implemented."""
    function = _function(queried_id)
    if function is None or function[0] not in _IMPLEMENTED:
        return NOT_SUPPORTED
    return SUCCESS


def _cpu_suspend(power_state: int) -> PsciResult:
    if power_state & MASK32 & CPU_SUSPEND_RESERVED:
        return _result(INVALID_PARAMETERS)
    # A power-down state would need the entry point in x2; like QEMU, every state is
    # a standby here, which returns SUCCESS after the wake-up.
    return PsciResult(SUCCESS, standby=True)


def _is_this_cpu(mpidr: int, lowest_level: int) -> bool:
    """Whether MPIDR affinity `mpidr`, ignoring the levels below `lowest_level`, names
    the one CPU (all affinity fields 0)."""
    return all(mpidr >> shift & mask == 0
               for level, (shift, mask) in enumerate(AFFINITY_FIELDS) if level >= lowest_level)
