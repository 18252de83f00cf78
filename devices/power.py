"""Power control with SiFive "test" device semantics, as on QEMU `virt` at 0x100000.

Linux reaches it through syscon-poweroff/syscon-reboot, and a guest init can write an
exit code to it directly. Because QEMU's sifive-test decodes the same values, a guest
reports its result identically under QEMU and vmsim.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


FINISHER_FAIL = 0x3333
FINISHER_PASS = 0x5555
FINISHER_RESET = 0x7777


@dataclass(frozen=True)
class PowerRequest:
    """What the guest asked for: kind is "poweroff", "reset" or "fail"; code is its exit code."""

    kind: str
    code: int


class PowerControl:
    """An MmioDevice: a 32-bit write at offset 0 requests poweroff, reset or failure."""

    def __init__(self, on_request: Callable[[PowerRequest], None]) -> None:
        self._on_request = on_request

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset != 0 or size != 4:
            return
        request = decode_request(value)
        if request is not None:
            self._on_request(request)


def decode_request(value: int) -> PowerRequest | None:
    """The request a 32-bit write encodes, or None for values the device ignores."""
    value &= 0xFFFF_FFFF
    command, code = value & 0xFFFF, value >> 16
    # Like QEMU, the upper half only matters for a failure.
    if command == FINISHER_PASS:
        return PowerRequest("poweroff", 0)
    if command == FINISHER_RESET:
        return PowerRequest("reset", 0)
    if command == FINISHER_FAIL:
        return PowerRequest("fail", code)
    return None
