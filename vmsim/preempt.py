"""Stopping the CPU from another thread, safely.

INTERIM STUB, owned by the preemption work. The contract the run loop codes against:

    stopper = make_stopper(uc)     # after the Uc is created, before emu_start
    stopper.request()              # any thread; emulation stops at the next safe point
    stopper.close()

With the patched libunicorn a request is `uc.emu_stop()` (stops land only at block
boundaries). With the wheel, a request sets a flag that a native block hook turns into
`uc_emu_stop()` at the next block start. This stub calls `uc.emu_stop()` directly, which
is NOT safe with the wheel (DESIGN.md, fact 14) and is only here so other work can start.
"""
from __future__ import annotations

from typing import Any, Protocol


class Stopper(Protocol):
    def request(self) -> None: ...

    def close(self) -> None: ...


class _DirectStopper:
    def __init__(self, uc: Any) -> None:
        self._uc = uc

    def request(self) -> None:
        self._uc.emu_stop()

    def close(self) -> None:
        pass


def make_stopper(uc: Any) -> Stopper:
    """Return the stop mechanism that is safe for the loaded engine."""
    return _DirectStopper(uc)
