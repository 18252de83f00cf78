"""Guest time: the host monotonic clock seen through the timebase, and the SBI timer.

The guest reads `time` (natively on the patched engine, emulated on the wheel:
docs/engine.md, E4) and programs one deadline through
SBI set_timer. Nothing in Unicorn counts time, so the deadline is watched by one
persistent thread (`Watchdog`) that asks the machine to stop the CPU when it
passes (docs/engine.md, E6: no per-run timeout threads), and by the run loop's hooks, which raise
STIP whenever they notice the deadline is due.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

NEVER = (1 << 64) - 1
NEVER_NS = 1 << 128            # later than any host time: a deadline of NEVER is never due


class GuestClock:
    """Timebase ticks of the host's CLOCK_MONOTONIC, with no origin of its own.

    The patched engine reads `time` natively from the same clock at the same basis
    (its patch), so the guest's rdtime and the SBI deadline always agree, whichever
    engine runs. A counter that does not start at 0 is normal on real boards too."""

    def __init__(self, timebase_hz: int = 10_000_000) -> None:
        self.timebase_hz = timebase_hz
        # Where the patched engine keeps the SBI timer itself (docs/engine.md, P8), the
        # CPU thread reads its deadline through this (set by TrapHandler.install).
        self.native_deadline: Callable[[], int] | None = None

    def ticks(self) -> int:
        return time.monotonic_ns() * self.timebase_hz // 1_000_000_000

    def seconds_until(self, tick: int) -> float:
        """Host seconds until `tick` (negative when it has passed)."""
        return (tick - self.ticks()) / self.timebase_hz


class SbiTimer:
    """The single stimecmp-like deadline SBI set_timer programs.

    `fired` turns true once the machine has raised STIP for the current deadline, so
    nobody tries to get the CPU's attention for it again.
    """

    def __init__(self, clock: GuestClock) -> None:
        self.clock = clock
        self.deadline = NEVER
        self._due_ns = NEVER_NS
        self.fired = False
        self.on_change: Callable[[], None] = lambda: None

    def set(self, deadline: int) -> None:
        self.deadline = deadline & NEVER
        # The host monotonic time from which the deadline is due: ticks() >= deadline
        # exactly when monotonic_ns >= ceil(deadline * 1e9 / hz). due() runs at every
        # device access; this way it is one clock read and one comparison.
        self._due_ns = (NEVER_NS if self.deadline == NEVER
                        else -(-self.deadline * 1_000_000_000 // self.clock.timebase_hz))
        self.fired = False
        self.on_change()

    def due(self) -> bool:
        return time.monotonic_ns() >= self._due_ns

    @property
    def due_ns(self) -> int:
        """The host monotonic time (ns) from which the deadline is due."""
        return self._due_ns

    def seconds_left(self) -> float | None:
        """Host seconds until the deadline (<= 0 if due), or None when none is set.

        The CPU thread sleeps on this in wfi, so it counts the engine's own deadline
        too (`GuestClock.native_deadline`); the watchdog, which must never touch the
        engine, uses `programmed_seconds_left`."""
        left = self.programmed_seconds_left()
        native = self.clock.native_deadline
        if native is not None and (tick := native()) != NEVER:
            engine_left = self.clock.seconds_until(tick)
            left = engine_left if left is None else min(left, engine_left)
        return left

    def programmed_seconds_left(self) -> float | None:
        """Host seconds until the deadline `set` programmed (<= 0 if due), or None."""
        if self.deadline == NEVER:
            return None
        return self.clock.seconds_until(self.deadline)


class Watchdog:
    """One persistent thread that gets the CPU thread's attention, safely and for sure.

    Work becomes pending when the programmed deadline passes or someone calls `wake()`
    (any thread: a device's helper, the stdin reader, SIGINT). While work is pending the
    thread calls `interrupt()` at once and again every RETRY_SECONDS, because a stop
    request made just before the CPU enters `emu_start` can be dropped (vmsim.core.preempt).
    The run loop calls `acknowledge()` each time the engine returns; it then raises the
    timer interrupt and polls the devices.
    """

    RETRY_SECONDS = 0.001

    def __init__(self, timer: SbiTimer, interrupt: Callable[[], None]) -> None:
        self._timer = timer
        self._interrupt = interrupt
        self._cond = threading.Condition()
        self._pending = False
        self._closed = False
        # Until when (monotonic ns) the thread sleeps; NEVER_NS: until told; 0: awake.
        self._asleep_until = 0
        self._thread = threading.Thread(target=self._run, name="vmsim-watchdog", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> bool:
        return self._pending

    def wake(self) -> None:
        """Any thread: get the CPU thread's attention. The caller interrupts at once, so
        a device completion does not wait for this thread to be scheduled; this thread
        only retries in case that first request was dropped."""
        with self._cond:
            self._pending = True
            self._cond.notify()
        self._interrupt()

    def deadline_changed(self) -> None:
        """Wake the thread only for a deadline earlier than it would look again: a later
        one it finds when it wakes. (Linux's tick rewrites the timer three times per
        interrupt; each needless wake cost the CPU thread a futex call and the GIL.)"""
        with self._cond:
            if self._timer.due_ns < self._asleep_until:
                self._cond.notify()

    def acknowledge(self) -> None:
        """The CPU thread has taken over: everything signalled so far is handled."""
        self._pending = False

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _wait_time(self) -> float | None:
        if self._pending:
            return self.RETRY_SECONDS
        if self._timer.fired:
            return None
        left = self._timer.programmed_seconds_left()
        if left is not None and left <= 0:
            self._pending = True
            return self.RETRY_SECONDS
        return left

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                wait = self._wait_time()
                if self._pending:
                    self._interrupt()
                self._asleep_until = (NEVER_NS if wait is None
                                      else time.monotonic_ns() + int(wait * 1e9))
                self._cond.wait(wait)
                self._asleep_until = 0
