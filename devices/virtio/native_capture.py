"""`queue.chain_capture` in C (vmsim/native/chain_capture.c) for chains in Linux's
shape (one indirect table): the trace events' copy of a chain, made twice for every
traced request, in one call instead of Python's several reads or a walk of a 64 KiB
request's ~276 entries. The Python stays the reference (a differential test holds the
two to the same listing) and the fallback for other chains, when the library is not
built or the memory is not one host buffer.
"""
from __future__ import annotations

import ctypes
import struct
from typing import Callable

from vmsim.devices.virtio.native_table import native_function

# A chain as the C copy packs it: (PACKED, head, bytes); unpacked observer-side.
PACKED = "packed"

Capture = Callable[[int], "tuple | None"]


class _Context(ctypes.Structure):
    _fields_ = [("ram", ctypes.c_void_p), ("base", ctypes.c_uint64), ("size", ctypes.c_uint64),
                ("max_entries", ctypes.c_uint64), ("max_listed", ctypes.c_uint64),
                ("cap", ctypes.c_uint64), ("out", ctypes.c_void_p), ("out_size", ctypes.c_uint64),
                ("desc", ctypes.c_uint64)]


MAX_ENTRIES = 4096     # the longest table copied (chain_capture.c's MAX_TABLE)


def for_table(mem: object, desc_addr: int, max_listed: int, cap: int) -> Capture | None:
    """capture(head) for the descriptor table at `desc_addr` in `mem`'s host buffer:
    (PACKED, head, bytes), or None for a chain of another shape; None without the
    library, or for a memory that is not one host buffer (Ram's host_address). A table
    past `max_listed` + 1 entries is listed in part (queue._list_table), and only the
    listed buffers are copied. One Python call per copy: it runs on the CPU thread for
    every traced request."""
    function = native_function("vmsim_capture_table")
    address = getattr(mem, "host_address", None)
    if function is None or not isinstance(address, int):
        return None
    out = bytearray(16 + 16 * MAX_ENTRIES + MAX_ENTRIES * (1 + cap))
    out_address = ctypes.addressof(ctypes.c_char.from_buffer(out))
    context = _Context(address, mem.base, mem.size, MAX_ENTRIES,  # type: ignore[attr-defined]
                       max_listed, cap, out_address, len(out), desc_addr)
    # (context, int head) -> int: called without argtypes, as a byref (which holds the
    # context) and a small int need no conversion call: about half the cost of a call
    # with them, per traced request's pop and completion.
    pointer = ctypes.byref(context)

    def capture(head: int) -> tuple | None:
        count = function(pointer, head)
        return (PACKED, head, out[:count]) if count >= 0 else None
    return capture


def unpack(packed: tuple) -> tuple[int, int, int, int, bytes, tuple[bytes, ...]]:
    """(head, addr, length, flags, table, previews by table index) of a packed copy."""
    _, head, data = packed
    addr, length, flags = struct.unpack_from("<QIH", data)
    table = bytes(data[16:16 + length])
    previews, at = [], 16 + length
    for _ in range(length // 16):
        count = data[at]
        previews.append(bytes(data[at + 1:at + 1 + count]))
        at += 1 + count
    return head, addr, length, flags, table, tuple(previews)
