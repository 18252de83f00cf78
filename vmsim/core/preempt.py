"""Stopping the CPU from another thread, safely.

The contract the run loop codes against:

    stopper = make_stopper(uc)     # after the Uc is created, before emu_start
    stopper.request()              # any thread; emulation stops at the next block start
    stopper.close()                # when the CPU is not running

Why this is not just `uc.emu_stop()`: with the PyPI wheel an asynchronous stop can land
between the load and the store of an atomic, which then runs twice on resume, and it
corrupts Linux in other ways too (docs/engine.md, E14). Two safe methods:

- patched libunicorn (default): its stop checks exist only at block starts, so a request
  is plain `uc.emu_stop()`, at no cost to the guest (docs/engine.md, P1);
- PyPI wheel (fallback): a request sets a flag; a native C `UC_HOOK_BLOCK` callback
  (vmsim/native/stop_hook.c, run without the GIL) sees it at the next block start and
  calls `uc_emu_stop()` on the CPU thread (docs/engine.md, W1).

Either way pc is exact after the stop: resume with `emu_start(pc, ...)`.

A request made while the CPU is outside `emu_start` is dropped by the patched engine
(`emu_start` clears pending stops) but ends the next run at its first block with the
hook (docs/engine.md, E19). So a watchdog must not rely on one request: the run loop
re-checks due work after every `emu_start`, and the watchdog keeps requesting while work
it signalled is still pending. Code already on the CPU thread (inside a hook) that needs to stop now should
call `uc.emu_stop()` itself: that is synchronous and safe with both engines.
"""
from __future__ import annotations

import ctypes
import types
from typing import Any, Protocol

from vmsim.core.engine import PATCHED, engine_kind, load_unicorn
from vmsim.errors import VmsimError
from vmsim.core.nativelib import function_address, native_library


class Stopper(Protocol):
    def request(self) -> None:
        """Ask the CPU to stop at the next safe point. Any thread; never blocks."""
        ...

    def close(self) -> None:
        """Release the mechanism. Only while the CPU is not running; idempotent."""
        ...

    def native_stop(self) -> tuple[int, int]:
        """`request` as a C function `int f(void *)` and its argument, for native threads
        (vmsim.core.nativelib.FdWatch) that stop the CPU without the GIL."""
        ...


class BlockBoundaryStopper:
    """For the patched engine: its own stop already lands only at block boundaries."""

    method = "stops at block boundaries"

    def __init__(self, uc: Any) -> None:
        self._uc = uc

    def request(self) -> None:
        self._uc.emu_stop()

    def close(self) -> None:
        pass

    def native_stop(self) -> tuple[int, int]:
        uclib = _binding_library(load_unicorn())
        return function_address(uclib.uc_emu_stop), self._uc._uch.value


def _binding_library(unicorn: types.ModuleType) -> ctypes.CDLL:
    """The CDLL the `unicorn` binding loaded: the hook must call into that same library."""
    return unicorn.unicorn_py3.unicorn.uclib


class NativeHookStopper:
    """For the PyPI wheel: a flag, turned into `uc_emu_stop()` by a C block hook."""

    method = "stops through a native block hook"

    def __init__(self, uc: Any, unicorn: types.ModuleType) -> None:
        self._native = native_library()
        self._uclib = _binding_library(unicorn)
        self._uc = uc
        self._state = self._native.vmsim_stop_new(function_address(self._uclib.uc_emu_stop))
        if not self._state:
            raise MemoryError("cannot allocate the stop hook state")
        self._hook = ctypes.c_size_t(0)
        status = self._uclib.uc_hook_add(uc._uch, ctypes.byref(self._hook),
                                         unicorn.UC_HOOK_BLOCK,
                                         function_address(self._native.vmsim_stop_hook),
                                         self._state, 1, 0)
        if status != unicorn.UC_ERR_OK:
            self._native.vmsim_stop_free(self._state)
            self._state = None
            raise VmsimError(f"cannot install the native stop hook: {unicorn.UcError(status)}")

    def request(self) -> None:
        state = self._state
        if state:
            self._native.vmsim_stop_request(state)

    def native_stop(self) -> tuple[int, int]:
        return function_address(self._native.vmsim_stop_request), self._state or 0

    def close(self) -> None:
        if self._state:
            self._uclib.uc_hook_del(self._uc._uch, self._hook)
            state, self._state = self._state, None
            self._native.vmsim_stop_free(state)


def make_stopper(uc: Any) -> Stopper:
    """Return the stop mechanism that is safe for the loaded engine."""
    unicorn = load_unicorn()
    if engine_kind(unicorn) == PATCHED:
        return BlockBoundaryStopper(uc)
    return NativeHookStopper(uc, unicorn)
