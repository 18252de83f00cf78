"""ctypes views of vmsim's native helpers (vmsim/native/*.c, one cached library).

- The stop hook (stop_hook.c): how the PyPI wheel engine stops safely (vmsim.core.preempt).
- The fd watcher (fd_watch.c): a thread without the GIL that stops the CPU as soon as a
  device's file descriptor is readable, so a worker's answer reaches a spinning guest
  without a Python thread in between.
- The register mirror (register_mirror.c): MMIO callbacks that answer the reads a
  device published, and take the writes it offered, without calling into Python.
"""
from __future__ import annotations

import ctypes
import time
from typing import Any, Callable, Sequence

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


INVALIDATE_PAGES = 64   # pages one native invalidation takes (more: the Python way)


class _InvalidateContext(ctypes.Structure):
    _fields_ = [("uc", ctypes.c_void_p), ("write_batch", ctypes.c_void_p),
                ("start_reg", ctypes.c_int64), ("end_reg", ctypes.c_int64),
                ("shift", ctypes.c_uint64), ("pages", ctypes.c_void_p)]


def page_invalidation(handle: int, write_batch: int, start_reg: int, end_reg: int,
                      shift: int) -> Callable[[list[int]], int] | None:
    """invalidate(pages) -> the engine's status: vmsim/native/invalidate.c for up to
    INVALIDATE_PAGES sorted, distinct page numbers, through `write_batch` (the address
    of uc_reg_write_batch, or a stand-in) on engine `handle`; None without the library.
    The call keeps the GIL (PyDLL): it lasts a microsecond or two and calls no Python,
    and it takes an int and returns one, so it goes without argtypes."""
    path = native_library_path()
    if not path.is_file():
        return None
    function = ctypes.PyDLL(str(path)).vmsim_invalidate_pages
    pages = (ctypes.c_uint64 * INVALIDATE_PAGES)()
    context = _InvalidateContext(handle, write_batch, start_reg, end_reg, shift,
                                 ctypes.addressof(pages))
    reference = ctypes.byref(context)     # holds the context

    def invalidate(numbers: list[int]) -> int:
        pages[:len(numbers)] = numbers
        return function(reference, len(numbers))
    return invalidate


MIRROR_SLOTS = 4        # VMSIM_MIRROR_SLOTS in register_mirror.c


class _MirrorSlot(ctypes.Structure):
    _fields_ = [("offset", ctypes.c_uint64), ("value", ctypes.c_uint64),
                ("size", ctypes.c_uint32), ("valid", ctypes.c_uint32),
                ("posted", ctypes.c_uint64), ("once", ctypes.c_uint64)]


class _RegisterMirrorState(ctypes.Structure):
    _fields_ = [("read", ctypes.c_void_p), ("read_data", ctypes.c_void_p),
                ("write", ctypes.c_void_p), ("write_data", ctypes.c_void_p),
                ("hits", ctypes.c_uint64), ("taken", ctypes.c_uint64),
                ("reads", ctypes.c_uint32), ("writes", ctypes.c_uint32),
                ("engine_write", ctypes.c_void_p), ("line_reg", ctypes.c_int64),
                ("line_copy", ctypes.c_void_p),
                ("read_slots", _MirrorSlot * MIRROR_SLOTS),
                ("write_slots", _MirrorSlot * MIRROR_SLOTS)]


def _fill(slot: _MirrorSlot, value: int | None, once: int = 0) -> None:
    """Give the slot a value (to answer once, or every time), or (None) hand its
    register back to the device."""
    if value is None:
        slot.valid = 0
    else:
        slot.value = value
        slot.once = once
        slot.valid = 1


class NativeRegisterMirror:
    """One window's register mirror (a devices.bus.RegisterMirror): `read_callback` and
    `write_callback` are the addresses to give the engine for the window, with
    `user_data` as their argument. Published reads and offered writes are handled
    there; every other access goes on to `read` or `write` (the window's own ctypes
    callbacks, which this object keeps alive)."""

    def __init__(self, read: Any, write: Any, reads: Sequence[int],
                 writes: Sequence[int]) -> None:
        if len(reads) > MIRROR_SLOTS or len(writes) > MIRROR_SLOTS:
            raise ValueError(f"a window mirrors at most {MIRROR_SLOTS} reads and writes")
        self._callbacks = (read, write)
        state = self._state = _RegisterMirrorState()
        state.read, state.write = function_address(read), function_address(write)
        state.reads, state.writes = len(reads), len(writes)
        self._reads = self._slots(state.read_slots, reads)
        self._writes = self._slots(state.write_slots, writes)
        library = native_library()
        self.read_callback = function_address(library.vmsim_mirror_read)
        self.write_callback = function_address(library.vmsim_mirror_write)
        self.user_data = ctypes.addressof(state)

    @staticmethod
    def _slots(slots: Any, offsets: Sequence[int]) -> dict[int, _MirrorSlot]:
        by_offset = {}
        for slot, offset in zip(slots, offsets):
            slot.offset, slot.size = offset, 4
            by_offset[offset] = slot
        return by_offset

    def publish(self, offset: int, value: int | None) -> None:
        _fill(self._reads[offset], value)

    def drops_line_with(self, engine_write: int, register: int, copy: int) -> None:
        """Let reads be answered once (publish_once): answering one drops the line that
        engine register `register` is, through `engine_write` (uc_reg_write's address),
        and its host copy, the uint64 at address `copy`."""
        state = self._state
        state.engine_write, state.line_reg, state.line_copy = engine_write, register, copy

    def publish_once(self, offset: int, value: int) -> None:
        """`offset` reads as `value` once, dropping the line (drops_line_with); then it
        goes to the device again, which learns of the read from taken_once. Without a
        line to drop, every read goes to the device."""
        _fill(self._reads[offset], value if self._state.engine_write else None, once=1)

    def taken_once(self, offset: int) -> bool:
        """Whether the read published once was answered since the last call."""
        slot = self._reads[offset]
        if not slot.posted:
            return False
        slot.posted = 0
        return True

    def offer(self, offset: int, value: int | None) -> None:
        _fill(self._writes[offset], value)

    def take_posted(self, offset: int) -> int | None:
        slot = self._writes[offset]
        if not slot.posted:
            return None
        slot.posted = 0
        return slot.value

    @property
    def hits(self) -> int:
        """Reads answered without calling the device."""
        return self._state.hits

    @property
    def taken(self) -> int:
        """Writes taken without calling the device."""
        return self._state.taken
