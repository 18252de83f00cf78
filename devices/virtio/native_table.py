"""`queue._linear_table` in C (vmsim/native/linear_table.c), from vmsim's native helper
library: the check Linux's long indirect tables (a 64 KiB AF_ALG request has ~276
entries) go through on every request, which in Python cost about a tenth of such a
request once the guest had run. The Python function stays the reference (a
differential test holds the two to the same answers) and the fallback when the
library is not built.
"""
from __future__ import annotations

import ctypes
from array import array
from typing import Callable, Sequence

from vmsim.artifacts import native_library_path

_SHAPE_FIELDS = 6   # readable, readable_len, writable_len, low, top, longest (linear_table.c)

LinearTable = Callable[[bytes, Callable[[int, int], bool], bool],
                       "tuple[Sequence[int], Sequence[int], int, int, int] | None"]


def native_function(name: str) -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """A function of vmsim's native helper library, or None without the library."""
    path = native_library_path()
    if not path.is_file():
        return None
    try:
        # PyDLL keeps the GIL across the call: it lasts microseconds and calls no Python.
        return getattr(ctypes.PyDLL(str(path)), name)
    except (OSError, AttributeError):
        return None


def load() -> LinearTable | None:
    """The C check as a drop-in for `_linear_table`, or None without the library."""
    function = native_function("vmsim_linear_table")
    if function is None:
        return None
    function.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.c_int,
                         ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    function.restype = ctypes.c_int
    zero_q, zero_i = array("Q", [0]), array("I", [0])

    def linear_table(table: bytes, in_ram: Callable[[int, int], bool], after_writable: bool,
                     ) -> tuple[Sequence[int], Sequence[int], int, int, int] | None:
        """The addresses and lengths come as arrays: a chain indexes only the few
        entries a request reads or writes, and making 2 x 276 ints cost more than the
        check itself."""
        count = len(table) // 16
        addrs, lengths, shape = zero_q * count, zero_i * count, zero_q * _SHAPE_FIELDS
        if not function(table, count, after_writable, addrs.buffer_info()[0],
                         lengths.buffer_info()[0], shape.buffer_info()[0]):
            return None
        readable, readable_len, writable_len, low, top, longest = shape
        if not in_ram(low, top + longest - low):
            return None
        return addrs, lengths, readable, readable_len, writable_len

    return linear_table
