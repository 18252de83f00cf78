"""`SplitQueue._walk` in C (vmsim/native/chain_walk.c) for chains that break no rule:
every request's chain is walked on the CPU thread, and in Python a 16-byte request's
five descriptors took about a thirteenth of the whole request once the guest had run.
The Python walk stays the reference (a differential test holds the two to the same
chains) and runs whenever the C walk declines: for a chain that breaks a rule, so that
its ChainError says which; for one longer than MAX_SEGMENTS; without the library; or
for a memory that is not one host buffer.
"""
from __future__ import annotations

import ctypes
import struct
from array import array
from typing import Callable, Sequence

from vmsim.devices.virtio.native_table import native_function

MAX_SEGMENTS = 4096        # a 64 KiB AF_ALG request has ~276; longer chains go to Python
_SHAPE = struct.Struct("<5Q")   # chain_walk.c's shape: readable, descriptors, indirect,
                                # readable_len, writable_len

# walk(head) -> (addrs, lengths, readable_count, descriptor_count, indirect,
# readable_len, writable_len): DescriptorChain's arguments after the head; or None.
Walk = Callable[[int], "tuple[Sequence[int], Sequence[int], int, int, bool, int, int] | None"]


class _Context(ctypes.Structure):
    _fields_ = [("ram", ctypes.c_void_p), ("base", ctypes.c_uint64), ("size", ctypes.c_uint64),
                ("desc", ctypes.c_uint64), ("queue_size", ctypes.c_uint64),
                ("indirect", ctypes.c_uint64), ("cap", ctypes.c_uint64),
                ("addrs", ctypes.c_void_p), ("lengths", ctypes.c_void_p),
                ("shape", ctypes.c_void_p)]


def for_queue(mem: object, desc_addr: int, queue_size: int, indirect: bool,
              cap: int = MAX_SEGMENTS) -> Walk | None:
    """walk(head) for the descriptor table of `queue_size` entries at `desc_addr`, which
    must lie in `mem`: None without the library, for a memory that is not one host
    buffer (Ram's host_address), or for a table not in it. The segments come as private
    arrays (later guest writes cannot change them)."""
    function = native_function("vmsim_walk_chain")
    address = getattr(mem, "host_address", None)
    contains = getattr(mem, "contains", None)
    if (function is None or not isinstance(address, int) or contains is None
            or not contains(desc_addr, 16 * queue_size)):
        return None
    addrs, lengths = array("Q", bytes(8 * cap)), array("I", bytes(4 * cap))
    shape = bytearray(_SHAPE.size)
    context = _Context(address, mem.base, mem.size, desc_addr, queue_size,  # type: ignore[attr-defined]
                       int(indirect), cap, addrs.buffer_info()[0], lengths.buffer_info()[0],
                       ctypes.addressof(ctypes.c_char.from_buffer(shape)))
    # (context, int head) -> int: called without argtypes, as a byref (which holds the
    # context) and a small int need no conversion call (about half the cost of a call
    # with them).
    pointer = ctypes.byref(context)
    unpack = _SHAPE.unpack_from

    def walk(head: int) -> tuple | None:
        count = function(pointer, head)
        if count < 0:
            return None
        readable, descriptors, indirect_, readable_len, writable_len = unpack(shape)
        return (addrs[:count], lengths[:count], readable, descriptors, bool(indirect_),
                readable_len, writable_len)
    return walk
