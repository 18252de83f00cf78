"""ctypes views of vmsim's native helpers (vmsim/native/*.c, one cached library).

- The stop hook (stop_hook.c): how the PyPI wheel engine stops safely (vmsim.core.preempt).
- The fd watcher (fd_watch.c): a thread without the GIL that stops the CPU as soon as a
  device's file descriptor is readable, so a worker's answer reaches a spinning guest
  without a Python thread in between.
"""
from __future__ import annotations

import ctypes
import time
from typing import Sequence

from vmsim.artifacts import native_library_path
from vmsim.errors import VmsimError

_library: ctypes.CDLL | None = None


def native_library() -> ctypes.CDLL:
    """The library, loaded once per process. `make unicorn` (vmsim.build.unicorn) builds
    it; the command line builds it on first use."""
    global _library
    if _library is None:
        path = native_library_path()
        if not path.is_file():
            raise VmsimError(f"vmsim's native helpers are not built ({path}): run `make unicorn`")
        lib = ctypes.CDLL(str(path))
        pointer = ctypes.c_void_p
        for name, restype, argtypes in (
                ("vmsim_stop_new", pointer, [pointer]),
                ("vmsim_stop_free", None, [pointer]),
                ("vmsim_stop_request", ctypes.c_int, [pointer]),
                ("vmsim_watch_new", pointer, [pointer, pointer, ctypes.c_int]),
                ("vmsim_watch_set_fds", ctypes.c_int,
                 [pointer, ctypes.POINTER(ctypes.c_int), ctypes.c_int]),
                ("vmsim_watch_rearm", None, [pointer]),
                ("vmsim_watch_nudge", ctypes.c_ulong, [pointer]),
                ("vmsim_watch_begun", ctypes.c_ulong, [pointer]),
                ("vmsim_watch_free", None, [pointer])):
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = argtypes
        _library = lib
    return _library


def function_address(function: ctypes._CFuncPtr) -> int:
    """The C address of a ctypes function, to hand to native code."""
    return ctypes.cast(function, ctypes.c_void_p).value or 0


class FdWatch:
    """The native watcher: when any watched fd is readable, it calls `stop(arg)` (a C
    function of the shape `int stop(void *)`, such as uc_emu_stop) and writes a byte to
    `wake_fd`, again every 250 µs, until `rearm()`."""

    def __init__(self, stop: tuple[int, int], wake_fd: int) -> None:
        self._lib = native_library()
        self._handle = self._lib.vmsim_watch_new(stop[0], stop[1], wake_fd)
        if not self._handle:
            raise VmsimError("cannot start the native fd watcher thread")

    def set_fds(self, fds: Sequence[int]) -> None:
        """Watch exactly these (any thread). The thread takes the new set up at once,
        but one more stop for the old set may still be under way."""
        array = (ctypes.c_int * len(fds))(*fds)
        if self._handle and self._lib.vmsim_watch_set_fds(self._handle, array, len(fds)):
            raise VmsimError(f"the native fd watcher cannot watch {len(fds)} descriptors")

    def rearm(self) -> None:
        """The run loop has taken over; call before reading the watched fds."""
        if self._handle:
            self._lib.vmsim_watch_rearm(self._handle)

    def next_round(self, timeout: float = 10.0) -> bool:
        """Wait until the thread begins a new round (False on timeout or after close).

        For tests that must show nothing fires without waiting a fixed time: when this
        returns, every stop and wake-up the thread decided on before has been made, and
        its new round sees every `set_fds` and `rearm` made before the call. Two calls
        in a row mean the current set and state have been polled at least once."""
        if not self._handle:
            return False
        wanted = self._lib.vmsim_watch_nudge(self._handle)
        deadline = time.monotonic() + timeout
        while self._lib.vmsim_watch_begun(self._handle) < wanted:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
        return True

    def close(self) -> None:
        """Stop and join the thread; idempotent."""
        handle, self._handle = self._handle, None
        if handle:
            self._lib.vmsim_watch_free(handle)
