"""Little-endian field access and the one exception that carries a spec status.

Parsing code raises `RequestError(status, reason)` for anything a guest got wrong; the
device turns it into the status byte of that request. It never leaves the device.
"""
from __future__ import annotations

import struct
from typing import Protocol

from vmsim.devices.virtio.crypto.constants import Status


class RequestError(Exception):
    """A guest request that fails with a spec status code (never a device bug)."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = Status(status)
        self.reason = reason
        self.service: int | None = None   # set once the opcode is known


def fail(reason: str, status: Status = Status.ERR) -> RequestError:
    return RequestError(status, reason)


# Compiled once: formatting "<{count}I" and looking it up again costs more than the
# unpacking itself, and this runs a few times per request.
_U32S = tuple(struct.Struct(f"<{count}I") for count in range(32))
_U64 = struct.Struct("<Q")


def u32s(data: bytes, offset: int, count: int) -> tuple[int, ...]:
    """`count` little-endian u32 fields starting at `offset` (caller checked the length)."""
    layout = _U32S[count] if count < len(_U32S) else struct.Struct(f"<{count}I")
    return layout.unpack_from(data, offset)


def u64(data: bytes, offset: int) -> int:
    return _U64.unpack_from(data, offset)[0]


class ReadableChain(Protocol):
    readable_len: int

    def read(self, offset: int, size: int) -> bytes: ...


def check(chain: ReadableChain, offset: int, size: int, what: str) -> None:
    """Fail with ERR unless the chain holds `size` readable bytes at `offset`.

    Every length here comes from the guest, so it is checked against the bytes the
    descriptors really hold before anything is allocated (CVE-2020-14374/14376).
    """
    if size < 0 or offset < 0 or offset + size > chain.readable_len:
        raise fail(f"{what}: needs {size} bytes at {offset}, chain has {chain.readable_len}")


def take(chain: ReadableChain, offset: int, size: int, what: str) -> bytes:
    """Copy `size` device-readable bytes at `offset`, or fail with ERR if the chain is short."""
    check(chain, offset, size, what)
    if size == 0:
        return b""
    return chain.read(offset, size)


def take_fields(chain: ReadableChain, offset: int, sizes: list[int], what: str) -> list[bytes]:
    """Consecutive fields of the given sizes starting at `offset`, each copied once.

    The whole span is checked first, as `take` would; each field is then read on its
    own, usually straight from one descriptor, so nothing is copied twice.
    """
    check(chain, offset, sum(sizes), what)
    fields = []
    for size in sizes:
        fields.append(chain.read(offset, size) if size else b"")
        offset += size
    return fields


def split(data: bytes, sizes: list[int]) -> list[bytes]:
    """Cut one copied buffer into consecutive fields of the given sizes."""
    fields, pos = [], 0
    for size in sizes:
        fields.append(data[pos:pos + size])
        pos += size
    return fields
